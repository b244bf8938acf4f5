/**
 * Data movement kernels: fill, strided gather (permute, slice, expand, pad in one kernel) and strided
 * scatter (write a tensor into a region of another, for concat and slice backward).
 *
 * Layout: contiguous outputs; one element per invocation, 256 per workgroup; rank ≤ 8 (shapes and
 * strides travel in the uniform as `array<vec4<u32>, 2>`). Offsets and strides are in elements.
 */
import { type BufferRange, type Gpu, Params } from "../core/gpu/mod.ts";
import { planWindows } from "./launch_plan.ts";
import { type ElementType, ELEMENTWISE_WORKGROUP, LINEAR_INDEX, MAX_RANK, specialize } from "./wgsl.ts";

const fillSource = /* wgsl */ `
struct P { words: u32, pattern: u32, base: u32 }
@group(0) @binding(0) var<storage, read_write> out: array<u32>;
@group(1) @binding(0) var<uniform> p: P;
${LINEAR_INDEX}
@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = linear_workgroup(wid, nwg) * {{WG}}u + lid;
  if (i < p.words) { out[p.base + i] = p.pattern; }
}`;

/** Fills `words` 32-bit words of `out` with `pattern` (the caller encodes f32/f16/i32 values). */
export function runFill(gpu: Gpu, out: BufferRange, words: number, pattern: number): void {
  if (words === 0) return;
  const kernel = gpu.kernel("fill", () => ({
    name: "fill",
    code: specialize(fillSource, { WG: ELEMENTWISE_WORKGROUP }),
    storage: ["read_write"],
    uniform: true,
  }));
  // ranges above one binding are filled window by window (the launch planner, one word per item)
  const offset = out.offset ?? 0;
  const range = {
    buffer: out.buffer,
    offset,
    size: Math.min(out.buffer.size - offset, Math.max(16, words * 4)),
  };
  const operand = { range, elementBytes: 4, itemStride: 1, itemExtent: 1 };
  for (const w of planWindows(gpu.limits, [operand], words, { label: "fill" })) {
    gpu.dispatch(
      kernel,
      [w.ranges[0]],
      new Params().u32(w.items).u32(pattern >>> 0).u32(w.bases[0]),
      Math.ceil(w.items / ELEMENTWISE_WORKGROUP),
    );
  }
}

const gatherSource = /* wgsl */ `
struct P {
  n: u32, rank: u32, offset: u32, value: f32,
  out_shape: array<vec4<u32>, 2>, in_shape: array<vec4<u32>, 2>,
  in_strides: array<vec4<u32>, 2>, pad_before: array<vec4<u32>, 2>,
}
@group(0) @binding(0) var<storage, read> src: array<{{T}}>;
@group(0) @binding(1) var<storage, read_write> out: array<{{T}}>;
@group(1) @binding(0) var<uniform> p: P;
${LINEAR_INDEX}
@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = linear_workgroup(wid, nwg) * {{WG}}u + lid;
  if (i >= p.n) { return; }
  var rem = i;
  var off = p.offset;
  var inside = true;
  for (var d = i32(p.rank) - 1; d >= 0; d--) {
    let dd = u32(d);
    let size = p.out_shape[dd / 4u][dd % 4u];
    // unsigned wrap-around turns coordinates left of the padding into huge values: one comparison
    let c = (rem % size) - p.pad_before[dd / 4u][dd % 4u];
    rem = rem / size;
    inside = inside && c < p.in_shape[dd / 4u][dd % 4u];
    off += c * p.in_strides[dd / 4u][dd % 4u];
  }
  if (inside) { out[i] = src[off]; } else { out[i] = {{T}}(p.value); }
}`;

/** A strided read of `src`: `out[c] = src[offset + Σ (c_d − padBefore_d)·inStrides_d]`, `value` outside. */
export interface GatherSpec {
  outShape: readonly number[];
  inShape: readonly number[];
  inStrides: readonly number[];
  offset?: number;
  padBefore?: readonly number[];
  value?: number;
}

/** Records a strided gather of element type `type` (permute, slice, expand and pad in one kernel). */
export function runGather(
  gpu: Gpu,
  type: ElementType,
  src: BufferRange,
  out: BufferRange,
  spec: GatherSpec,
): void {
  const rank = spec.outShape.length;
  if (rank > MAX_RANK) throw new RangeError(`gather: rank ${rank} exceeds ${MAX_RANK}`);
  const n = spec.outShape.reduce((x, y) => x * y, 1);
  if (n === 0) return;
  const kernel = gpu.kernel(`gather:${type}`, () => ({
    name: `gather[${type}]`,
    code: specialize(gatherSource, { T: type, WG: ELEMENTWISE_WORKGROUP }),
    storage: ["read", "read_write"],
    uniform: true,
  }));
  const params = new Params().u32(n).u32(rank).u32(spec.offset ?? 0).f32(spec.value ?? 0)
    .u32s(spec.outShape, 8).u32s(spec.inShape, 8).u32s(spec.inStrides, 8).u32s(spec.padBefore ?? [], 8);
  gpu.dispatch(kernel, [src, out], params, Math.ceil(n / ELEMENTWISE_WORKGROUP));
}

const scatterSource = /* wgsl */ `
struct P { n: u32, rank: u32, offset: u32, pad: u32, shape: array<vec4<u32>, 2>, out_strides: array<vec4<u32>, 2> }
@group(0) @binding(0) var<storage, read> src: array<{{T}}>;
@group(0) @binding(1) var<storage, read_write> out: array<{{T}}>;
@group(1) @binding(0) var<uniform> p: P;
${LINEAR_INDEX}
@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = linear_workgroup(wid, nwg) * {{WG}}u + lid;
  if (i >= p.n) { return; }
  var rem = i;
  var off = p.offset;
  for (var d = i32(p.rank) - 1; d >= 0; d--) {
    let dd = u32(d);
    let size = p.shape[dd / 4u][dd % 4u];
    off += (rem % size) * p.out_strides[dd / 4u][dd % 4u];
    rem = rem / size;
  }
  out[off] = src[i];
}`;

/** Records `out[offset + Σ c_d·outStrides_d] = src[c]` for every coordinate `c` of the contiguous `src`. */
export function runScatter(
  gpu: Gpu,
  type: ElementType,
  src: BufferRange,
  out: BufferRange,
  shape: readonly number[],
  outStrides: readonly number[],
  offset: number,
): void {
  if (shape.length > MAX_RANK) throw new RangeError(`scatter: rank ${shape.length} exceeds ${MAX_RANK}`);
  const n = shape.reduce((x, y) => x * y, 1);
  if (n === 0) return;
  const kernel = gpu.kernel(`scatter:${type}`, () => ({
    name: `scatter[${type}]`,
    code: specialize(scatterSource, { T: type, WG: ELEMENTWISE_WORKGROUP }),
    storage: ["read", "read_write"],
    uniform: true,
  }));
  const params = new Params().u32(n).u32(shape.length).u32(offset).u32(0).u32s(shape, 8).u32s(outStrides, 8);
  gpu.dispatch(kernel, [src, out], params, Math.ceil(n / ELEMENTWISE_WORKGROUP));
}
