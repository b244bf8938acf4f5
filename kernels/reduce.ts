/**
 * Reductions over the middle axis of a contiguous tensor viewed as [outer, R, inner].
 *
 * - inner = 1 ("row"): one workgroup of 256 per (row, chunk); each invocation accumulates a strided slice
 *   with Kahan-compensated summation, then a pairwise tree in workgroup memory combines the 256 values.
 * - inner > 1 ("column"): one invocation per (row, chunk, inner index), Kahan-compensated loop over its
 *   chunk of R; neighbouring invocations read neighbouring addresses.
 * Long axes with few outputs are split into chunks (partials in f32), reduced again by a second pass,
 * so the GPU stays busy and no single sum runs over more than a few thousand terms.
 * Arg-reductions (argmax/argmin) run in one pass and return the first index among ties.
 *
 * Limits: above `maxStorageBufferBindingSize` the launch planner (launch_plan.ts) splits a value reduction:
 * windows over whole rows of [outer, R·inner] when a row fits a binding (`planWindows`, each window's element
 * base passed to the kernel), else blocks of the reduced axis, each bound as the planner's window and reduced
 * into f32 partials [outer, blocks, inner] that a second reduction combines; a run of `inner` elements above
 * half a binding raises a BindingTooLargeError. Arg-reductions split by windows of whole rows only.
 */
import { align4, BindingTooLargeError, type BufferRange, type Gpu, Params } from "../core/gpu/mod.ts";
import { planWindows, spanLimitBytes, windowOf } from "./launch_plan.ts";
import { ELEMENT_BYTES, type ElementType, ELEMENTWISE_WORKGROUP, LINEAR_INDEX, specialize } from "./wgsl.ts";

/** Value reductions ("sumsq" sums squares: squared norms for gradient clipping). */
export type ReduceOp = "sum" | "sumsq" | "max" | "min";

const IDENTITY: Record<ReduceOp, string> = {
  sum: "0.0",
  sumsq: "0.0",
  max: "bitcast<f32>(0xff800000u)", // -inf
  min: "bitcast<f32>(0x7f800000u)", // +inf
};

// Kahan-compensated accumulate for sums; plain combine for max/min.
const ACCUMULATE: Record<ReduceOp, string> = {
  sum: "let y = v - comp; let t = acc + y; comp = (t - acc) - y; acc = t;",
  sumsq: "let y = v * v - comp; let t = acc + y; comp = (t - acc) - y; acc = t;",
  max: "acc = max(acc, v);",
  min: "acc = min(acc, v);",
};
const COMBINE: Record<ReduceOp, (a: string, b: string) => string> = {
  sum: (a, b) => `${a} + ${b}`,
  sumsq: (a, b) => `${a} + ${b}`,
  max: (a, b) => `max(${a}, ${b})`,
  min: (a, b) => `min(${a}, ${b})`,
};

const WG = 256;

function rowSource(op: ReduceOp, ti: ElementType, to: ElementType): string {
  return specialize(
    /* wgsl */ `
struct P { outer: u32, r: u32, inner: u32, chunks: u32, chunk_len: u32, scale: f32, src_base: u32, out_base: u32 }
@group(0) @binding(0) var<storage, read> src: array<{{TI}}>;
@group(0) @binding(1) var<storage, read_write> out: array<{{TO}}>;
@group(1) @binding(0) var<uniform> p: P;
var<workgroup> part: array<f32, {{WG}}>;
${LINEAR_INDEX}
@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let g = linear_workgroup(wid, nwg);
  let row = g / p.chunks;
  let chunk = g % p.chunks;
  if (row >= p.outer) { return; } // uniform per workgroup: safe before barriers
  let start = chunk * p.chunk_len;
  let end = min(start + p.chunk_len, p.r);
  var acc = {{IDENTITY}};
  var comp = 0.0;
  for (var i = start + lid; i < end; i += {{WG}}u) {
    let v = f32(src[p.src_base + row * p.r + i]);
    {{ACCUMULATE}}
  }
  part[lid] = acc;
  workgroupBarrier();
  for (var stride = {{WG}}u / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) { part[lid] = {{COMBINE}}; }
    workgroupBarrier();
  }
  if (lid == 0u) { out[p.out_base + g] = {{TO}}(part[0] * p.scale); }
}`,
    {
      TI: ti,
      TO: to,
      WG,
      IDENTITY: IDENTITY[op],
      ACCUMULATE: ACCUMULATE[op],
      COMBINE: COMBINE[op]("part[lid]", "part[lid + stride]"),
    },
  );
}

function columnSource(op: ReduceOp, ti: ElementType, to: ElementType): string {
  return specialize(
    /* wgsl */ `
struct P { outer: u32, r: u32, inner: u32, chunks: u32, chunk_len: u32, scale: f32, src_base: u32, out_base: u32 }
@group(0) @binding(0) var<storage, read> src: array<{{TI}}>;
@group(0) @binding(1) var<storage, read_write> out: array<{{TO}}>;
@group(1) @binding(0) var<uniform> p: P;
${LINEAR_INDEX}
@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = linear_workgroup(wid, nwg) * {{WG}}u + lid;
  if (t >= p.outer * p.chunks * p.inner) { return; }
  let j = t % p.inner;
  let rest = t / p.inner;
  let chunk = rest % p.chunks;
  let row = rest / p.chunks;
  let start = chunk * p.chunk_len;
  let end = min(start + p.chunk_len, p.r);
  var acc = {{IDENTITY}};
  var comp = 0.0;
  for (var i = start; i < end; i++) {
    let v = f32(src[p.src_base + (row * p.r + i) * p.inner + j]);
    {{ACCUMULATE}}
  }
  out[p.out_base + t] = {{TO}}(acc * p.scale);
}`,
    { TI: ti, TO: to, WG: ELEMENTWISE_WORKGROUP, IDENTITY: IDENTITY[op], ACCUMULATE: ACCUMULATE[op] },
  );
}

/** A reduction problem: contiguous [outer, r, inner] → [outer, inner]. */
export interface ReduceShape {
  outer: number;
  r: number;
  inner: number;
}

/** Allocates temporary f32 buffers for partial results (the pool recycles them). */
export interface Scratch {
  acquire(bytes: number): BufferRange;
  release(range: BufferRange): void;
}

/** Scratch buffers from the device's pool (released after recording; the queue orders later reuse). */
export function poolScratch(gpu: Gpu): Scratch {
  return {
    acquire: (bytes) => ({ buffer: gpu.pool.acquire(Math.max(16, bytes)), size: Math.max(16, bytes) }),
    release: (range) => gpu.pool.release(range.buffer),
  };
}

function chunking(s: ReduceShape): { chunks: number; chunkLen: number } {
  const outputs = s.outer * s.inner;
  const perRow = s.inner === 1 ? 4096 : 256; // terms one workgroup / one invocation sums in a pass
  if (s.r <= perRow) return { chunks: 1, chunkLen: s.r };
  const wanted = s.inner === 1 ? Math.ceil(2048 / outputs) : Math.ceil(65536 / outputs);
  const chunks = Math.max(1, Math.min(Math.ceil(s.r / perRow), wanted));
  return { chunks, chunkLen: Math.ceil(s.r / chunks) };
}

/** A tensor inside a binding: the range to bind and the element index in it of the tensor's element 0. */
interface Placed {
  range: BufferRange;
  base: number;
}

/**
 * Records `out[o, j] = scale · reduce_i src[o, i, j]`. `out` holds outer·inner elements of `to`.
 * Tensors above `maxStorageBufferBindingSize` are split by the launch planner (see the header).
 * @throws BindingTooLargeError when one run of `inner` elements does not fit half a binding.
 */
export function runReduce(
  gpu: Gpu,
  op: ReduceOp,
  ti: ElementType,
  to: ElementType,
  src: BufferRange,
  out: BufferRange,
  shape: ReduceShape,
  scale: number,
  scratch: Scratch,
): void {
  const { outer, r, inner } = shape;
  if (outer * inner === 0) return;
  const limits = gpu.limits;
  const limit = limits.maxStorageBufferBindingSize;
  if (align4(src.size) <= limit && align4(out.size) <= limit) {
    reduceBound(gpu, op, ti, to, { range: src, base: 0 }, { range: out, base: 0 }, shape, scale, scratch);
    return;
  }
  const [tb, ob] = [ELEMENT_BYTES[ti], ELEMENT_BYTES[to]];
  const label = `reduce_${op}`;
  const row = Math.max(r, 1) * inner;
  if (row * tb <= spanLimitBytes(limits, tb) && inner * ob <= spanLimitBytes(limits, ob)) {
    // whole rows: windows over outer
    const windows = planWindows(
      limits,
      [
        { range: src, elementBytes: tb, itemStride: r * inner, itemExtent: row },
        { range: out, elementBytes: ob, itemStride: inner, itemExtent: inner },
      ],
      outer,
      { label },
    );
    for (const w of windows) {
      const [s, o] = w.ranges.map((range, k) => ({ range, base: w.bases[k] }));
      reduceBound(gpu, op, ti, to, s, o, { outer: w.items, r, inner }, scale, scratch);
    }
    return;
  }
  // a row is above a binding: blocks of rows of the reduced axis, each into f32 partials, then the partials
  const rows = Math.floor(spanLimitBytes(limits, tb) / (inner * tb));
  if (rows < 2 || inner * ob > spanLimitBytes(limits, ob)) {
    throw new BindingTooLargeError(
      `${label}: runs of ${inner} elements need a binding above this device's maxStorageBufferBindingSize ` +
        `(${limit} bytes); reduce over other axes first`,
    );
  }
  const blocks = Math.ceil(r / rows);
  const partial = scratch.acquire(outer * blocks * inner * 4);
  for (let o = 0; o < outer; o++) {
    for (let b = 0; b < blocks; b++) {
      const lo = (o * r + b * rows) * inner;
      const n = Math.min(rows, r - b * rows);
      const sw = windowOf(limits, src, tb, lo, lo + n * inner);
      const p0 = (o * blocks + b) * inner;
      const pw = windowOf(limits, partial, 4, p0, p0 + inner);
      reduceBound(
        gpu,
        op,
        ti,
        "f32",
        { range: sw.binding, base: lo - sw.first },
        { range: pw.binding, base: p0 - pw.first },
        { outer: 1, r: n, inner },
        1,
        scratch,
      );
    }
  }
  runReduce(
    gpu,
    op === "sumsq" ? "sum" : op,
    "f32",
    to,
    partial,
    out,
    { outer, r: blocks, inner },
    scale,
    scratch,
  );
  scratch.release(partial);
}

/** {@link runReduce} on tensors whose bindings fit. */
function reduceBound(
  gpu: Gpu,
  op: ReduceOp,
  ti: ElementType,
  to: ElementType,
  src: Placed,
  out: Placed,
  shape: ReduceShape,
  scale: number,
  scratch: Scratch,
): void {
  const { outer, r, inner } = shape;
  const { chunks, chunkLen } = chunking(shape);
  if (r === 0 || chunks === 1) {
    dispatchPass(gpu, op, ti, to, src, out, { outer, r, inner }, 1, Math.max(r, 1), scale, r === 0);
    return;
  }
  const partial = { range: scratch.acquire(outer * chunks * inner * 4), base: 0 };
  dispatchPass(gpu, op, ti, "f32", src, partial, { outer, r, inner }, chunks, chunkLen, 1, false);
  // partials are already squared: later passes sum them
  reduceBound(
    gpu,
    op === "sumsq" ? "sum" : op,
    "f32",
    to,
    partial,
    out,
    { outer, r: chunks, inner },
    scale,
    scratch,
  );
  scratch.release(partial.range);
}

function dispatchPass(
  gpu: Gpu,
  op: ReduceOp,
  ti: ElementType,
  to: ElementType,
  src: Placed,
  out: Placed,
  s: ReduceShape,
  chunks: number,
  chunkLen: number,
  scale: number,
  empty: boolean,
): void {
  const row = s.inner === 1;
  const key = `reduce:${op}:${ti}>${to}:${row ? "row" : "col"}`;
  const kernel = gpu.kernel(key, () => ({
    name: `reduce_${op}[${ti}→${to},${row ? "row" : "column"}]`,
    code: row ? rowSource(op, ti, to) : columnSource(op, ti, to),
    storage: ["read", "read_write"],
    uniform: true,
  }));
  const params = new Params().u32(s.outer).u32(empty ? 0 : s.r).u32(s.inner).u32(chunks).u32(chunkLen).f32(
    scale,
  ).u32(src.base).u32(out.base);
  const groups = row ? s.outer * chunks : Math.ceil((s.outer * chunks * s.inner) / ELEMENTWISE_WORKGROUP);
  gpu.dispatch(kernel, [src.range, out.range], params, groups);
}

function argSource(op: "argmax" | "argmin", ti: ElementType, row: boolean): string {
  const better = op === "argmax" ? ">" : "<";
  const body = row
    ? /* wgsl */ `
var<workgroup> best_v: array<f32, {{WG}}>;
var<workgroup> best_i: array<u32, {{WG}}>;
@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let row = linear_workgroup(wid, nwg);
  if (row >= p.outer) { return; }
  var bv = 0.0;
  var bi = 0xffffffffu;
  for (var i = lid; i < p.r; i += {{WG}}u) {
    let v = f32(src[p.src_base + row * p.r + i]);
    if (bi == 0xffffffffu || v {{BETTER}} bv) { bv = v; bi = i; }
  }
  best_v[lid] = bv;
  best_i[lid] = bi;
  workgroupBarrier();
  for (var stride = {{WG}}u / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) {
      let oi = best_i[lid + stride];
      let ov = best_v[lid + stride];
      let mi = best_i[lid];
      if (oi != 0xffffffffu && (mi == 0xffffffffu || ov {{BETTER}} best_v[lid] || (ov == best_v[lid] && oi < mi))) {
        best_v[lid] = ov;
        best_i[lid] = oi;
      }
    }
    workgroupBarrier();
  }
  if (lid == 0u) { out[p.out_base + row] = i32(best_i[0]); }
}`
    : /* wgsl */ `
@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = linear_workgroup(wid, nwg) * {{WG}}u + lid;
  if (t >= p.outer * p.inner) { return; }
  let j = t % p.inner;
  let row = t / p.inner;
  var bv = f32(src[p.src_base + row * p.r * p.inner + j]);
  var bi = 0u;
  for (var i = 1u; i < p.r; i++) {
    let v = f32(src[p.src_base + (row * p.r + i) * p.inner + j]);
    if (v {{BETTER}} bv) { bv = v; bi = i; }
  }
  out[p.out_base + t] = i32(bi);
}`;
  return specialize(
    /* wgsl */ `
struct P { outer: u32, r: u32, inner: u32, src_base: u32, out_base: u32 }
@group(0) @binding(0) var<storage, read> src: array<{{TI}}>;
@group(0) @binding(1) var<storage, read_write> out: array<i32>;
@group(1) @binding(0) var<uniform> p: P;
${LINEAR_INDEX}
${body}`,
    { TI: ti, WG, BETTER: better },
  );
}

/**
 * Records the index (i32) of the largest / smallest value along the middle axis; first among ties. Above
 * `maxStorageBufferBindingSize`, windows of whole rows (the launch planner).
 * @throws BindingTooLargeError when one row does not fit a binding.
 */
export function runArgReduce(
  gpu: Gpu,
  op: "argmax" | "argmin",
  ti: ElementType,
  src: BufferRange,
  out: BufferRange,
  shape: ReduceShape,
): void {
  if (shape.outer * shape.inner === 0) return;
  if (shape.r === 0) throw new RangeError(`${op} over an empty axis`);
  const row = shape.inner === 1;
  const kernel = gpu.kernel(`${op}:${ti}:${row ? "row" : "col"}`, () => ({
    name: `${op}[${ti},${row ? "row" : "column"}]`,
    code: argSource(op, ti, row),
    storage: ["read", "read_write"],
    uniform: true,
  }));
  const { r, inner } = shape;
  const windows = planWindows(
    gpu.limits,
    [
      { range: src, elementBytes: ELEMENT_BYTES[ti], itemStride: r * inner, itemExtent: r * inner },
      { range: out, elementBytes: 4, itemStride: inner, itemExtent: inner },
    ],
    shape.outer,
    { label: op },
  );
  for (const w of windows) {
    const outer = w.items;
    const groups = row ? outer : Math.ceil((outer * inner) / ELEMENTWISE_WORKGROUP);
    const params = new Params().u32(outer).u32(r).u32(inner).u32(w.bases[0]).u32(w.bases[1]);
    gpu.dispatch(kernel, w.ranges, params, groups);
  }
}
