/**
 * Splits a linear workgroup count over x/y/z so that no dimension exceeds the device's
 * `maxComputeWorkgroupsPerDimension` (65,535 by default). Kernels recover the linear index with
 * {@link WGSL_LINEAR_WORKGROUP}; workgroups past `count` (the grid rounds up) must return early.
 */
export function workgroupGrid(count: number, maxPerDim: number): [number, number, number] {
  if (!Number.isInteger(count) || count < 0) throw new RangeError(`workgroup count must be an integer >= 0`);
  if (count <= maxPerDim) return [count, 1, 1];
  const y = Math.ceil(count / maxPerDim);
  if (y <= maxPerDim) {
    const x = Math.ceil(count / y);
    return [x, y, 1];
  }
  const z = Math.ceil(y / maxPerDim);
  if (z > maxPerDim) throw new RangeError(`${count} workgroups exceed the device's 3D dispatch limit`);
  const yz = Math.ceil(count / (maxPerDim * z));
  return [maxPerDim, yz, z];
}

/**
 * WGSL helper: linear workgroup index from a possibly 2D/3D grid. Use with
 * `@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>`.
 */
export const WGSL_LINEAR_WORKGROUP = /* wgsl */ `
fn linear_workgroup(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wid.x + wid.y * nwg.x + wid.z * nwg.x * nwg.y;
}
`;
