// Additive Gaussian noise on one sample, in place: x[base + i] += sigma · z_i. z comes from the in-kernel
// Philox4x32-10: invocation t takes the block philox((t, step, sample, stream), seed) (stream = 0x4e4f4953 +
// the view: 0 for the run's standard patch, 1, 2, … for a method's own crops of the sample) and turns its
// four words into z_{4t..4t+3} by Box–Muller on pairs (as kernels/philox.wgsl does), so the noise of a
// voxel is a function of (seed, step, sample, view, voxel) only: reproducible and identical after a resume.
// Layout: one invocation per 4 voxels; workgroup 256, grid split by linear_workgroup.
struct P { n: u32, base: u32, seed_lo: u32, seed_hi: u32, step: u32, sample_index: u32, sigma: f32, stream: u32 }
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(1) @binding(0) var<uniform> p: P;

{{LINEAR_INDEX}}

{{PHILOX_CORE}}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = linear_workgroup(wid, nwg) * 256u + lid;
  if (t * 4u >= p.n) { return; }
  let r = philox(vec4<u32>(t, p.step, p.sample_index, p.stream), vec2<u32>(p.seed_lo, p.seed_hi));
  let u1 = (f32(r.x >> 8u) + 1.0) * (1.0 / 16777216.0);
  let u2 = unit(r.y);
  let u3 = (f32(r.z >> 8u) + 1.0) * (1.0 / 16777216.0);
  let u4 = unit(r.w);
  let r1 = sqrt(-2.0 * log(u1));
  let r2 = sqrt(-2.0 * log(u3));
  let tau = 6.283185307179586;
  let z = vec4<f32>(r1 * cos(tau * u2), r1 * sin(tau * u2), r2 * cos(tau * u4), r2 * sin(tau * u4));
  for (var j = 0u; j < 4u; j++) {
    let i = t * 4u + j;
    if (i < p.n) { x[p.base + i] += p.sigma * z[j]; }
  }
}
