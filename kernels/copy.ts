/**
 * Data movement kernels: fill, strided gather (permute, slice, expand, pad in one kernel) and strided
 * scatter (write a tensor into a region of another, for concat and slice backward).
 *
 * Layout: contiguous outputs; one element per invocation, 256 per workgroup; rank ≤ 8 (shapes and
 * strides travel in the uniform as `array<vec4<u32>, 2>`). Offsets and strides are in elements.
 *
 * Limits: tensors above `maxStorageBufferBindingSize` split through the launch planner (launch_plan.ts).
 * The gather cuts its contiguous output, the scatter its contiguous source, into runs of blocks
 * (`planRuns`): a block is one row of the innermost axis, or a binding-sized piece of a row longer than a
 * binding. Each run binds its contiguous window and the strided tensor's window from the least to the
 * greatest element the run touches ({@link stridedSpan}, exact: the run is cut into boxes of whole inner
 * axes); the kernel gets the run's first element (`base`) and the windows' index shifts. When everything
 * fits and starts aligned, one dispatch over the unchanged ranges (shifts 0). A block whose strided span
 * alone is above a binding (a permute moving a long axis innermost, e.g. [C, D·H·W] → [D·H·W, C]) raises a
 * `BindingTooLargeError` naming the op: there is no 2D tiling.
 */
import { BindingTooLargeError } from "../core/gpu/errors.ts";
import { type BufferRange, type Gpu, Params } from "../core/gpu/mod.ts";
import {
  type ElementWindow,
  indexShift,
  planRuns,
  planWindows,
  spanLimitBytes,
  windowOf,
} from "./launch_plan.ts";
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
  base: u32, out_at: u32, _pad0: u32, _pad1: u32,
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
  // coordinates of output element base + i; p.offset already holds the source window's shift
  var rem = p.base + i;
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
  if (inside) { out[p.out_at + i] = src[off]; } else { out[p.out_at + i] = {{T}}(p.value); }
}`;

/** A strided read of `src`: `out[c] = src[offset + Σ (c_d − padBefore_d)·inStrides_d]`, `value` outside. */
export interface GatherSpec {
  outShape: readonly number[];
  inShape: readonly number[];
  inStrides: readonly number[];
  offset?: number;
  padBefore?: readonly number[];
  value?: number;
  /** The op, for errors ("permute"; default "gather"). */
  label?: string;
}

/** The strided side of a copy: element `offset + Σ (c_d − padBefore_d)·strides_d` for coordinate c. */
export interface StridedGeometry {
  /** Shape of the contiguous side (the coordinates c). */
  shape: readonly number[];
  /** Coordinates c_d − padBefore_d outside [0, inShape_d) touch nothing (padding). */
  inShape: readonly number[];
  /** Non-negative element strides of the strided side. */
  strides: readonly number[];
  /** Leading padding per axis (zeros: none). */
  padBefore: readonly number[];
  /** Element of the strided side at coordinate padBefore. */
  offset: number;
}

/**
 * The least and one past the greatest strided element read or written for the contiguous coordinates
 * [lo, hi) (row-major over `shape`), or undefined when all of them fall in the padding. Exact: the range is
 * cut into boxes (a fixed prefix, a range of one axis, whole inner axes); strides are non-negative.
 */
export function stridedSpan(g: StridedGeometry, lo: number, hi: number): [number, number] | undefined {
  const rank = g.shape.length;
  const inner: number[] = new Array(rank + 1).fill(1);
  for (let d = rank - 1; d >= 0; d--) inner[d] = inner[d + 1] * g.shape[d];
  let min = Infinity;
  let max = -Infinity;
  // valid source coordinates of the output coordinates [c0, c1] of axis d, or undefined
  const valid = (d: number, c0: number, c1: number): [number, number] | undefined => {
    const a = Math.max(c0 - g.padBefore[d], 0);
    const b = Math.min(c1 - g.padBefore[d], g.inShape[d] - 1);
    return a <= b ? [a, b] : undefined;
  };
  // coordinates [c0, c1] of axis d with every inner axis whole, after the prefix at element `base`
  const box = (d: number, base: number, c0: number, c1: number) => {
    if (c0 > c1) return;
    let lo = base;
    let hi = base;
    for (let e = d; e < rank; e++) {
      const v = e === d ? valid(e, c0, c1) : valid(e, 0, g.shape[e] - 1);
      if (!v) return;
      lo += v[0] * g.strides[e];
      hi += v[1] * g.strides[e];
    }
    min = Math.min(min, lo);
    max = Math.max(max, hi);
  };
  // the elements [a, b) (a < b) of the sub-tensor of axes d.. after the prefix at element `base`
  const visit = (d: number, base: number, a: number, b: number): void => {
    if (d === rank) {
      min = Math.min(min, base);
      max = Math.max(max, base);
      return;
    }
    const step = inner[d + 1];
    const ca = Math.floor(a / step);
    const cb = Math.floor((b - 1) / step);
    if (ca === cb) {
      const v = valid(d, ca, ca);
      if (v) visit(d + 1, base + v[0] * g.strides[d], a - ca * step, b - ca * step);
      return;
    }
    let f0 = ca;
    let f1 = cb;
    if (a % step !== 0) {
      visit(d, base, a, (ca + 1) * step);
      f0 = ca + 1;
    }
    if (b % step !== 0) {
      visit(d, base, cb * step, b);
      f1 = cb - 1;
    }
    box(d, base, f0, f1);
  };
  if (hi > lo) visit(0, g.offset, lo, hi);
  return min <= max ? [min, max + 1] : undefined;
}

/** One dispatch of a split copy: contiguous elements [e0, e1), the windows bound (undefined: whole ranges). */
interface CopyRun {
  e0: number;
  e1: number;
  contiguous?: ElementWindow<BufferRange>;
  strided?: ElementWindow<BufferRange>;
}

function align4(bytes: number): number {
  return Math.ceil(bytes / 4) * 4;
}

/**
 * Cuts `n` contiguous elements (rows of `row`) into runs whose contiguous window and strided window (the
 * span `g` touches) each fit one binding; one run over the whole ranges when both fit and start aligned.
 */
function planCopy(
  gpu: Gpu,
  label: string,
  elementBytes: number,
  contiguous: BufferRange,
  strided: BufferRange,
  g: StridedGeometry,
  n: number,
): CopyRun[] {
  const limits = gpu.limits;
  const limit = limits.maxStorageBufferBindingSize;
  const align = limits.minStorageBufferOffsetAlignment;
  if (
    [contiguous, strided].every((r) => (r.offset ?? 0) % align === 0 && align4(r.size) <= limit)
  ) return [{ e0: 0, e1: n }];
  // blocks: whole rows of the innermost axis, or binding-sized pieces of a longer row
  const row = Math.max(1, g.shape[g.shape.length - 1] ?? 1);
  const block = Math.min(row, Math.max(1, Math.floor(spanLimitBytes(limits, elementBytes) / elementBytes)));
  const perRow = Math.ceil(row / block);
  const units = (n / row) * perRow;
  const start = (u: number) => Math.floor(u / perRow) * row + (u % perRow) * block;
  const end = (u: number) => Math.floor(u / perRow) * row + Math.min(row, (u % perRow + 1) * block);
  const windows = (e0: number, e1: number) => {
    const s = stridedSpan(g, e0, e1);
    return {
      contiguous: windowOf(limits, contiguous, elementBytes, e0, e1),
      strided: windowOf(limits, strided, elementBytes, s?.[0] ?? 0, s?.[1] ?? 0),
      span: s ? s[1] - s[0] : 0,
    };
  };
  let worst = { elements: 0, span: 0 };
  const fits = (u0: number, u1: number) => {
    const w = windows(start(u0), end(u1 - 1));
    const ok = w.contiguous.binding.size <= limit && w.strided.binding.size <= limit;
    if (!ok && u1 === u0 + 1) worst = { elements: end(u0) - start(u0), span: w.span };
    return ok;
  };
  let runs: [number, number][];
  try {
    runs = planRuns(units, fits, label);
  } catch (e) {
    if (!(e instanceof BindingTooLargeError)) throw e;
    throw new BindingTooLargeError(
      `${label}: a run of ${worst.elements} contiguous element(s) touches ${worst.span} strided elements ` +
        `(${worst.span * elementBytes} bytes), above this device's maxStorageBufferBindingSize of ${limit} ` +
        `bytes, and strided copies are not tiled in 2D; copy in smaller pieces (slice the tensor first) or ` +
        `split the tensor (smaller batch or volume)`,
    );
  }
  return runs.map(([u0, u1]) => {
    const e0 = start(u0);
    const e1 = end(u1 - 1);
    return { e0, e1, ...windows(e0, e1) };
  });
}

const ELEMENT_BYTES: Record<ElementType, number> = { f32: 4, f16: 2, i32: 4, u32: 4 };

/**
 * Records a strided gather of element type `type` (permute, slice, expand and pad in one kernel), split
 * into runs of output rows when a tensor is above one binding (see the header).
 * @throws BindingTooLargeError when one output row (or binding-sized piece of it) reads a source span above
 * one binding.
 */
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
  const offset = spec.offset ?? 0;
  const geometry: StridedGeometry = {
    shape: spec.outShape,
    inShape: spec.inShape,
    strides: spec.inStrides,
    padBefore: spec.padBefore ?? spec.outShape.map(() => 0),
    offset,
  };
  const runs = planCopy(gpu, spec.label ?? "gather", ELEMENT_BYTES[type], out, src, geometry, n);
  for (const r of runs) {
    const count = r.e1 - r.e0;
    const srcShift = r.strided ? indexShift(r.strided) : 0;
    const params = new Params().u32(count).u32(rank).u32((offset + srcShift) >>> 0).f32(spec.value ?? 0)
      .u32(r.e0).u32(r.contiguous ? r.e0 - r.contiguous.first : 0).u32(0).u32(0)
      .u32s(spec.outShape, 8).u32s(spec.inShape, 8).u32s(spec.inStrides, 8).u32s(spec.padBefore ?? [], 8);
    gpu.dispatch(
      kernel,
      [r.strided?.binding ?? src, r.contiguous?.binding ?? out],
      params,
      Math.ceil(count / ELEMENTWISE_WORKGROUP),
    );
  }
}

const scatterSource = /* wgsl */ `
struct P {
  n: u32, rank: u32, offset: u32, base: u32, src_at: u32, _pad0: u32, _pad1: u32, _pad2: u32,
  shape: array<vec4<u32>, 2>, out_strides: array<vec4<u32>, 2>,
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
  // coordinates of source element base + i; p.offset already holds the output window's shift
  var rem = p.base + i;
  var off = p.offset;
  for (var d = i32(p.rank) - 1; d >= 0; d--) {
    let dd = u32(d);
    let size = p.shape[dd / 4u][dd % 4u];
    off += (rem % size) * p.out_strides[dd / 4u][dd % 4u];
    rem = rem / size;
  }
  out[off] = src[p.src_at + i];
}`;

/**
 * Records `out[offset + Σ c_d·outStrides_d] = src[c]` for every coordinate `c` of the contiguous `src`,
 * split into runs of source rows when a tensor is above one binding (see the header); `label` names the op
 * in errors.
 * @throws BindingTooLargeError when one source row (or binding-sized piece of it) writes an output span
 * above one binding.
 */
export function runScatter(
  gpu: Gpu,
  type: ElementType,
  src: BufferRange,
  out: BufferRange,
  shape: readonly number[],
  outStrides: readonly number[],
  offset: number,
  label = "scatter",
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
  const geometry: StridedGeometry = {
    shape,
    inShape: shape,
    strides: outStrides,
    padBefore: shape.map(() => 0),
    offset,
  };
  const runs = planCopy(gpu, label, ELEMENT_BYTES[type], src, out, geometry, n);
  for (const r of runs) {
    const count = r.e1 - r.e0;
    const outShift = r.strided ? indexShift(r.strided) : 0;
    const params = new Params().u32(count).u32(shape.length).u32((offset + outShift) >>> 0).u32(r.e0)
      .u32(r.contiguous ? r.e0 - r.contiguous.first : 0).u32(0).u32(0).u32(0)
      .u32s(shape, 8).u32s(outStrides, 8);
    gpu.dispatch(
      kernel,
      [r.contiguous?.binding ?? src, r.strided?.binding ?? out],
      params,
      Math.ceil(count / ELEMENTWISE_WORKGROUP),
    );
  }
}
