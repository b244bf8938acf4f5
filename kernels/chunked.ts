/**
 * Kernel generators whose launches split themselves so that no binding exceeds the device's
 * `maxStorageBufferBindingSize`: the normalization, activation, pooling, resampling and loss kernels
 * are written with them.
 *
 * Index maps. Every generated kernel walks a flat element index `g` of its main tensor. Each operand is
 * read at `idx(g) = ⌊g / div⌋·mul + g mod mod` (an {@link IndexMap}) plus `extent − 1` further elements:
 * `SAME` (idx = g), per row (`g / L`: statistics of contiguous rows), per column (`[outer, R, inner]` →
 * `o·inner + j`: statistics over a middle axis, a voxel index of an NCDHW tensor), or an expansion
 * (`g·Q … g·Q + Q − 1`: the Q partial results of row g). Small operands (per-channel weights, tables)
 * are bound whole and indexed by the kernel's own code.
 *
 * Windows, from the launch planner (launch_plan.ts, which owns the binding limits). A launch is cut into
 * chunks of consecutive work units; for each chunk every mapped operand is bound as the planner's window
 * over the elements its chunk touches (`windowOf`: from the aligned offset at or before the first, rounded
 * up to 16 bytes). The kernel adds a per-operand u32 (`indexShift`, which wraps when the tensor starts
 * past an aligned offset) to `idx(g)`, so one code path serves whole tensors and chunks. A chunk is the
 * planner's longest run of units whose windows all fit (`planRuns`); a single unit that does not fit
 * raises a BindingTooLargeError naming the kernel. Units: elements (pointwise), row pieces (row reduction),
 * columns × pieces of the reduced axis (column reduction, which also splits the reduced axis into
 * blocks and carries its running state across them when even one column does not fit).
 *
 * Three generators, all with 256 invocations per workgroup and grids split over x/y/z:
 * - {@link runPointwise}: one (or 4) elements per invocation; the body reads and writes operands.
 * - {@link runRowReduce}: rows of contiguous elements, each split into pieces of ≤ 4096 elements (so a
 *   batch of 2×32 channels of 160³ still gives ~64k workgroups); one workgroup per piece accumulates a
 *   vec4 per element and merges its 256 partial states in a tree; pieces are merged per row afterwards
 *   by a pointwise kernel ({@link combineWgsl}) — after further row reductions over the partial states
 *   while a row has more than 64 of them ({@link runReduceMerge}), so no invocation merges thousands.
 *   {@link runReducePartials} stops before the merge, with at most 64 states per row (longer pieces
 *   from the start), for a pointwise pass that merges them itself: its `workgroupSetup` runs in uniform
 *   control flow before the bounds check, so a workgroup can merge the states it needs in a tree.
 *   Pieces can be kept inside segments of a row (e.g. one channel's voxels) so that a per-voxel operand
 *   is read through an exact window.
 * - {@link runColumnReduce}: `[outer, R, inner]`, reduction over R for every column (o, j): one
 *   invocation per (column, piece of R), sequential over R (coalesced across j).
 * Accumulators ({@link AccMode}): "sum" (Kahan-compensated vec4 sums), "moments" (Welford count,
 * mean, M2 of one value, merged with Chan's formula; no E[x²]−E[x]² anywhere), "wmoments" (the same
 * with a weight per value: weight 0 skips it, as the masked norm's invisible voxels), "lse" (online
 * log-sum-exp of one value with rescaling, plus two plain sums).
 *
 * Limits: tensors below 2³² elements; at most 8 storage operands; params ≤ 64 words.
 */
import { align4, BindingTooLargeError, type BufferRange, type Gpu, Params } from "../core/gpu/mod.ts";
import {
  type ElementWindow,
  indexShift,
  planRuns,
  spanLimitBytes,
  WINDOW_GRANULE,
  windowOf,
} from "./launch_plan.ts";
import type { Scratch } from "./reduce.ts";
import { LINEAR_INDEX, specialize } from "./wgsl.ts";

/** Element types of operands (`atomic<u32>`: integer atomics, on a `write` operand only). */
export type OperandType = "f32" | "f16" | "i32" | "u32" | "vec2<f32>" | "vec4<f32>" | "atomic<u32>";

/** Bytes per element of each operand type. */
export const OPERAND_BYTES: Record<OperandType, number> = {
  f32: 4,
  f16: 2,
  i32: 4,
  u32: 4,
  "vec2<f32>": 8,
  "vec4<f32>": 16,
  "atomic<u32>": 4,
};

/** `idx(g) = ⌊g / div⌋·mul + g mod mod`, reading `extent` consecutive elements from there. */
export interface IndexMap {
  /** Divisor of g for the block index. */
  div: number;
  /** Operand elements per block. */
  mul: number;
  /** Period of the offset inside a block (1: none); divides `div`. */
  mod: number;
  /** Consecutive elements read from idx(g) (1 for a single value). */
  extent: number;
}

/** Element g of an operand shaped like the main tensor. */
export const SAME: IndexMap = { div: 1, mul: 1, mod: 1, extent: 1 };

/** Row `⌊g / len⌋` (one value per contiguous row of `len` elements). */
export function perRow(len: number): IndexMap {
  return { div: len, mul: 1, mod: 1, extent: 1 };
}

/** Column `o·inner + j` of `[outer, r, inner]` (one value per position outside the middle axis). */
export function perColumn(r: number, inner: number): IndexMap {
  return { div: r * inner, mul: inner, mod: inner, extent: 1 };
}

/** Elements `g·k … g·k + k − 1` (k values per element, e.g. the pieces of row g). */
export function expandBy(k: number): IndexMap {
  return { div: 1, mul: k, mod: 1, extent: k };
}

/** Half-open range of operand elements that elements [g0, g1) of the main tensor touch (conservative). */
export function mapRange(map: IndexMap, g0: number, g1: number): [number, number] {
  const { div, mul, mod, extent } = map;
  const q0 = Math.floor(g0 / div);
  const q1 = Math.floor((g1 - 1) / div);
  if (q0 === q1) {
    const a = g0 - q0 * div;
    const b = g1 - 1 - q0 * div;
    if (Math.floor(a / mod) === Math.floor(b / mod)) {
      return [q0 * mul + (a % mod), q0 * mul + (b % mod) + extent];
    }
  }
  return [q0 * mul, q1 * mul + mod - 1 + extent];
}

/**
 * How an operand is indexed: like the main tensor, through a runtime {@link IndexMap}, at absolute
 * indices the body computes (`custom`: `ix_<name>(i)` adds the window offset; the launcher gives the
 * span of elements a chunk touches), or bound whole.
 */
export type IndexKind = "same" | "map" | "custom" | "whole";

/** One storage operand of a generated kernel. */
export interface OperandSpec {
  /** WGSL identifier (avoid reserved words such as `target`, `filter`). */
  name: string;
  /** Element type of the WGSL array. */
  type: OperandType;
  /** Bound read_write (default read-only). */
  write?: boolean;
  /** How elements are addressed (see {@link IndexKind}). */
  index: IndexKind;
}

/** The buffer of an operand and, for `index: "map"`, its map; for `"custom"`, its span per chunk. */
export interface OperandArg {
  /** The operand's buffer range (a tensor's binding). */
  range: BufferRange;
  /** Required for `index: "map"`. */
  map?: IndexMap;
  /** Half-open range of this operand's elements that main-tensor elements [g0, g1) touch. */
  span?: (g0: number, g1: number) => [number, number];
}

function wgslType(t: OperandType): string {
  return t;
}

function bindingDecls(operands: readonly OperandSpec[]): string {
  return operands.map((o, i) =>
    `@group(0) @binding(${i}) var<storage, ${o.write ? "read_write" : "read"}> ${o.name}: array<${
      wgslType(o.type)
    }>;`
  ).join("\n");
}

function operandFields(operands: readonly OperandSpec[]): string[] {
  const fields: string[] = [];
  for (const o of operands) {
    if (o.index === "whole") continue;
    fields.push(`${o.name}_o: u32`);
    if (o.index === "map") fields.push(`${o.name}_d: u32`, `${o.name}_m: u32`, `${o.name}_r: u32`);
  }
  return fields;
}

function indexFns(operands: readonly OperandSpec[]): string {
  return operands.filter((o) => o.index !== "whole").map((o) =>
    o.index === "same" || o.index === "custom"
      ? `fn ix_${o.name}(g: u32) -> u32 { return g + p.${o.name}_o; }`
      : `fn ix_${o.name}(g: u32) -> u32 { return (g / p.${o.name}_d) * p.${o.name}_m + g % p.${o.name}_r + p.${o.name}_o; }`
  ).join("\n");
}

interface Bound {
  ranges: BufferRange[];
  windows: (ElementWindow<BufferRange> | undefined)[];
}

/** Binds every operand for main-tensor elements [g0, g1); `undefined` when some window is too large. */
function bindOperands(
  gpu: Gpu,
  operands: readonly OperandSpec[],
  args: readonly OperandArg[],
  g0: number,
  g1: number,
  extra: (name: string) => [number, number] | undefined,
  margin = 0,
): Bound | undefined {
  const max = gpu.limits.maxStorageBufferBindingSize - margin;
  const ranges: BufferRange[] = [];
  const windows: (ElementWindow<BufferRange> | undefined)[] = [];
  for (let i = 0; i < operands.length; i++) {
    const o = operands[i];
    const arg = args[i];
    if (o.index === "whole") {
      ranges.push(arg.range);
      windows.push(undefined);
      continue;
    }
    const span = extra(o.name) ??
      (o.index === "custom" ? arg.span!(g0, g1) : mapRange(o.index === "same" ? SAME : arg.map!, g0, g1));
    const w = windowOf(gpu.limits, arg.range, OPERAND_BYTES[o.type], span[0], span[1]);
    if (w.binding.size > max) return undefined;
    ranges.push(w.binding);
    windows.push(w);
  }
  return { ranges, windows };
}

function pushOperandParams(
  params: Params,
  operands: readonly OperandSpec[],
  args: readonly OperandArg[],
  bound: Bound,
): void {
  operands.forEach((o, i) => {
    if (o.index === "whole") return;
    params.u32(indexShift(bound.windows[i]!));
    if (o.index === "map") {
      const m = args[i].map!;
      params.u32(m.div).u32(m.mul).u32(m.mod);
    }
  });
}

function checkWhole(gpu: Gpu, name: string, operands: readonly OperandSpec[], args: readonly OperandArg[]) {
  if (args.length !== operands.length) {
    throw new Error(`${name}: ${operands.length} operands expected, got ${args.length}`);
  }
  operands.forEach((o, i) => {
    if (o.index === "map" && !args[i].map) throw new Error(`${name}: operand ${o.name} needs an index map`);
    if (o.index === "custom" && !args[i].span) throw new Error(`${name}: operand ${o.name} needs a span`);
    if (o.index === "whole" && align4(args[i].range.size) > gpu.limits.maxStorageBufferBindingSize) {
      throw new BindingTooLargeError(
        `${name}: operand ${o.name} (${args[i].range.size} bytes) must fit in one binding ` +
          `(maxStorageBufferBindingSize ${gpu.limits.maxStorageBufferBindingSize})`,
      );
    }
  });
}

function scalarFields(uints: readonly string[], floats: readonly string[]): string[] {
  return [...uints.map((u) => `u_${u}: u32`), ...floats.map((f) => `f_${f}: f32`)];
}

function pushScalars(params: Params, uints: readonly number[], floats: readonly number[]): void {
  for (const u of uints) params.u32(u);
  for (const f of floats) params.f32(f);
}

function kernelKey(prefix: string, key: string, operands: readonly OperandSpec[]): string {
  return `${prefix}:${key}:${
    operands.map((o) => `${o.name}:${o.type}:${o.index}:${o.write ? 1 : 0}`).join(",")
  }`;
}

const WG = 256;

// ---------------------------------------------------------------------------------------------------
// Pointwise

/** A pointwise kernel: the body runs once per invocation with `g` (first element) and `g_end`. */
export interface PointwiseSpec {
  /** Cache key: must encode everything that changes the generated code besides the operands. */
  key: string;
  /** Label in errors and timings. */
  name: string;
  operands: readonly OperandSpec[];
  /** u32 scalars, read as `p.u_<name>`. */
  uints?: readonly string[];
  /** f32 scalars, read as `p.f_<name>`. */
  floats?: readonly string[];
  /** WGSL statements; element g of the main tensor, `g_end` its end (exclusive) in this chunk. */
  body: string;
  /** WGSL functions the body calls. */
  helpers?: string;
  /** Elements per invocation (the body handles g … g + ept − 1 itself when > 1); default 1. */
  elementsPerInvocation?: number;
  /** Granule of chunk starts, in elements (e.g. 4 when an invocation owns an aligned block). */
  granule?: number;
  /**
   * WGSL statements run by every invocation of a workgroup before the bounds check, in uniform control
   * flow (so they may use `workgroupBarrier()` and `var<workgroup>` declared in `helpers`): they see
   * `wg_g0` and `wg_g1`, the elements [wg_g0, wg_g1) of the workgroup (empty for the padding workgroups
   * of a split grid), and `lid`; the variables they declare are in scope in `body`.
   */
  workgroupSetup?: string;
}

function pointwiseSource(spec: PointwiseSpec): string {
  const ept = spec.elementsPerInvocation ?? 1;
  const fields = [
    "g0: u32",
    "n: u32",
    ...operandFields(spec.operands),
    ...scalarFields(spec.uints ?? [], spec.floats ?? []),
  ];
  return specialize(
    /* wgsl */ `
struct P { ${fields.join(", ")} }
${bindingDecls(spec.operands)}
@group(1) @binding(0) var<uniform> p: P;
${LINEAR_INDEX}
${indexFns(spec.operands)}
{{HELPERS}}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let _w = linear_workgroup(wid, nwg);
  let wg_g0 = p.g0 + min(_w * ${WG * ept}u, p.n);
  let wg_g1 = min(wg_g0 + ${WG * ept}u, p.g0 + p.n);
  {{SETUP}}
  let _t = _w * ${WG}u + lid;
  if (_t * ${ept}u >= p.n) { return; }
  let g = p.g0 + _t * ${ept}u;
  let g_end = p.g0 + p.n;
  {{BODY}}
}`,
    { HELPERS: spec.helpers ?? "", SETUP: spec.workgroupSetup ?? "", BODY: spec.body },
  );
}

/**
 * Records a pointwise kernel over `n` elements of the main tensor, split into chunks whose operand
 * windows fit one binding each.
 */
export function runPointwise(
  gpu: Gpu,
  spec: PointwiseSpec,
  n: number,
  args: readonly OperandArg[],
  uints: readonly number[] = [],
  floats: readonly number[] = [],
): void {
  if (n === 0) return;
  checkWhole(gpu, spec.name, spec.operands, args);
  const ept = spec.elementsPerInvocation ?? 1;
  const granule = Math.max(spec.granule ?? 1, ept);
  const kernel = gpu.kernel(kernelKey("pw", spec.key, spec.operands), () => ({
    name: spec.name,
    code: pointwiseSource(spec),
    storage: spec.operands.map((o) => (o.write ? "read_write" : "read")),
    uniform: true,
  }));
  const units = Math.ceil(n / granule);
  const span = (u0: number, u1: number): [number, number] => [u0 * granule, Math.min(u1 * granule, n)];
  const bind = (u0: number, u1: number) => {
    const [g0, g1] = span(u0, u1);
    return bindOperands(gpu, spec.operands, args, g0, g1, () => undefined);
  };
  const chunks = planRuns(units, (u0, u1) => bind(u0, u1) !== undefined, spec.name);
  for (const [u0, u1] of chunks) {
    const [g0, g1] = span(u0, u1);
    const bound = bind(u0, u1)!;
    const params = new Params().u32(g0).u32(g1 - g0);
    pushOperandParams(params, spec.operands, args, bound);
    pushScalars(params, uints, floats);
    gpu.dispatch(kernel, bound.ranges, params, Math.ceil(Math.ceil((g1 - g0) / ept) / WG));
  }
}

// ---------------------------------------------------------------------------------------------------
// Accumulators

/** How values are accumulated by the reductions. */
export type AccMode = "sum" | "moments" | "wmoments" | "lse";

const ACC: Record<AccMode, string> = {
  sum: /* wgsl */ `
struct Acc { a: vec4<f32>, c: vec4<f32> }
fn acc_init() -> Acc { return Acc(vec4<f32>(0.0), vec4<f32>(0.0)); }
fn acc_add(s: Acc, v: vec4<f32>) -> Acc {
  let y = v - s.c;
  let t = s.a + y;
  return Acc(t, (t - s.a) - y);
}
fn acc_merge(x: Acc, y: Acc) -> Acc { return Acc((x.a - x.c) + (y.a - y.c), vec4<f32>(0.0)); }
fn acc_value(s: Acc) -> vec4<f32> { return s.a - s.c; }
fn acc_from(v: vec4<f32>) -> Acc { return Acc(v, vec4<f32>(0.0)); }`,
  // a = (count, mean, M2, unused): Welford per value, Chan's formula to merge
  moments: /* wgsl */ `
struct Acc { a: vec4<f32>, c: vec4<f32> }
fn acc_init() -> Acc { return Acc(vec4<f32>(0.0), vec4<f32>(0.0)); }
fn acc_add(s: Acc, v: vec4<f32>) -> Acc {
  let n = s.a.x + 1.0;
  let d = v.x - s.a.y;
  let mean = s.a.y + d / n;
  return Acc(vec4<f32>(n, mean, s.a.z + d * (v.x - mean), 0.0), s.c);
}
fn acc_merge(x: Acc, y: Acc) -> Acc {
  let n = x.a.x + y.a.x;
  if (n == 0.0) { return x; }
  let d = y.a.y - x.a.y;
  let f = y.a.x / n;
  return Acc(vec4<f32>(n, x.a.y + d * f, x.a.z + y.a.z + d * d * x.a.x * f, 0.0), x.c);
}
fn acc_value(s: Acc) -> vec4<f32> { return s.a; }
fn acc_from(v: vec4<f32>) -> Acc { return Acc(v, vec4<f32>(0.0)); }`,
  // moments of v.x with weight v.y (weight 0: the value is skipped, so a mask selects what counts);
  // the same state and merge as "moments", with n the sum of the weights
  wmoments: /* wgsl */ `
struct Acc { a: vec4<f32>, c: vec4<f32> }
fn acc_init() -> Acc { return Acc(vec4<f32>(0.0), vec4<f32>(0.0)); }
fn acc_add(s: Acc, v: vec4<f32>) -> Acc {
  if (v.y == 0.0) { return s; }
  let n = s.a.x + v.y;
  let d = v.x - s.a.y;
  let mean = s.a.y + d * (v.y / n);
  return Acc(vec4<f32>(n, mean, s.a.z + v.y * d * (v.x - mean), 0.0), s.c);
}
fn acc_merge(x: Acc, y: Acc) -> Acc {
  let n = x.a.x + y.a.x;
  if (n == 0.0) { return x; }
  let d = y.a.y - x.a.y;
  let f = y.a.x / n;
  return Acc(vec4<f32>(n, x.a.y + d * f, x.a.z + y.a.z + d * d * x.a.x * f, 0.0), x.c);
}
fn acc_value(s: Acc) -> vec4<f32> { return s.a; }
fn acc_from(v: vec4<f32>) -> Acc { return Acc(v, vec4<f32>(0.0)); }`,
  // a = (running max, Σ exp(v − max), Σ v.z, Σ v.w)
  lse: /* wgsl */ `
struct Acc { a: vec4<f32>, c: vec4<f32> }
// the running max starts at −3e38, not −inf (WGSL may assume that no infinities occur)
fn acc_init() -> Acc { return Acc(vec4<f32>(-3.0e38, 0.0, 0.0, 0.0), vec4<f32>(0.0)); }
fn acc_add(s: Acc, v: vec4<f32>) -> Acc {
  let m = max(s.a.x, v.x);
  let scaled = select(s.a.y * exp(s.a.x - m), 0.0, s.a.y == 0.0);
  return Acc(vec4<f32>(m, scaled + exp(v.x - m), s.a.z + v.z, s.a.w + v.w), s.c);
}
fn acc_merge(x: Acc, y: Acc) -> Acc {
  let m = max(x.a.x, y.a.x);
  let sx = select(x.a.y * exp(x.a.x - m), 0.0, x.a.y == 0.0);
  let sy = select(y.a.y * exp(y.a.x - m), 0.0, y.a.y == 0.0);
  return Acc(vec4<f32>(m, sx + sy, x.a.z + y.a.z, x.a.w + y.a.w), x.c);
}
fn acc_value(s: Acc) -> vec4<f32> { return s.a; }
fn acc_from(v: vec4<f32>) -> Acc { return Acc(v, vec4<f32>(0.0)); }`,
};

/** WGSL of an accumulator: `Acc`, `acc_init`, `acc_add`, `acc_merge`, `acc_value`, `acc_from`. */
export function accumulatorWgsl(mode: AccMode): string {
  return ACC[mode];
}

/**
 * WGSL helper `combine_<name>(g) -> vec4<f32>`: merges the pieces `idx(g) … idx(g) + p.u_pieces − 1`
 * of the vec4 operand `name` (bind it with {@link expandBy}(pieces)); needs `accumulatorWgsl(mode)`.
 */
export function combineWgsl(name: string): string {
  return /* wgsl */ `
fn combine_${name}(g: u32) -> vec4<f32> {
  let base = ix_${name}(g);
  var acc = acc_from(${name}[base]);
  for (var q = 1u; q < p.u_pieces; q++) { acc = acc_merge(acc, acc_from(${name}[base + q])); }
  return acc_value(acc);
}`;
}

// ---------------------------------------------------------------------------------------------------
// Row reduction

/** A reduction of contiguous rows: `value` computes `v: vec4<f32>` for element g. */
export interface RowReduceSpec {
  key: string;
  name: string;
  /** Operands read by `value` (the partials output is appended by the generator as `part`). */
  operands: readonly OperandSpec[];
  uints?: readonly string[];
  floats?: readonly string[];
  /** WGSL statements that end by defining `let v: vec4<f32>` for element `g`. */
  value: string;
  helpers?: string;
  mode: AccMode;
  /** `v` is a partial state to merge (acc_merge) rather than a value to add. */
  statesIn?: boolean;
}

/** Piece length of the row reduction: at most `preferred` elements and one binding's worth. */
export function rowPieceLength(gpu: Gpu, rowLen: number, maxBytes: number, preferred = 4096): number {
  const room = Math.floor(spanLimitBytes(gpu.limits, maxBytes) / maxBytes);
  return Math.max(1, Math.min(rowLen, preferred, room));
}

function rowSource(spec: RowReduceSpec): string {
  const operands = [
    ...spec.operands,
    { name: "part", type: "vec4<f32>", write: true, index: "same" } as const,
  ];
  const fields = [
    "p0: u32",
    "np: u32",
    "q: u32",
    "len: u32",
    "plen: u32",
    ...operandFields(operands),
    ...scalarFields(spec.uints ?? [], spec.floats ?? []),
  ];
  return specialize(
    /* wgsl */ `
struct P { ${fields.join(", ")} }
${bindingDecls(operands)}
@group(1) @binding(0) var<uniform> p: P;
${LINEAR_INDEX}
${indexFns(operands)}
${ACC[spec.mode]}
{{HELPERS}}
var<workgroup> tree: array<Acc, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let _wg = linear_workgroup(wid, nwg);
  if (_wg >= p.np) { return; } // uniform per workgroup
  let _piece = p.p0 + _wg;
  let _row = _piece / p.q;
  let _start = _row * p.len + (_piece % p.q) * p.plen;
  let _end = min(_start + p.plen, _row * p.len + p.len);
  var acc = acc_init();
  for (var g = _start + lid; g < _end; g += ${WG}u) {
    {{VALUE}}
    {{ACCUMULATE}}
  }
  tree[lid] = acc;
  workgroupBarrier();
  for (var stride = ${WG / 2}u; stride > 0u; stride /= 2u) {
    if (lid < stride) { tree[lid] = acc_merge(tree[lid], tree[lid + stride]); }
    workgroupBarrier();
  }
  if (lid == 0u) { part[ix_part(_piece)] = acc_value(tree[0]); }
}`,
    {
      HELPERS: spec.helpers ?? "",
      VALUE: spec.value,
      ACCUMULATE: spec.statesIn ? "acc = acc_merge(acc, acc_from(v));" : "acc = acc_add(acc, v);",
    },
  );
}

/**
 * Records a reduction of `rows` contiguous rows of `rowLen` elements into `rows × pieces` vec4 partial
 * states (`part`, piece-major within a row); returns the number of pieces per row. Merge them with a
 * pointwise kernel using {@link combineWgsl}.
 */
export function runRowReduce(
  gpu: Gpu,
  spec: RowReduceSpec,
  rows: number,
  rowLen: number,
  pieceLen: number,
  args: readonly OperandArg[],
  part: BufferRange,
  uints: readonly number[] = [],
  floats: readonly number[] = [],
): number {
  const pieces = Math.max(1, Math.ceil(rowLen / pieceLen));
  if (rows === 0) return pieces;
  checkWhole(gpu, spec.name, spec.operands, args);
  const operands = [
    ...spec.operands,
    { name: "part", type: "vec4<f32>", write: true, index: "same" } as const,
  ];
  const allArgs = [...args, { range: part }];
  const kernel = gpu.kernel(
    kernelKey(`row:${spec.mode}:${spec.statesIn ? "m" : "a"}`, spec.key, spec.operands),
    () => ({
      name: spec.name,
      code: rowSource(spec),
      storage: operands.map((o) => (o.write ? "read_write" : "read")),
      uniform: true,
    }),
  );
  const pieceStart = (pc: number) => Math.floor(pc / pieces) * rowLen + (pc % pieces) * pieceLen;
  const pieceEnd = (pc: number) =>
    Math.min(pieceStart(pc) + pieceLen, (Math.floor(pc / pieces) + 1) * rowLen);
  const bind = (p0: number, p1: number) =>
    bindOperands(
      gpu,
      operands,
      allArgs,
      pieceStart(p0),
      Math.max(pieceEnd(p1 - 1), pieceStart(p0) + 1),
      (name) => (name === "part" ? [p0, p1] : undefined),
    );
  const chunks = planRuns(rows * pieces, (p0, p1) => bind(p0, p1) !== undefined, spec.name);
  for (const [p0, p1] of chunks) {
    const bound = bind(p0, p1)!;
    const params = new Params().u32(p0).u32(p1 - p0).u32(pieces).u32(rowLen).u32(pieceLen);
    pushOperandParams(params, operands, allArgs, bound);
    pushScalars(params, uints, floats);
    gpu.dispatch(kernel, bound.ranges, params, p1 - p0);
  }
  return pieces;
}

// ---------------------------------------------------------------------------------------------------
// Column reduction

/** A reduction over the middle axis of `[outer, r, inner]`: `value` computes `v` for element g. */
export interface ColumnReduceSpec {
  key: string;
  name: string;
  /** Operands read by `value` (the partials output is appended as `part`, [columns, pieces]). */
  operands: readonly OperandSpec[];
  uints?: readonly string[];
  floats?: readonly string[];
  /** WGSL statements that end by defining `let v: vec4<f32>` for element `g` (r is also in scope). */
  value: string;
  helpers?: string;
  mode: AccMode;
}

/** Layout of a column reduction. */
export interface ColumnShape {
  outer: number;
  r: number;
  inner: number;
}

function columnSource(spec: ColumnReduceSpec): string {
  const operands = [
    ...spec.operands,
    { name: "part", type: "vec4<f32>", write: true, index: "same" } as const,
  ];
  const fields = [
    "k0: u32",
    "nk: u32",
    "q0: u32",
    "nq: u32",
    "r0: u32",
    "r1: u32",
    "rr: u32",
    "inner: u32",
    "qlen: u32",
    "pieces: u32",
    ...operandFields(operands),
    ...scalarFields(spec.uints ?? [], spec.floats ?? []),
  ];
  return specialize(
    /* wgsl */ `
struct P { ${fields.join(", ")} }
${bindingDecls(operands)}
@group(1) @binding(0) var<uniform> p: P;
${LINEAR_INDEX}
${indexFns(operands)}
${ACC[spec.mode]}
{{HELPERS}}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let _t = linear_workgroup(wid, nwg) * ${WG}u + lid;
  if (_t >= p.nk * p.nq) { return; }
  let _q = p.q0 + _t / p.nk;
  let _k = p.k0 + _t % p.nk;
  let _o = _k / p.inner;
  let _j = _k % p.inner;
  let _ra = max(p.r0, _q * p.qlen);
  let _rb = min(p.r1, min(_q * p.qlen + p.qlen, p.rr));
  let _slot = ix_part(_k * p.pieces + _q);
  var acc = acc_init();
  if (p.r0 > _q * p.qlen) { acc = acc_from(part[_slot]); } // continues a block split over dispatches
  for (var r = _ra; r < _rb; r++) {
    let g = (_o * p.rr + r) * p.inner + _j;
    {{VALUE}}
    acc = acc_add(acc, v);
  }
  part[_slot] = acc_value(acc);
}`,
    { HELPERS: spec.helpers ?? "", VALUE: spec.value },
  );
}

/** Number of pieces the column reduction splits the reduced axis into (for few, long columns). */
export function columnPieces(s: ColumnShape): number {
  const columns = s.outer * s.inner;
  if (s.r <= 256 || columns >= 16384) return 1;
  return Math.max(1, Math.min(Math.ceil(s.r / 64), Math.ceil(16384 / columns)));
}

/**
 * Records a reduction over the middle axis of `[outer, r, inner]` into `columns × pieces` vec4 partial
 * states (`part[k·pieces + q]`, k = o·inner + j); returns `pieces`. Merge with {@link combineWgsl}.
 */
export function runColumnReduce(
  gpu: Gpu,
  spec: ColumnReduceSpec,
  shape: ColumnShape,
  args: readonly OperandArg[],
  part: BufferRange,
  uints: readonly number[] = [],
  floats: readonly number[] = [],
  pieces = columnPieces(shape),
): number {
  const { outer, r, inner } = shape;
  const columns = outer * inner;
  if (columns === 0) return pieces;
  checkWhole(gpu, spec.name, spec.operands, args);
  const operands = [
    ...spec.operands,
    { name: "part", type: "vec4<f32>", write: true, index: "same" } as const,
  ];
  const allArgs = [...args, { range: part }];
  const kernel = gpu.kernel(kernelKey(`col:${spec.mode}`, spec.key, spec.operands), () => ({
    name: spec.name,
    code: columnSource(spec),
    storage: operands.map((o) => (o.write ? "read_write" : "read")),
    uniform: true,
  }));
  const qlen = Math.ceil(r / pieces);
  // Elements of columns [k0, k1) over rows [r0, r1) of the reduced axis, and partial slots.
  const bind = (k0: number, k1: number, r0: number, r1: number, margin = 0) => {
    const first = (Math.floor(k0 / inner) * r + r0) * inner + (k0 % inner);
    const last = (Math.floor((k1 - 1) / inner) * r + Math.max(r1 - 1, r0)) * inner + ((k1 - 1) % inner);
    return bindOperands(
      gpu,
      operands,
      allArgs,
      first,
      last + 1,
      (name) => (name === "part" ? [k0 * pieces, (k1 - 1) * pieces + pieces] : undefined),
      margin,
    );
  };
  const dispatch = (k0: number, k1: number, q0: number, q1: number, r0: number, r1: number) => {
    const bound = bind(k0, k1, r0, r1)!;
    const params = new Params().u32(k0).u32(k1 - k0).u32(q0).u32(q1 - q0).u32(r0).u32(r1).u32(r).u32(inner)
      .u32(qlen).u32(pieces);
    pushOperandParams(params, operands, allArgs, bound);
    pushScalars(params, uints, floats);
    gpu.dispatch(kernel, bound.ranges, params, Math.ceil(((k1 - k0) * (q1 - q0)) / WG));
  };
  const rEnd = Math.max(r, 1);
  // one alignment of slack in front and the window's rounding at the end: what column 0's window may
  // lack against another column's, whatever their misalignment
  const margin = gpu.limits.minStorageBufferOffsetAlignment + WINDOW_GRANULE;
  if (bind(0, 1, 0, rEnd, margin)) {
    // whole pieces: chunks over columns
    const chunks = planRuns(columns, (k0, k1) => bind(k0, k1, 0, rEnd) !== undefined, spec.name);
    for (const [k0, k1] of chunks) dispatch(k0, k1, 0, pieces, 0, r);
    return pieces;
  }
  if (pieces !== 1) return runColumnReduce(gpu, spec, shape, args, part, uints, floats, 1);
  // one column over all of r does not fit: blocks of r, each continuing the running state (planned
  // with the margin, so that every column's window fits)
  const blocks = planRuns(r, (r0, r1) => bind(0, 1, r0, r1, margin) !== undefined, spec.name);
  for (const [r0, r1] of blocks) {
    const chunks = planRuns(columns, (k0, k1) => bind(k0, k1, r0, r1) !== undefined, spec.name);
    for (const [k0, k1] of chunks) dispatch(k0, k1, 0, 1, r0, r1);
  }
  return pieces;
}

// ---------------------------------------------------------------------------------------------------
// Reduce, then merge the pieces

/** A reduction layout: contiguous rows, or the middle axis of [outer, r, inner]. */
export type ReduceGeometry =
  /** `segment` (dividing len): pieces never cross a multiple of it (keeps per-voxel windows exact). */
  | { kind: "rows"; rows: number; len: number; segment?: number }
  | { kind: "columns"; outer: number; r: number; inner: number };

/** Most partial states one merge invocation combines; more are first merged by a row reduction. */
export const MAX_PIECES = 64;

/**
 * Pieces per row of {@link runReducePartials} with `fewPieces` (unless a binding forces shorter ones):
 * the pass that merges them reads them once per workgroup, so fewer keep that read small (16 states,
 * 256 bytes, per 1024 elements), while 2·32 rows of 160³ still give 1024 workgroups.
 */
export const FEW_PIECES = 16;

/** Number of results (rows or columns) of a reduction. */
export function reduceUnits(geo: ReduceGeometry): number {
  return geo.kind === "rows" ? geo.rows : geo.outer * geo.inner;
}

/** A row or column reduction followed by a pointwise pass over its results. */
export interface ReduceMergeSpec {
  key: string;
  name: string;
  mode: AccMode;
  operands: readonly OperandSpec[];
  /** WGSL statements defining `let v: vec4<f32>` for element g. */
  value: string;
  uints?: readonly string[];
  floats?: readonly string[];
  helpers?: string;
  /** Runs once per row/column: `combine_part(g)` gives its merged vec4 state. */
  merge: {
    operands: readonly OperandSpec[];
    body: string;
    uints?: readonly string[];
    floats?: readonly string[];
    helpers?: string;
  };
}

/** Buffers and scalars of {@link runReduceMerge}. */
export interface ReduceMergeArgs {
  args: readonly OperandArg[];
  uints?: readonly number[];
  floats?: readonly number[];
  mergeArgs: readonly OperandArg[];
  mergeUints?: readonly number[];
  mergeFloats?: readonly number[];
}

/** Partial states of a reduction: `pieces` vec4 states per row/column, `part[unit·pieces + q]`. */
export interface Partials {
  /** Scratch memory holding the states (release it to the scratch when done). */
  part: BufferRange;
  /** States per row/column (≤ {@link MAX_PIECES}). */
  pieces: number;
}

/**
 * Records a reduction over the rows or columns of `geo` into partial states in scratch memory, at most
 * {@link MAX_PIECES} per row/column: while a row has more, row reductions over its states merge them
 * first (one more pass each). With `fewPieces`, rows are cut into at most {@link FEW_PIECES} pieces
 * from the start (pieces of ⌈len/16⌉ elements when longer than 4096, as long as a binding allows), so
 * that the pass reading the states can merge them itself (2·32 channels of 160³: 1024 workgroups of
 * 256,000 elements each) instead of a separate merge pass.
 */
export function runReducePartials(
  gpu: Gpu,
  scratch: Scratch,
  geo: ReduceGeometry,
  spec: Omit<ReduceMergeSpec, "merge">,
  a: Pick<ReduceMergeArgs, "args" | "uints" | "floats">,
  fewPieces = false,
): Partials {
  const units = reduceUnits(geo);
  const maxBytes = Math.max(4, ...spec.operands.map((o) => OPERAND_BYTES[o.type]));
  let pieces: number;
  let part: BufferRange;
  if (geo.kind === "rows") {
    const seg = geo.segment && geo.segment > 0 && geo.len % geo.segment === 0 ? geo.segment : geo.len;
    const segments = seg === 0 ? 1 : geo.len / seg;
    const preferred = fewPieces ? Math.max(4096, Math.ceil(seg / FEW_PIECES)) : 4096;
    const pieceLen = rowPieceLength(gpu, Math.max(seg, 1), maxBytes, preferred);
    const perSegment = Math.max(1, Math.ceil(seg / pieceLen));
    pieces = segments * perSegment;
    part = scratch.acquire(units * pieces * 16);
    runRowReduce(gpu, spec, geo.rows * segments, seg, pieceLen, a.args, part, a.uints, a.floats);
  } else {
    pieces = columnPieces(geo);
    part = scratch.acquire(units * pieces * 16);
    pieces = runColumnReduce(gpu, spec, geo, a.args, part, a.uints, a.floats, pieces);
  }
  return mergePartials(gpu, scratch, { part, pieces }, units, spec.mode, spec.name, MAX_PIECES);
}

/**
 * Merges the partial states of `units` rows/columns (accumulator `mode`) by row reductions until at
 * most `maxPieces` remain per unit (one pass each; none when there are already few enough).
 */
export function mergePartials(
  gpu: Gpu,
  scratch: Scratch,
  partials: Partials,
  units: number,
  mode: AccMode,
  name: string,
  maxPieces: number,
): Partials {
  let { part, pieces } = partials;
  while (pieces > maxPieces) {
    // merge the partial states in parallel first (a reduction of 2·32 channels of 160³ leaves ~64k)
    const pieceLen = rowPieceLength(gpu, pieces, 16);
    const next = Math.ceil(pieces / pieceLen);
    const merged = scratch.acquire(units * next * 16);
    runRowReduce(
      gpu,
      {
        key: "merge_states",
        name: `${name}_merge_states`,
        operands: [{ name: "st", type: "vec4<f32>", index: "same" }],
        value: "let v = st[ix_st(g)];",
        mode,
        statesIn: true,
      },
      units,
      pieces,
      pieceLen,
      [{ range: part }],
      merged,
    );
    scratch.release(part);
    part = merged;
    pieces = next;
  }
  return { part, pieces };
}

/**
 * Records a reduction over the rows or columns of `geo` (pieces in scratch memory), then the merge
 * pass, one invocation per row/column, which sees its merged state as `combine_part(g)`.
 */
export function runReduceMerge(
  gpu: Gpu,
  scratch: Scratch,
  geo: ReduceGeometry,
  spec: ReduceMergeSpec,
  a: ReduceMergeArgs,
): void {
  const units = reduceUnits(geo);
  if (units === 0) return;
  const { part, pieces } = runReducePartials(gpu, scratch, geo, spec, a);
  const m = spec.merge;
  runPointwise(
    gpu,
    {
      key: `${spec.key}:merge:${spec.mode}`,
      name: `${spec.name}_merge`,
      operands: [{ name: "part", type: "vec4<f32>", index: "map" }, ...m.operands],
      uints: ["pieces", ...(m.uints ?? [])],
      floats: m.floats,
      helpers: accumulatorWgsl(spec.mode) + combineWgsl("part") + (m.helpers ?? ""),
      body: m.body,
    },
    units,
    [{ range: part, map: expandBy(pieces) }, ...a.mergeArgs],
    [pieces, ...(a.mergeUints ?? [])],
    a.mergeFloats ?? [],
  );
  scratch.release(part);
}
