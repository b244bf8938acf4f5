/**
 * Fused scaled-dot-product attention (FlashAttention-2 style): forward with online softmax and
 * log-sum-exp, backward with recomputation. The Lq×Lk score matrix never exists in memory.
 *
 * Layout: q [heads, Lq, Dh], k and v [heads, Lk, Dh], out [heads, Lq, Dh] (heads = batch·heads, each
 * head contiguous), lse [heads, Lq] in f32. Storage f32 or f16 (widened on load); all arithmetic and
 * accumulation in f32. Causal masking is top-left aligned like PyTorch's `is_causal`: query i sees keys
 * j ≤ i. Optional: an additive bias [slices, Lq, Lk] (f32 or f16, its own type) on the scaled scores,
 * where head h reads slice bias_slice(h) (h decomposed row-major over up to 8 dims, dotted with slice
 * strides, 0 where heads share it: [1, H] or [B, 1] broadcasts, or one slice per head); and a key mask
 * [rows, Lk] (u32 or f32, read as bits: zero, or ±0.0, excludes the key) whose row is head / headsPerRow.
 *
 * Work split: one workgroup per (head, block of rows). A row is a query (forward, dQ) or a key (dK/dV).
 * Each row is owned by `lanes` invocations of one subgroup; the head dimension, padded to vec4 slots
 * (`rowSlots` = lanes·slots), is dealt out lane-interleaved (lane l holds slots l, l+lanes, ...), so an
 * invocation keeps `slots` vec4 of its row's vectors and accumulators in registers. Partial dot products
 * are summed over the row's lanes with a subgroupShuffleXor butterfly (several rows' sums in one vector).
 * Without subgroups `lanes` is 1 and an invocation owns whole rows (no cross-invocation reduction).
 * lanes = the smallest power of two ≤ 8 (and ≤ the adapter's minimum subgroup size) giving ≤ 6 slots:
 * Dh 64 → 4×4, 66 and 72 → 4×5, 128 → 8×4, 33 → 2×5, 5 → 1×2. An invocation owns
 * `rowsPerInvocation` rows (2 when slots ≤ 5, else 1; rows rloc and rloc + workgroup/lanes): every vec4
 * read from workgroup memory then feeds 8 FMAs (4 with one row), at the price of registers: with 2 rows
 * of 5 slots, 80 floats of rows and accumulators plus 2·tile scores (forward), 120 (dQ), 160 (dK/dV).
 * Workgroup: 64·lanes invocations (≤ 256), so 128 rows per workgroup at Dh 64–72 and 64 at Dh 128.
 * The generator unrolls every loop over rows and slots into one variable per (row, slot), so that
 * compilers keep them in registers (lavapipe left loop-indexed register arrays in scratch memory at 5
 * slots: unrolling made dK/dV about 9× and the forward 2× faster there); loops over tiles and tile rows
 * stay loops. Tile vectors are read from workgroup memory again for the accumulations rather than kept
 * live across the lane reduction.
 * Rows are assigned per subgroup through a workgroup atomic (a subgroup takes the next index and owns
 * row groups index·(subgroup_size/lanes) + subgroup_invocation_id/lanes), so nothing assumes how
 * local_invocation_index maps onto subgroups. Should a subgroup be smaller than `lanes` (the launcher
 * avoids this when the adapter reports its sizes) the results are NaN, never silently wrong.
 *
 * Tiles: the other side (keys and values for forward and dQ; queries and dO for dK/dV) advances in tiles
 * of `tile` rows staged in workgroup memory as vec4<f32>: 2·tile·rowSlots·16 bytes. `tile` is the largest
 * of 32, 16, 8, ... that fits `maxComputeWorkgroupStorageSize` (32 KiB on lavapipe: tile 32 up to Dh 124,
 * 16 for Dh 128 in f32; 48 KiB GPUs: 32 up to Dh 188). Every staged value is read by all rows of the
 * workgroup, so global traffic per FMA falls with the rows per workgroup.
 *
 * Forward: per key tile, scores s_j = (q·k_j)·scale·log2(e) + bias_j·log2(e) for the tile (register array
 * of `tile` floats), one rescale of the accumulator by exp2(m_old − m_new), then acc += exp2(s_j − m)·v_j.
 * Everything stays finite, so fast-math cannot produce NaN: scores masked by the causal or key mask are
 * NEG = −1e30; a bias of −∞ (recognised by its bits) or ≤ −1e30 is clamped to −1e30 (·log2 e); the running
 * maximum m starts at −5e29, so masked scores weigh exp2(≤ −5e29) = 0 even before any key was seen (key
 * 0 may be masked). Any score below about −3e29 (natural units) therefore weighs exactly 0, like −∞.
 * Writes out = acc / l and lse = (m + log2 l)·ln 2 (natural log of Σ exp(scale·q·k + bias) over the keys
 * kept); a query without any key has l = 0 and gets out = 0, lse = −∞ (a bit pattern passed in the
 * params, never a constant a compiler could fold).
 * The key mask's flags of a tile are staged in workgroup memory; the bias is read per (query, key) from
 * global memory at the score (forward and dQ: consecutive keys per invocation; dK/dV: consecutive keys
 * across invocations).
 * Backward (three dispatches, a fourth for a shared bias's gradient; no float atomics). By default fused,
 * 5 Lq·Lk·Dh passes (stats, dkdvq, dqsum); with `fusedBackward: false`, or where the device cannot run
 * the fused kernel, 7 (stats, dq, dkdv):
 *   stats kernel: per query, lse·log2(e) (+1e30 for lse = −∞, so that every p of that query is 0) and
 *     D = dO·O; per key, the key mask's flag copied per head. One scratch [heads, 2·Lq (+ Lk)] keeps the
 *     other kernels within their bindings with a bias and dS.
 *   dK/dV/dQ kernel (dkdvq): per key row, over query tiles (starting at the key block when causal),
 *     p = exp2(s − lse·log2 e) and ds = p·(dO·v − D) with staged lse and D; dV += p·dO, dK += ds·q,
 *     dK ·= scale. It also stages the tile's ds in workgroup memory (tile·rows·4 bytes: the tile is then
 *     16 rows where dK/dV uses 32 on a 32 KiB device) and after each tile adds dQ_i = Σ_r ds_ir·k_r over
 *     its key rows (one vec4 slot of one query per invocation, k read from global memory) into its slab
 *     of f32 dQ partial sums [heads, slabs, Lq, Dh]. A workgroup owns one slab and runs the key blocks
 *     slab, slab + slabs, ... in turn (the first writes the slab's rows, the next ones add; causal: from
 *     each block's first key on), so the scratch is bounded whatever Lk ({@link attentionBackwardPlan}
 *     picks the slab count: parallelism against memory). With dBias it writes dS from the staged tile.
 *   dQ sum kernel (dqsum): per element of dQ, the slabs added in slab order, scaled. Deterministic: WGSL
 *     has no float atomics, and an atomic compare-exchange loop would make dQ depend on the order
 *     workgroups run in, which the resume tests' bit-exact loss curves forbid.
 *   7-pass path: a dQ kernel (per query row, over key tiles: the same p and ds, dQ += ds·k, dQ ·= scale;
 *     with the bias's gradient it also stores dS = ds [heads, Lq, Lk], lane 0 of each row, zeros for the
 *     keys after a causal block's last tile, into dBias itself when the bias has one slice per head, else
 *     into f32 scratch) and a dK/dV kernel (dkdvq without the dQ part). Both recompute q·k and dO·v.
 *   dBias kernel (shared bias only): per bias element, the sum of dS over the heads reading its slice,
 *     in f32, chunk by chunk of heads (adding to the previous chunks' sums).
 * FLOP counts in {@link attentionFlops} use the algorithm's 5 passes. A bias that needs no gradient costs
 * one read per score in each kernel and nothing else.
 *
 * Grid: heads·⌈L/rows⌉ workgroups (dkdvq: heads·slabs), linear (split over x/y/z past 65,535). Bindings larger than the device
 * allows are split over heads (head_chunks.ts), except a shared bias, the key mask and a shared bias's
 * f32 dBias, which are bound whole and must each fit one binding. Limits: ≤ 8 storage bindings per kernel
 * (forward 5–7, stats 4–5, dQ 6–8, dK/dV 7–8, dBias 2, dkdvq 8–10: within the device's storage buffers
 * per stage, 8 by WebGPU's default, else the 7-pass path; dqsum 2); one head's dQ slabs must fit one
 * binding; a shared bias's dBias needs heads·Lq·Lk f32 of scratch during the backward.
 */
import { align4, type BufferRange, type Gpu, Params } from "../core/gpu/mod.ts";
import { autotunerOf, bucket, type TuneProbe } from "./autotune.ts";
import { headChunks } from "./head_chunks.ts";
import { spanLimitBytes, windowOf } from "./launch_plan.ts";
import { LINEAR_INDEX, specialize } from "./wgsl.ts";

/** Storage type of attention operands. */
export type AttentionType = "f32" | "f16";

/** How one head dimension is laid over invocations and tiles (see the file header). */
export interface AttentionTiling {
  /** Head dimension the tiling is for. */
  headDim: number;
  /** Invocations per row (1 without subgroups). */
  lanes: number;
  /** vec4 slots per invocation. */
  slots: number;
  /** vec4 slots per row (lanes·slots ≥ ⌈headDim/4⌉, the excess zero-padded). */
  rowSlots: number;
  /** Rows each invocation owns in the forward and dQ kernels (1 or 2; dK/dV: 1). */
  rowsPerInvocation: number;
  /** Rows of the staged side per tile. */
  tile: number;
  /**
   * Query rows per tile of the fused dK/dV/dQ kernel, which also stages the tile's dS per key row
   * (0: it does not fit this device's workgroup memory, and the backward keeps the separate dQ kernel).
   */
  fusedTile: number;
  /** Invocations per workgroup. */
  workgroup: number;
  /** Whether the kernels use subgroup operations. */
  subgroups: boolean;
}

/** Options of the launchers. */
export interface AttentionKernelOptions {
  /** Use subgroup operations (default: when the device has them). */
  subgroups?: boolean;
  /**
   * Backward in 5 Lq·Lk·Dh passes (default, where the device allows it) or, when false, 7: the fused
   * kernel takes dQ from the dK/dV kernel's dS instead of recomputing q·k and dO·v. It needs
   * heads·slabs·Lq·Dh f32 of scratch (dQ partial sums, summed in a fixed order, so results stay
   * deterministic); see {@link attentionBackwardPlan} for how many slabs.
   */
  fusedBackward?: boolean;
  /**
   * Most dQ slabs per head of the fused backward (default: enough for {@link ATTENTION_TUNING}'s target
   * workgroups). More slabs, more parallelism over keys; fewer, less scratch.
   */
  dqSlabs?: number;
  /** Most bytes of the fused backward's dQ scratch (default {@link ATTENTION_TUNING}.dqScratchBytes). */
  dqScratchBytes?: number;
}

/** Shape and parameters of one attention call. */
export interface AttentionShape {
  /** batch·heads. */
  heads: number;
  /** Queries per head. */
  lq: number;
  /** Keys (and values) per head. */
  lk: number;
  /** Channels per head of q, k and v. */
  headDim: number;
  /** Multiplier of q·k (usually 1/√headDim). */
  scale: number;
  /** Top-left causal mask: query i sees keys j ≤ i. */
  causal: boolean;
}

/**
 * How heads share the slices of a broadcast bias: the head index, decomposed row-major over `dims`
 * (whose product is the number of heads), reads slice Σ coordinate_d·strides_d (stride 0 where the bias
 * broadcasts).
 */
export interface AttentionBiasLayout {
  /** At most 8 dimensions (the leading dimensions of q, size-1 ones dropped and runs merged). */
  dims: number[];
  /** Slice stride per dimension, 0 where shared. */
  strides: number[];
  /** Slices in the bias. */
  slices: number;
}

/** An additive bias on the scores: [slices, lq, lk] in its own storage type. */
export interface AttentionBias {
  range: BufferRange;
  /** Storage type; f16 needs the device's shader-f16. */
  type: AttentionType;
  /**
   * Heads sharing slices (the buffer is bound whole, so it must fit one binding); undefined: one slice
   * per head, slice h for head h (split over heads like q).
   */
  shared?: AttentionBiasLayout;
}

/** A key-padding mask: [rows, lk] flags, 0 (or ±0.0) excludes the key. */
export interface AttentionKeyMask {
  range: BufferRange;
  type: "u32" | "f32";
  /** 1 (shared by all heads) or the batch. */
  rows: number;
  /** Consecutive heads per row (heads / rows). */
  headsPerRow: number;
}

/** The optional score inputs of one call. */
export interface AttentionMasks {
  bias?: AttentionBias;
  keyMask?: AttentionKeyMask;
}

/** Picks lanes, rows and tile for a head dimension on this device. */
export function attentionTiling(
  gpu: Gpu,
  headDim: number,
  options: AttentionKernelOptions = {},
): AttentionTiling {
  if (!Number.isInteger(headDim) || headDim < 1) {
    throw new RangeError(`head dim must be >= 1, got ${headDim}`);
  }
  const subgroups = (options.subgroups ?? true) && gpu.hasSubgroups;
  const vec = Math.ceil(headDim / 4);
  let lanes = 1;
  if (subgroups) {
    // Only split a row across lanes that are surely in one subgroup; unknown sizes: assume ≥ 4.
    const minSize = gpu.limits.subgroupMinSize > 0 ? gpu.limits.subgroupMinSize : 4;
    const maxLanes = Math.min(8, minSize);
    while (lanes < maxLanes && Math.ceil(vec / lanes) > 6) lanes *= 2;
  }
  const slots = Math.ceil(vec / lanes);
  const rowSlots = lanes * slots;
  const workgroup = Math.min(256, gpu.limits.maxComputeInvocationsPerWorkgroup, 64 * lanes);
  // two rows per invocation halve the workgroup-memory loads per FMA where registers allow
  const rowsPerInvocation = slots <= 5 ? 2 : 1;
  const budget = gpu.limits.maxComputeWorkgroupStorageSize - 64;
  let tile = 32;
  while (tile > 1 && tile * (2 * rowSlots * 16 + 8) > budget) tile /= 2;
  if (tile * (2 * rowSlots * 16 + 8) > budget) {
    throw new RangeError(`attention: head dim ${headDim} does not fit this device's workgroup memory`);
  }
  // the fused backward also keeps dS of every (query of the tile, key row of the block) as f32
  const keyRows = (workgroup / lanes) * rowsPerInvocation;
  let fusedTile = 32;
  while (fusedTile >= 1 && fusedTile * (2 * rowSlots * 16 + 8 + keyRows * 4) > budget) fusedTile /= 2;
  return {
    headDim,
    lanes,
    slots,
    rowSlots,
    rowsPerInvocation,
    tile,
    fusedTile: fusedTile >= 1 ? fusedTile : 0,
    workgroup,
    subgroups: subgroups && lanes > 1,
  };
}

type Kind = "forward" | "stats" | "dq" | "dkdv" | "dkdvq" | "dqsum" | "dbias";

/** Which optional operands a kernel variant has. */
interface Variant {
  /** Storage type of the bias (forward, dQ, dK/dV), when there is one. */
  bias?: AttentionType;
  /** Whether a key mask applies. */
  mask: boolean;
  /** Storage type of dS (dQ kernel), when it is written. */
  ds?: AttentionType;
}

interface Binding {
  name: string;
  type: string;
  rw: boolean;
}

/**
 * The storage bindings of a kernel variant, in binding order (at most 8). The stats kernel copies the
 * key mask per head into the backward's scratch, so that dQ and dK/dV stay within 8 with a bias and dS.
 */
function layout(kind: Kind, type: AttentionType, v: Variant): Binding[] {
  const b = (name: string, ty: string, rw = false): Binding => ({ name, type: ty, rw });
  const bias = v.bias ? [b("bias", v.bias)] : [];
  const mask = v.mask ? [b("mask", "u32")] : [];
  const qkvg = [b("q", type), b("k", type), b("vv", type), b("g", type)];
  switch (kind) {
    case "forward":
      return [
        b("q", type),
        b("k", type),
        b("vv", type),
        b("out", type, true),
        b("lse", "f32", true),
        ...bias,
        ...mask,
      ];
    case "stats":
      return [b("o", type), b("g", type), b("lse", "f32"), ...mask, b("stats", "f32", true)];
    case "dq":
      return [
        ...qkvg,
        b("stats", "f32"),
        b("dq", type, true),
        ...bias,
        ...(v.ds ? [b("ds", v.ds, true)] : []),
      ];
    case "dkdv":
      return [...qkvg, b("stats", "f32"), b("dk", type, true), b("dv", type, true), ...bias];
    case "dkdvq":
      return [
        ...qkvg,
        b("stats", "f32"),
        b("dk", type, true),
        b("dv", type, true),
        b("dqp", "f32", true),
        ...bias,
        ...(v.ds ? [b("ds", v.ds, true)] : []),
      ];
    case "dqsum":
      return [b("dqp", "f32"), b("dq", type, true)];
    case "dbias":
      return [b("ds", "f32"), b("dbias", "f32", true)];
  }
}

/** Invocations of the stats kernel's workgroups (one per query, or per key of the copied mask). */
const STATS_WORKGROUP = 64;
/** Invocations of the dBias kernel's workgroups (one per bias element). */
const DBIAS_WORKGROUP = 256;
/** Invocations of the dQ sum's workgroups (one per element of dQ). */
const DQSUM_WORKGROUP = 256;

/** Rows (queries or keys) one invocation owns in a kernel. */
function rowsPerInvocation(_kind: Kind, t: AttentionTiling): number {
  return t.rowsPerInvocation;
}

/** Rows per workgroup of a kernel. */
function blockRows(kind: Kind, t: AttentionTiling): number {
  if (kind === "stats") return STATS_WORKGROUP;
  if (kind === "dbias") return DBIAS_WORKGROUP;
  if (kind === "dqsum") return DQSUM_WORKGROUP;
  return (t.workgroup / t.lanes) * rowsPerInvocation(kind, t);
}

/** `f(0) … f(n−1)` joined: the generator unrolls every loop over rows and slots. */
function unroll(n: number, f: (i: number) => string, separator = "\n  "): string {
  return Array.from({ length: n }, (_, i) => f(i)).join(separator);
}

/** The params struct shared by all attention kernels (see dispatchChunks). */
const PARAMS = `
struct P {
  lq: u32, lk: u32, heads: u32, blocks: u32, scale: f32, scale2: f32, causal: u32, head0: u32,
  brank: u32, sbase: u32, slices: u32, accumulate: u32, mdiv: u32, mstride: u32, mand: u32, ninf: u32,
  spre: u32, nkb: u32, kbrows: u32, slabs: u32,
  bdims: array<vec4<u32>, 2>, bstrides: array<vec4<u32>, 2>,
  o0: u32, o1: u32, o2: u32, o3: u32, o4: u32, o5: u32, o6: u32, o7: u32, o8: u32, o9: u32, o10: u32,
  o11: u32,
}
@group(1) @binding(0) var<uniform> p: P;
// the bias slice of (global) head h: h row-major over p.bdims, dotted with p.bstrides
fn bias_slice(h: u32) -> u32 {
  var rest = h;
  var slice = 0u;
  for (var d = p.brank; d > 0u; d--) {
    let n = p.bdims[(d - 1u) / 4u][(d - 1u) % 4u];
    slice += (rest % n) * p.bstrides[(d - 1u) / 4u][(d - 1u) % 4u];
    rest /= n;
  }
  return slice;
}
const NEG: f32 = -1.0e30;
const MINIT: f32 = -5.0e29;
const LOG2E: f32 = 1.4426950408889634;
const LN2: f32 = 0.6931471805599453;
`;

function source(kind: Kind, type: AttentionType, t: AttentionTiling, variant: Variant): string {
  const { headDim: DH, lanes: T, slots: NV, rowSlots: SP, workgroup: WG } = t;
  const fused = kind === "dkdvq";
  const BC = fused ? t.fusedTile : t.tile;
  const binds = layout(kind, type, variant);
  const buffers = binds.map((b, i) =>
    `@group(0) @binding(${i}) var<storage, ${b.rw ? "read_write" : "read"}> ${b.name}: array<${b.type}>;`
  ).join("\n");
  // element offset of the chunk's first head (or of the whole binding) in binding `name`
  const O = (name: string) => {
    const i = binds.findIndex((b) => b.name === name);
    if (i < 0) throw new Error(`attention ${kind}: no binding ${name}`);
    return `p.o${i}`;
  };
  if (kind === "dbias") {
    // dBias of a shared bias: per element of a slice, the sum of dS over this chunk's heads reading it
    return specialize(
      /* wgsl */ `
${buffers}
${PARAMS}
${LINEAR_INDEX}
@compute @workgroup_size(${DBIAS_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let e = linear_workgroup(wid, nwg) * ${DBIAS_WORKGROUP}u + lid;
  let n = p.lq * p.lk;
  if (e >= p.slices * n) { return; }
  let slice = e / n;
  let w = e % n;
  var acc = 0.0;
  for (var h = 0u; h < p.heads; h++) {
    if (bias_slice(p.head0 + h) == slice) { acc += ds[${O("ds")} + h * n + w]; }
  }
  if (p.accumulate != 0u) { acc += dbias[${O("dbias")} + e]; }
  dbias[${O("dbias")} + e] = acc;
}`,
      {},
    );
  }
  if (kind === "dqsum") {
    // dQ of the fused backward: per element, scale · the sum of the slabs in slab order (deterministic);
    // with a causal mask, slab g (key blocks g, g + slabs, ...) only wrote queries ≥ g·kbrows
    return specialize(
      /* wgsl */ `
${buffers}
${PARAMS}
${LINEAR_INDEX}
@compute @workgroup_size(${DQSUM_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let wg = linear_workgroup(wid, nwg);
  if (wg >= p.heads * p.blocks) { return; }
  let head = wg / p.blocks;
  let e = (wg % p.blocks) * ${DQSUM_WORKGROUP}u + lid;
  let n = p.lq * ${DH}u;
  if (e >= n) { return; }
  var slabs = p.slabs;
  if (p.causal != 0u) { slabs = min(slabs, (e / ${DH}u) / p.kbrows + 1u); }
  var acc = 0.0;
  let base = ${O("dqp")} + head * p.slabs * n + e;
  for (var g = 0u; g < slabs; g++) { acc += dqp[base + g * n]; }
  dq[${O("dq")} + head * n + e] = {{T}}(acc * p.scale);
}`,
      { T: type },
    );
  }
  if (kind === "stats") {
    // D = dO·O and lse in log2 units (+1e30 for a query without keys, whose p then all vanish) per query;
    // then, with a key mask, each head's copy of its flags (1.0 kept, 0.0 masked)
    const maskCopy = variant.mask
      ? ` else if (e < p.lq + p.lk) {
    let key = e - p.lq;
    let bits = mask[${O("mask")} + ((p.head0 + head) / p.mdiv) * p.mstride + key];
    stats[st0 + p.lq + e] = select(0.0, 1.0, (bits & p.mand) != 0u);
  }`
      : "";
    return specialize(
      /* wgsl */ `
${buffers}
${PARAMS}
${LINEAR_INDEX}
@compute @workgroup_size(${STATS_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let wg = linear_workgroup(wid, nwg);
  if (wg >= p.heads * p.blocks) { return; }
  let head = wg / p.blocks;
  let e = (wg % p.blocks) * ${STATS_WORKGROUP}u + lid;
  let st0 = ${O("stats")} + head * p.spre;
  if (e < p.lq) {
    let row = head * p.lq * ${DH}u + e * ${DH}u;
    var d = 0.0;
    for (var c = 0u; c < ${DH}u; c++) { d = fma(f32(g[${O("g")} + row + c]), f32(o[${
        O("o")
      } + row + c]), d); }
    let l = lse[${O("lse")} + head * p.lq + e];
    stats[st0 + e] = select(l * LOG2E, -NEG, bitcast<u32>(l) == p.ninf);
    stats[st0 + p.lq + e] = d;
  }${maskCopy}
}`,
      { T: type },
    );
  }
  const R = rowsPerInvocation(kind, t);
  const RS = WG / T; // row groups per workgroup: the rows of invocation rloc are rloc + r·RS
  const BR = RS * R;
  // Rows and slots are unrolled into one variable per (row, slot) (`q0_3`, `a1_2`, ...), so that every
  // compiler keeps them in registers; loops over tiles and tile rows stay loops.
  const slot = (v: number) => `lane + ${v * T}u`;
  const rowOf = (r: number) => `row0 + ${r * RS}u`;
  const each = (f: (r: number, v: number) => string, sep = "\n  ") =>
    unroll(R, (r) => unroll(NV, (v) => f(r, v), sep), sep);
  // a vector of per-row sums Σ_v dot(a{r}_{v}, b{v}) (one per row, then one per row of a second pair)
  const dots = (pairs: [string, string][]) => {
    const terms = pairs.flatMap(([a, b]) =>
      unroll(R, (r) => unroll(NV, (v) => `dot(${a}${r}_${v}, ${b}${v})`, " + "), "|").split("|")
    );
    return terms.length === 1 ? terms[0] : `vec${terms.length}<f32>(${terms.join(", ")})`;
  };
  const sumFn = (n: number) => (n === 1 ? "lanes_sum0" : n === 2 ? "lanes_sum1" : "lanes_sum2");
  const component = (n: number, i: number) => (n === 1 ? "x" : `x[${i}]`);
  // one vec4 slot of a row of `buf` (zeros past `limit` or the head dim), and its store
  const loader = (buf: string) => `
fn ld_${buf}(base: u32, row: u32, limit: u32, s: u32) -> vec4<f32> {
  var x = vec4<f32>(0.0);
  let d = s * 4u;
  if (row < limit) {
    let i = base + row * ${DH}u + d;
    if (d + 4u <= ${DH}u) {
      x = vec4<f32>(f32(${buf}[i]), f32(${buf}[i + 1u]), f32(${buf}[i + 2u]), f32(${buf}[i + 3u]));
    } else {
      for (var c = 0u; c < 4u; c++) { if (d + c < ${DH}u) { x[c] = f32(${buf}[i + c]); } }
    }
  }
  return x;
}`;
  const storer = (buf: string) => `
fn st_${buf}(base: u32, row: u32, limit: u32, s: u32, x: vec4<f32>) {
  let d = s * 4u;
  if (row < limit) {
    let i = base + row * ${DH}u + d;
    for (var c = 0u; c < 4u; c++) { if (d + c < ${DH}u) { ${buf}[i + c] = {{T}}(x[c]); } }
  }
}`;
  const loadRows = (name: string, buf: string, base: string, limit: string, factor = "") =>
    each((r, v) => `var ${name}${r}_${v} = ld_${buf}(${base}, ${rowOf(r)}, ${limit}, ${slot(v)})${factor};`);
  const storeRows = (buf: string, base: string, name: string, factor: (r: number) => string, limit: string) =>
    each((r, v) => `st_${buf}(${base}, ${rowOf(r)}, ${limit}, ${slot(v)}, ${name}${r}_${v} * ${factor(r)});`);
  const zeros = (name: string) => each((r, v) => `var ${name}${r}_${v} = vec4<f32>(0.0);`);
  // rows first..first+BC−1 of `buf` into a workgroup tile (vec4 slots), zeros past `limit`
  const loadTile = (tileName: string, buf: string, base: string, first: string, limit: string) => `
    for (var e = lid; e < ${BC * SP}u; e += ${WG}u) {
      ${tileName}[e] = ld_${buf}(${base}, ${first} + e / ${SP}u, ${limit}, e % ${SP}u);
    }`;
  let butterfly = "";
  for (let mask = 1; mask < T; mask *= 2) butterfly += `y += subgroupShuffleXor(y, ${mask}u); `;
  const sgArgs = t.subgroups
    ? `, @builtin(subgroup_invocation_id) sid: u32, @builtin(subgroup_size) ssz: u32`
    : "";
  const sgDecl = t.subgroups ? `var<workgroup> sg_next: atomic<u32>;` : "";
  const rowMapping = t.subgroups
    ? `
  if (lid == 0u) { atomicStore(&sg_next, 0u); }
  workgroupBarrier();
  var sg_index = 0u;
  if (sid == 0u) { sg_index = atomicAdd(&sg_next, 1u); }
  sg_index = subgroupBroadcast(sg_index, 0u);
  let lane = sid % ${T}u;
  let rloc = sg_index * (ssz / ${T}u) + sid / ${T}u;
  let poison = select(bitcast<f32>(0x7fc00000u), 1.0, ssz >= ${T}u);`
    : `
  let lane = 0u;
  let rloc = lid;
  let poison = 1.0;`;
  // sums over the lanes of a row: f32 and the vector widths the kernels reduce at once
  const sums = ["f32", "vec2<f32>", "vec4<f32>"].map((ty, i) =>
    `fn lanes_sum${i}(x: ${ty}) -> ${ty} { var y = x; ${butterfly}return y; }`
  ).join("\n");
  // The bias in log2 units, −∞ (recognised by its bits, so that no fast-math assumption can lose it) and
  // anything below −1e30 clamped to −1e30·log2(e): such scores weigh exactly 0 (see the file header).
  const biasFn = variant.bias
    ? `
fn bias2(i: u32) -> f32 {
  let b = f32(bias[i]);
  return select(max(b, NEG) * LOG2E, NEG, bitcast<u32>(b) == 0xff800000u);
}`
    : "";
  // Element offset of this head's [lq, lk] bias slice: heads may share slices (bias_slice), and a bias
  // split over heads like q starts its chunk at slice p.sbase.
  const biasBase = variant.bias
    ? `
  let bb = ${O("bias")} + (bias_slice(p.head0 + head) - p.sbase) * p.lq * p.lk;`
    : "";
  // + the bias of (query, key) in log2 units (indices clamped into the slice: out-of-range pairs are masked)
  const biasTerm = (query: string, key: string) =>
    variant.bias ? ` + bias2(bb + min(${query}, p.lq - 1u) * p.lk + min(${key}, p.lk - 1u))` : "";
  const flagTile = variant.mask && kind !== "dkdv" && !fused ? `var<workgroup> tf: array<f32, ${BC}>;` : "";

  const prelude = `
${PARAMS}
${sgDecl}
${LINEAR_INDEX}
${sums}
var<workgroup> ta: array<vec4<f32>, ${BC * SP}>;
var<workgroup> tb: array<vec4<f32>, ${BC * SP}>;
${flagTile}
${biasFn}
`;
  // One workgroup per (head, block of rows); the fused kernel's workgroup owns slab `slab` of its head's
  // dQ partial sums and runs key blocks slab, slab + slabs, ... one after the other (the loop is closed
  // at the end of the kernel body).
  const entry = `
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32${sgArgs}) {
  let wg = linear_workgroup(wid, nwg);
  if (wg >= p.heads * p.blocks) { return; }
  let head = wg / p.blocks;
  ${fused ? "let slab = wg % p.blocks;" : "let block = wg % p.blocks;"}
  ${rowMapping}
  let qh = head * p.lq * ${DH}u;
  let kh = head * p.lk * ${DH}u;${biasBase}${
    fused
      ? `
  for (var block = slab; block < p.nkb; block += p.blocks) {`
      : ""
  }
  let row0 = block * ${BR}u + rloc;`;
  // key flags of a key tile (forward: from the mask; dQ: from the stats scratch), 0.0 past lk
  const flagSource = () =>
    kind === "forward"
      ? `(mask[${O("mask")} + ((p.head0 + head) / p.mdiv) * p.mstride + key] & p.mand) != 0u`
      : `stats[st0 + 2u * p.lq + key] != 0.0`;
  const flagLoad = variant.mask
    ? `
    for (var e = lid; e < ${BC}u; e += ${WG}u) {
      let key = k0 + e;
      var f = 0.0;
      if (key < p.lk) { if (${flagSource()}) { f = 1.0; } }
      tf[e] = f;
    }`
    : "";
  // key tiles of forward and dQ stop after the block's last row when causal
  const keyLoop = `
  var k_end = p.lk;
  if (p.causal != 0u) { k_end = min(p.lk, (block + 1u) * ${BR}u); }
  for (var k0 = 0u; k0 < k_end; k0 += ${BC}u) {
    workgroupBarrier();
    ${loadTile("ta", "k", `${O("k")} + kh`, "k0", "p.lk")}
    ${loadTile("tb", "vv", `${O("vv")} + kh`, "k0", "p.lk")}${flagLoad}
    workgroupBarrier();`;
  const masked = (r: number) =>
    `(key >= p.lk || (p.causal != 0u && key > ${rowOf(r)})${variant.mask ? " || tf[j] == 0.0" : ""})`;

  if (kind === "forward") {
    return specialize(
      /* wgsl */ `
${buffers}
${prelude}
${loader("q")}${loader("k")}${loader("vv")}${storer("out")}
${entry}
  ${loadRows("q", "q", `${O("q")} + qh`, "p.lq", " * p.scale2")}
  ${zeros("a")}
  ${unroll(R, (r) => `var m${r} = MINIT;\n  var l${r} = 0.0;\n  var s${r}: array<f32, ${BC}>;`)}
  ${keyLoop}
    ${unroll(R, (r) => `var mb${r} = NEG;`)}
    for (var j = 0u; j < ${BC}u; j++) {
      ${unroll(NV, (v) => `let kt${v} = ta[j * ${SP}u + ${slot(v)}];`, "\n      ")}
      var x = ${dots([["q", "kt"]])};
      x = ${sumFn(R)}(x);
      let key = k0 + j;
      ${
        unroll(R, (r) =>
          `{ let sc = select(${component(R, r)}${biasTerm(rowOf(r), "key")}, NEG, ${
            masked(r)
          }); s${r}[j] = sc; mb${r} = max(mb${r}, sc); }`, "\n      ")
      }
    }
    ${
        unroll(R, (r) =>
          `{
      let mn = max(m${r}, mb${r});
      let alpha = exp2(m${r} - mn);
      l${r} *= alpha;
      ${
            unroll(NV, (v) => `a${r}_${v} *= alpha;`, " ")
          }
      m${r} = mn;
    }`, "\n    ")
      }
    for (var j = 0u; j < ${BC}u; j++) {
      ${unroll(R, (r) => `let p${r} = exp2(s${r}[j] - m${r});\n      l${r} += p${r};`, "\n      ")}
      ${
        unroll(NV, (v) =>
          `{ let vt = tb[j * ${SP}u + ${slot(v)}]; ${
            unroll(R, (r) =>
              `a${r}_${v} = fma(vec4<f32>(p${r}), vt, a${r}_${v});`, " ")
          } }`, "\n      ")
      }
    }
  }
  ${
        unroll(R, (r) =>
          `let none${r} = l${r} == 0.0; // no key: output 0, lse −∞
  let lsafe${r} = select(l${r}, 1.0, none${r});
  let inv${r} = select(1.0 / lsafe${r}, 0.0, none${r}) * poison;`)
      }
  ${storeRows("out", `${O("out")} + qh`, "a", (r) => `inv${r}`, "p.lq")}
  if (lane == 0u) {
    ${
        unroll(R, (r) =>
          `if (${rowOf(r)} < p.lq) {
      lse[${O("lse")} + head * p.lq + ${rowOf(r)}] =
        select((m${r} + log2(lsafe${r})) * LN2, bitcast<f32>(p.ninf), none${r}) * poison;
    }`, "\n    ")
      }
  }
}`,
      { T: type },
    );
  }

  if (kind === "dq") {
    // q·k and dO·v of the R rows reduced at once: vec2 [s, dp] (R = 1) or vec4 [s0, s1, dp0, dp1] (R = 2)
    const db = variant.ds;
    const dbiasStore = db
      ? `
      if (lane == 0u && key < p.lk) {
        ${
        unroll(
          R,
          (r) => `if (${rowOf(r)} < p.lq) { ds[db0 + (${rowOf(r)}) * p.lk + key] = ${db}(ds${r} * poison); }`,
          "\n        ",
        )
      }
      }`
      : "";
    // keys after a causal block's last tile are never visited: their dS is 0
    const dbiasTail = db
      ? `
  for (var key = k_end + lane; key < p.lk; key += ${T}u) {
    ${unroll(R, (r) => `if (${rowOf(r)} < p.lq) { ds[db0 + (${rowOf(r)}) * p.lk + key] = ${db}(0.0); }`)}
  }`
      : "";
    return specialize(
      /* wgsl */ `
${buffers}
${prelude}
${loader("q")}${loader("k")}${loader("vv")}${loader("g")}${storer("dq")}
${entry}
  let st0 = ${O("stats")} + head * p.spre;${db ? `\n  let db0 = ${O("ds")} + head * p.lq * p.lk;` : ""}
  ${loadRows("q", "q", `${O("q")} + qh`, "p.lq")}
  ${loadRows("g", "g", `${O("g")} + qh`, "p.lq")}
  ${
        unroll(R, (r) =>
          `var dd${r} = 0.0;
  var lse2_${r} = 0.0;
  if (${rowOf(r)} < p.lq) { lse2_${r} = stats[st0 + ${rowOf(r)}]; dd${r} = stats[st0 + p.lq + ${
            rowOf(r)
          }]; }`)
      }
  ${zeros("a")}
  ${keyLoop}
    for (var j = 0u; j < ${BC}u; j++) {
      ${
        unroll(
          NV,
          (v) => `let kt${v} = ta[j * ${SP}u + ${slot(v)}];\n      let wt${v} = tb[j * ${SP}u + ${slot(v)}];`,
          "\n      ",
        )
      }
      var x = ${dots([["q", "kt"], ["g", "wt"]])};
      x = ${sumFn(2 * R)}(x);
      let key = k0 + j;
      ${
        unroll(R, (r) =>
          `let ds${r} = select(exp2(x[${r}] * p.scale2${biasTerm(rowOf(r), "key")} - lse2_${r}), 0.0, ${
            masked(r)
          }) * (x[${R + r}] - dd${r});`, "\n      ")
      }${dbiasStore}
      ${
        unroll(
          NV,
          (v) =>
            `{
        let kt = ta[j * ${SP}u + ${slot(v)}];
        ${unroll(R, (r) => `a${r}_${v} = fma(vec4<f32>(ds${r}), kt, a${r}_${v});`, " ")}
      }`,
          "\n      ",
        )
      }
    }
  }${dbiasTail}
  ${storeRows("dq", `${O("dq")} + qh`, "a", () => "(p.scale * poison)", "p.lq")}
}`,
      { T: type },
    );
  }

  // dK/dV: R key rows per invocation, query tiles staged with their lse and D; k·q and v·dO of the R rows
  // reduced at once as in dQ. The tile vectors are read again for the accumulation (fewer live registers).
  const keyFlags = variant.mask
    ? unroll(R, (r) =>
      `var kf${r} = 0.0;
  if (${rowOf(r)} < p.lk) { kf${r} = stats[st0 + 2u * p.lq + ${rowOf(r)}]; }`)
    : "";
  // Fused (dkdvq): every ds of the tile is also staged in workgroup memory, tds[query · BR + key row];
  // after the tile the workgroup adds dQ_i = Σ_r ds_ir·k_r over its key rows (one vec4 slot of one query
  // per invocation, k read from global memory) into its slab of dQ partials (written by the slab's first
  // key block, added to by the next ones), so that q·k and dO·v are computed once (the dQ sum adds the
  // slabs and scales). With dBias it also writes dS. Query tiles start at multiples of the tile in every
  // block (block rows are a multiple of it), so each slab element is read and written by one invocation
  // only: program order orders the additions, no barrier needed.
  const db = fused ? variant.ds : undefined;
  const stageDs = fused
    ? `
      if (lane == 0u) {
        ${unroll(R, (r) => `tds[i * ${BR}u + rloc + ${r * RS}u] = ds${r} * poison;`, "\n        ")}
      }`
    : "";
  const dsTile = db
    ? `
    for (var e = lid; e < ${BC * BR}u; e += ${WG}u) {
      let qi = q0 + e / ${BR}u;
      let key = kb0 + e % ${BR}u;
      if (qi < p.lq && key < p.lk) { ds[db0 + qi * p.lk + key] = ${db}(tds[e]); }
    }`
    : "";
  const dqTile = fused
    ? `
    workgroupBarrier();
    for (var e = lid; e < ${BC * SP}u; e += ${WG}u) {
      let i = e / ${SP}u;
      let sl = e % ${SP}u;
      var acc = vec4<f32>(0.0);
      for (var rr = 0u; rr < ${BR}u; rr++) {
        acc = fma(vec4<f32>(tds[i * ${BR}u + rr]), ld_k(${O("k")} + kh, kb0 + rr, p.lk, sl), acc);
      }
      let qi = q0 + i;
      if (qi < p.lq) {
        let d = sl * 4u;
        for (var c = 0u; c < 4u; c++) {
          if (d + c < ${DH}u) {
            let at = qp0 + qi * ${DH}u + d + c;
            if (block == slab) { dqp[at] = acc[c]; } else { dqp[at] += acc[c]; }
          }
        }
      }
    }${dsTile}`
    : "";
  // queries before a causal key block are never visited: their dS is 0
  const dsCausalZeros = db
    ? `
  if (p.causal != 0u) {
    for (var e = lid; e < q_start * ${BR}u; e += ${WG}u) {
      let qi = e / ${BR}u;
      let key = kb0 + e % ${BR}u;
      if (qi < p.lq && key < p.lk) { ds[db0 + qi * p.lk + key] = ${db}(0.0); }
    }
  }`
    : "";
  return specialize(
    /* wgsl */ `
${buffers}
${prelude}
${loader("q")}${loader("k")}${loader("vv")}${loader("g")}${storer("dk")}${storer("dv")}
var<workgroup> tl: array<f32, ${BC}>;
var<workgroup> td: array<f32, ${BC}>;
${fused ? `var<workgroup> tds: array<f32, ${BC * BR}>;` : ""}
${entry}
  let st0 = ${O("stats")} + head * p.spre;${
      fused
        ? `
  let kb0 = block * ${BR}u;
  let qp0 = ${O("dqp")} + (head * p.blocks + slab) * p.lq * ${DH}u;`
        : ""
    }${
      db
        ? `
  let db0 = ${O("ds")} + head * p.lq * p.lk;`
        : ""
    }
  ${loadRows("k", "k", `${O("k")} + kh`, "p.lk")}
  ${loadRows("v", "vv", `${O("vv")} + kh`, "p.lk")}
  ${keyFlags}
  ${zeros("ak")}
  ${zeros("av")}
  var q_start = 0u;
  if (p.causal != 0u) { q_start = block * ${BR}u; }
  for (var q0 = q_start; q0 < p.lq; q0 += ${BC}u) {
    workgroupBarrier();
    ${loadTile("ta", "q", `${O("q")} + qh`, "q0", "p.lq")}
    ${loadTile("tb", "g", `${O("g")} + qh`, "q0", "p.lq")}
    for (var e = lid; e < ${BC}u; e += ${WG}u) {
      let qe = q0 + e;
      var a = 0.0;
      var b = 0.0;
      if (qe < p.lq) { a = stats[st0 + qe]; b = stats[st0 + p.lq + qe]; }
      tl[e] = a;
      td[e] = b;
    }
    workgroupBarrier();
    for (var i = 0u; i < ${BC}u; i++) {
      var x = ${
      (() => {
        const terms = [
          ...unroll(R, (r) => unroll(NV, (v) => `dot(k${r}_${v}, ta[i * ${SP}u + ${slot(v)}])`, " + "), "|")
            .split("|"),
          ...unroll(R, (r) => unroll(NV, (v) => `dot(v${r}_${v}, tb[i * ${SP}u + ${slot(v)}])`, " + "), "|")
            .split("|"),
        ];
        return `vec${terms.length}<f32>(${terms.join(", ")})`;
      })()
    };
      x = ${sumFn(2 * R)}(x);
      let qi = q0 + i;
      ${
      unroll(R, (r) =>
        `let p${r} = select(exp2(x[${r}] * p.scale2${
          biasTerm("qi", rowOf(r))
        } - tl[i]), 0.0, qi >= p.lq || (p.causal != 0u && ${rowOf(r)} > qi)${
          variant.mask ? ` || kf${r} == 0.0` : ""
        });
      let ds${r} = p${r} * (x[${R + r}] - td[i]);`, "\n      ")
    }${stageDs}
      ${
      unroll(NV, (v) =>
        `{
        let qt = ta[i * ${SP}u + ${slot(v)}];
        let gt = tb[i * ${SP}u + ${slot(v)}];
        ${
          unroll(
            R,
            (r) =>
              `av${r}_${v} = fma(vec4<f32>(p${r}), gt, av${r}_${v});\n        ak${r}_${v} = fma(vec4<f32>(ds${r}), qt, ak${r}_${v});`,
            "\n        ",
          )
        }
      }`, "\n      ")
    }
    }${dqTile}
  }${dsCausalZeros}
  ${storeRows("dk", `${O("dk")} + kh`, "ak", () => "(p.scale * poison)", "p.lk")}
  ${storeRows("dv", `${O("dv")} + kh`, "av", () => "poison", "p.lk")}${fused ? "\n  }" : ""}
}`,
    { T: type },
  );
}

function kernelFor(gpu: Gpu, kind: Kind, type: AttentionType, t: AttentionTiling, v: Variant) {
  const rows = blockRows(kind, t);
  const extra = `${v.bias ? `,bias-${v.bias}` : ""}${v.mask ? ",keymask" : ""}${v.ds ? `,ds-${v.ds}` : ""}`;
  const key = `attention:${kind}:${type}:${t.headDim}:${t.lanes}x${t.slots}:${rows}:${t.tile}:${+t
    .subgroups}${extra}`;
  return gpu.kernel(key, () => ({
    name: `attention-${kind}[${type},dh${t.headDim},${t.lanes}x${t.slots},r${rows},t${t.tile}${
      t.subgroups ? ",sg" : ""
    }${extra}]`,
    code: source(kind, type, t, v),
    storage: layout(kind, type, v).map((b) => (b.rw ? "read_write" : "read")),
    uniform: true,
  }));
}

/** A binding of one dispatch: per-head data (split over heads), or a whole buffer shared by all heads. */
interface Bound {
  range: BufferRange;
  /** Elements per head; undefined: bound whole. */
  perHead?: number;
  elementBytes: number;
}

/** The whole of `b` as one binding (the launch planner's window) and the element offset of its data in it. */
function wholeBinding(gpu: Gpu, name: string, b: Bound): { range: BufferRange; offset: number } {
  const w = windowOf(gpu.limits, b.range, b.elementBytes, 0, Math.ceil(b.range.size / b.elementBytes));
  if (w.binding.size > gpu.limits.maxStorageBufferBindingSize) {
    throw new RangeError(
      `attention: the ${name} (${b.range.size} bytes) is shared by several heads and must fit one storage ` +
        `binding (${gpu.limits.maxStorageBufferBindingSize} bytes)`,
    );
  }
  return { range: w.binding, offset: -w.first };
}

function dispatchChunks(
  gpu: Gpu,
  kind: Kind,
  type: AttentionType,
  s: AttentionShape,
  t: AttentionTiling,
  masks: AttentionMasks,
  ds: AttentionType | undefined,
  bound: Record<string, Bound>,
  rowsPerHead: number,
  slabs = 0,
): void {
  const variant: Variant = {
    bias: kind === "stats" || kind === "dbias" || kind === "dqsum" ? undefined : masks.bias?.type,
    mask: masks.keyMask !== undefined && kind !== "dbias" && kind !== "dqsum",
    ds: kind === "dq" || kind === "dkdvq" ? ds : undefined,
  };
  const binds = layout(kind, type, variant).map((b) => {
    const x = bound[b.name];
    if (!x) throw new Error(`attention ${kind}: missing buffer ${b.name}`);
    return { name: b.name, ...x };
  });
  const kernel = kernelFor(gpu, kind, type, t, variant);
  // the fused kernel runs one workgroup per slab of each head, looping over its key blocks
  const blocks = kind === "dkdvq" ? slabs : Math.ceil(rowsPerHead / blockRows(kind, t));
  const split = binds.filter((b) => b.perHead !== undefined);
  const whole = new Map(
    binds.filter((b) => b.perHead === undefined).map((b) => [b.name, wholeBinding(gpu, b.name, b)]),
  );
  const chunks = headChunks(
    gpu,
    split.map((b) => ({ range: b.range, perHead: b.perHead!, elementBytes: b.elementBytes })),
    s.heads,
  );
  // without a shared layout, one slice per head: head h reads slice h, a chunk's first at p.sbase = head0
  const shared = masks.bias?.shared;
  const [dims, strides] = shared ? [shared.dims, shared.strides] : [[s.heads], [1]];
  if (dims.length > 8) {
    throw new RangeError(`attention: a bias layout over ${dims.length} dimensions (at most 8)`);
  }
  const mask = masks.keyMask;
  const spre = 2 * s.lq + (mask ? s.lk : 0);
  // the fused backward's key blocks (its dQ partial sums: `slabs` [lq, headDim] slabs per head)
  const keyBlockRows = blockRows("dkdvq", t);
  const keyBlocks = Math.ceil(s.lk / keyBlockRows);
  for (const [n, c] of chunks.entries()) {
    const ranges: BufferRange[] = [];
    const offsets: number[] = [];
    for (const b of binds) {
      const w = whole.get(b.name);
      const i = w ? -1 : split.indexOf(b);
      ranges.push(w ? w.range : c.ranges[i]);
      offsets.push(w ? w.offset : c.offsets[i]);
    }
    const params = new Params().u32(s.lq).u32(s.lk).u32(c.heads).u32(blocks)
      .f32(s.scale).f32(s.scale * Math.LOG2E).u32(s.causal ? 1 : 0).u32(c.head0)
      .u32(dims.length).u32(shared ? 0 : c.head0).u32(shared?.slices ?? 0).u32(n > 0 ? 1 : 0)
      .u32(mask ? Math.max(1, mask.headsPerRow) : 1).u32(mask && mask.rows > 1 ? s.lk : 0)
      .u32(mask?.type === "f32" ? 0x7fffffff : 0xffffffff).u32(0xff800000)
      .u32(spre).u32(keyBlocks).u32(keyBlockRows).u32(slabs)
      .u32s(dims, 8).u32s(strides, 8)
      .u32s(offsets, 12);
    // dBias: every chunk covers all bias elements (adding to the previous chunks' sums)
    gpu.dispatch(kernel, ranges, params, kind === "dbias" ? blocks : c.heads * blocks);
  }
}

function checkShape(s: AttentionShape): void {
  for (const [name, value] of Object.entries({ heads: s.heads, lq: s.lq, lk: s.lk, headDim: s.headDim })) {
    if (!Number.isInteger(value) || value < 0) throw new RangeError(`attention: bad ${name} ${value}`);
  }
  if (s.lq > 0 && s.lk === 0) throw new RangeError("attention: queries need at least one key");
}

/** The bias and key-mask bindings of a call. */
function maskBindings(s: AttentionShape, masks: AttentionMasks): Record<string, Bound> {
  const out: Record<string, Bound> = {};
  const { bias, keyMask } = masks;
  if (bias) {
    out.bias = {
      range: bias.range,
      perHead: bias.shared ? undefined : s.lq * s.lk,
      elementBytes: bias.type === "f16" ? 2 : 4,
    };
  }
  if (keyMask) out.mask = { range: keyMask.range, elementBytes: 4 };
  return out;
}

/**
 * Records the forward pass: `out` [heads, lq, headDim] and `lse` [heads, lq] (f32, natural log of
 * Σ_j exp(scale·q·k_j + bias_ij) over the keys not masked; −∞ for a query without any, whose output is 0).
 */
export function runAttentionForward(
  gpu: Gpu,
  type: AttentionType,
  q: BufferRange,
  k: BufferRange,
  v: BufferRange,
  out: BufferRange,
  lse: BufferRange,
  s: AttentionShape,
  options: AttentionKernelOptions = {},
  masks: AttentionMasks = {},
): void {
  checkShape(s);
  if (s.heads * s.lq === 0) return;
  const t = attentionTiling(gpu, s.headDim, options);
  const bytes = type === "f16" ? 2 : 4;
  const qd = s.lq * s.headDim;
  const kd = s.lk * s.headDim;
  dispatchChunks(gpu, "forward", type, s, t, masks, undefined, {
    q: { range: q, perHead: qd, elementBytes: bytes },
    k: { range: k, perHead: kd, elementBytes: bytes },
    vv: { range: v, perHead: kd, elementBytes: bytes },
    out: { range: out, perHead: qd, elementBytes: bytes },
    lse: { range: lse, perHead: s.lq, elementBytes: 4 },
    ...maskBindings(s, masks),
  }, s.lq);
}

/** Elements of the backward's f32 scratch: per head lse (log2 units) and D per query, key flags per key. */
export function attentionStatsSize(s: AttentionShape, keyMask: boolean): number {
  return s.heads * (2 * s.lq + (keyMask ? s.lk : 0));
}

/** Buffers of the backward pass. */
export interface AttentionBackwardBuffers {
  /** Forward input [heads, lq, headDim]. */
  q: BufferRange;
  /** Forward input [heads, lk, headDim]. */
  k: BufferRange;
  /** Forward input [heads, lk, headDim]. */
  v: BufferRange;
  /** Forward output [heads, lq, headDim]. */
  out: BufferRange;
  /** Gradient of the output [heads, lq, headDim]. */
  gradOut: BufferRange;
  /** Forward log-sum-exp [heads, lq], f32. */
  lse: BufferRange;
  /**
   * Scratch, f32, {@link attentionStatsSize} elements: per head lse·log2(e) and D = rowsum(dO·O) per query,
   * then the key mask's flags, written by the first dispatch.
   */
  stats: BufferRange;
  /** Output: gradient of q. */
  dq: BufferRange;
  /** Output: gradient of k. */
  dk: BufferRange;
  /** Output: gradient of v. */
  dv: BufferRange;
  /**
   * Output, when the bias's gradient is wanted: dS = P∘(dP − D) summed over the heads reading each bias
   * slice, shaped like the bias. Without a shared layout ([heads, lq, lk]) it is written directly, in
   * `type`; a shared bias's is f32 and needs `dsScratch`.
   */
  dbias?: { range: BufferRange; type: AttentionType };
  /** Scratch, f32 [heads, lq, lk]: dS per head, for the dBias of a shared bias. */
  dsScratch?: BufferRange;
  /**
   * Scratch, f32, {@link attentionBackwardPlan}'s `dqPartials` elements: the fused backward's dQ partial
   * sums per block of key rows. Without it the backward runs the separate dQ kernel (7 passes).
   */
  dqPartials?: BufferRange;
}

/** How {@link runAttentionBackward} will run: fused or not, and the scratch the fused one needs. */
export interface AttentionBackwardPlan {
  /** dK, dV and dQ from one kernel that computes q·k and dO·v once (5 Lq·Lk·Dh passes, not 7). */
  fused: boolean;
  /** dQ slabs per head (workgroups per head of the fused kernel); 0 unfused. */
  slabs: number;
  /** f32 elements of {@link AttentionBackwardBuffers.dqPartials} (heads·slabs·Lq·Dh; 0 unfused). */
  dqPartials: number;
}

/** Defaults of the fused backward's slab count (see {@link attentionBackwardPlan}). */
export const ATTENTION_TUNING = {
  /** Workgroups of the fused kernel to aim for over all heads (a GPU's SMs, a few times over). */
  targetWorkgroups: 512,
  /**
   * Most bytes of dQ slabs (1 GiB: at Primus-M 160³, batch 2, 24 heads of 8000 tokens, it holds 19 slabs
   * of the target's 22).
   */
  dqScratchBytes: 1 << 30,
};

/**
 * Decides how the backward runs. Fused (5 passes) unless `fusedBackward: false` or the device cannot:
 * the tiling must leave room for the staged dS in workgroup memory, the kernel's bindings (8, +1 with a
 * bias, +1 with dBias) must fit the device's storage buffers per stage, and one head's slabs one binding.
 *
 * Slabs: the fused kernel runs `slabs` workgroups per head, workgroup g taking key blocks g, g + slabs,
 * ... and accumulating their dQ contributions in its own [Lq, Dh] f32 slab, so the scratch is
 * heads·slabs·Lq·Dh f32, bounded independently of Lk. slabs = the key blocks (⌈Lk/keyRows⌉), at most
 * ⌈targetWorkgroups/heads⌉ (enough parallelism), at most what `dqScratchBytes` and one binding allow; below
 * one slab the backward runs unfused. With an autotuner attached the slab count (or the 7-pass backward)
 * is chosen by measurement per adapter and shape class.
 */
export function attentionBackwardPlan(
  gpu: Gpu,
  s: AttentionShape,
  options: AttentionKernelOptions = {},
  masks: AttentionMasks = {},
  dbias = false,
  type: AttentionType = "f32",
): AttentionBackwardPlan {
  const unfused = { fused: false, slabs: 0, dqPartials: 0 };
  if (options.fusedBackward === false || s.heads === 0 || s.lq === 0 || s.lk === 0) return unfused;
  const t = attentionTiling(gpu, s.headDim, options);
  const keyRows = blockRows("dkdvq", t);
  if (t.fusedTile < 1 || keyRows % t.fusedTile !== 0) return unfused;
  const bindings = 8 + (masks.bias ? 1 : 0) + (dbias ? 1 : 0);
  if (bindings > gpu.limits.maxStorageBuffersPerShaderStage) return unfused;
  const slabBytes = s.lq * s.headDim * 4;
  const maxSlabs = Math.min(
    Math.ceil(s.lk / keyRows),
    Math.floor(options.dqSlabs ?? Math.ceil(ATTENTION_TUNING.targetWorkgroups / s.heads)),
    Math.floor((options.dqScratchBytes ?? ATTENTION_TUNING.dqScratchBytes) / (s.heads * slabBytes)),
    // one head's slabs are one item of the head chunks: within the planner's span limit, not the bare
    // binding limit (a head exactly a binding large has no room for the window's alignment slack)
    Math.floor(spanLimitBytes(gpu.limits, 4) / slabBytes),
  );
  if (maxSlabs < 1) return unfused;
  const plan = (slabs: number) => ({
    fused: slabs > 0,
    slabs,
    dqPartials: s.heads * slabs * s.lq * s.headDim,
  });
  const tuner = autotunerOf(gpu);
  if (!tuner || options.dqSlabs !== undefined) return plan(maxSlabs);
  // measured: the default slab count, a quarter of it (less scratch, fewer workgroups) or the 7-pass
  // backward; keyed by role, not count, so that a choice holds for every shape of its (bucketed) class
  const quarter = Math.max(1, Math.floor(maxSlabs / 4));
  const candidates: [string, number][] = [["slabs", maxSlabs], ["quarter-slabs", quarter], ["7-pass", 0]];
  const [, slabs] = tuner.choose({
    op: "attention_bwd",
    shapeClass: `${type}:dh${s.headDim}:h${bucket(s.heads)}:q${bucket(s.lq)}:k${bucket(s.lk)}:c${+s.causal}` +
      `:b${masks.bias ? (masks.bias.shared ? "s" : "h") : 0}:m${+!!masks.keyMask}:g${+dbias}`,
    candidates: quarter === maxSlabs ? [candidates[0], candidates[2]] : candidates,
    keyOf: ([key]) => key,
    probe: () => backwardProbe(gpu, type, s, options, masks, dbias, maxSlabs),
  });
  return plan(slabs);
}

/** Replays a backward of shape `s` on scratch buffers, for the autotuner (values do not matter). */
function backwardProbe(
  gpu: Gpu,
  type: AttentionType,
  s: AttentionShape,
  options: AttentionKernelOptions,
  masks: AttentionMasks,
  dbias: boolean,
  maxSlabs: number,
): TuneProbe {
  const eb = type === "f16" ? 2 : 4;
  const bytes = (n: number, b = eb) => align4(Math.max(4, n * b));
  const qd = s.heads * s.lq * s.headDim;
  const kd = s.heads * s.lk * s.headDim;
  const bias = masks.bias;
  const taken: BufferRange[] = [];
  const take = (size: number): BufferRange => {
    const r = { buffer: gpu.pool.acquire(Math.max(16, size)), size };
    taken.push(r);
    return r;
  };
  const dbiasBytes = bias &&
    (bias.shared ? bytes(bias.range.size / (bias.type === "f16" ? 2 : 4), 4) : bias.range.size);
  const buffers: AttentionBackwardBuffers = {
    q: take(bytes(qd)),
    k: take(bytes(kd)),
    v: take(bytes(kd)),
    out: take(bytes(qd)),
    gradOut: take(bytes(qd)),
    lse: take(bytes(s.heads * s.lq, 4)),
    stats: take(bytes(attentionStatsSize(s, masks.keyMask !== undefined), 4)),
    dq: take(bytes(qd)),
    dk: take(bytes(kd)),
    dv: take(bytes(kd)),
    dbias: dbias && bias ? { range: take(dbiasBytes!), type: bias.shared ? "f32" : bias.type } : undefined,
    dsScratch: dbias && bias?.shared ? take(bytes(s.heads * s.lq * s.lk, 4)) : undefined,
    dqPartials: take(bytes(s.heads * maxSlabs * s.lq * s.headDim, 4)),
  };
  const probeMasks: AttentionMasks = {
    bias: bias && { ...bias, range: take(bias.range.size) },
    keyMask: masks.keyMask && { ...masks.keyMask, range: take(masks.keyMask.range.size) },
  };
  return {
    record: () => runAttentionBackward(gpu, type, buffers, s, options, probeMasks),
    dispose: () => taken.forEach((r) => gpu.pool.release(r.buffer)),
  };
}

/** Hears of every attention backward recorded on a device: its shape and plan (memory accounting). */
export type AttentionBackwardWatcher = (s: AttentionShape, plan: AttentionBackwardPlan) => void;

const watchers = new WeakMap<Gpu, Set<AttentionBackwardWatcher>>();

/**
 * Calls `watcher` with the shape and plan of every backward recorded on `gpu` until the returned function
 * is called (the memory model reads the fused backward's scratch this way).
 */
export function watchAttentionBackward(gpu: Gpu, watcher: AttentionBackwardWatcher): () => void {
  const set = watchers.get(gpu) ?? new Set();
  watchers.set(gpu, set);
  set.add(watcher);
  return () => set.delete(watcher);
}

/**
 * Records the backward pass: lse and D per query, dQ (and dS), dK and dV, and for a shared bias's
 * gradient the sum of dS over the heads of each slice.
 */
export function runAttentionBackward(
  gpu: Gpu,
  type: AttentionType,
  b: AttentionBackwardBuffers,
  s: AttentionShape,
  options: AttentionKernelOptions = {},
  masks: AttentionMasks = {},
): void {
  checkShape(s);
  if (s.heads === 0 || s.lq === 0 && s.lk === 0) return;
  const t = attentionTiling(gpu, s.headDim, options);
  const bytes = type === "f16" ? 2 : 4;
  const qd = s.lq * s.headDim;
  const kd = s.lk * s.headDim;
  const spre = 2 * s.lq + (masks.keyMask ? s.lk : 0);
  const bound: Record<string, Bound> = {
    q: { range: b.q, perHead: qd, elementBytes: bytes },
    k: { range: b.k, perHead: kd, elementBytes: bytes },
    vv: { range: b.v, perHead: kd, elementBytes: bytes },
    o: { range: b.out, perHead: qd, elementBytes: bytes },
    g: { range: b.gradOut, perHead: qd, elementBytes: bytes },
    lse: { range: b.lse, perHead: s.lq, elementBytes: 4 },
    stats: { range: b.stats, perHead: spre, elementBytes: 4 },
    dq: { range: b.dq, perHead: qd, elementBytes: bytes },
    dk: { range: b.dk, perHead: kd, elementBytes: bytes },
    dv: { range: b.dv, perHead: kd, elementBytes: bytes },
    ...maskBindings(s, masks),
  };
  const shared = masks.bias?.shared;
  if (b.dbias && !masks.bias) throw new Error("attention: dbias without a bias");
  if (b.dbias && shared && (!b.dsScratch || b.dbias.type !== "f32")) {
    throw new Error("attention: the dBias of a shared bias is f32 and needs the dS scratch");
  }
  // dS per head: into dBias itself (one slice per head), or into the scratch summed by the dBias kernel
  const ds = b.dbias && (shared ? { range: b.dsScratch!, type: "f32" as const } : b.dbias);
  if (ds) bound.ds = { range: ds.range, perHead: s.lq * s.lk, elementBytes: ds.type === "f16" ? 2 : 4 };
  if (b.dbias && shared) bound.dbias = { range: b.dbias.range, elementBytes: 4 };
  if (spre > 0) dispatchChunks(gpu, "stats", type, s, t, masks, undefined, bound, spre - s.lq);
  const plan = attentionBackwardPlan(gpu, s, options, masks, b.dbias !== undefined, type);
  for (const watch of watchers.get(gpu) ?? []) watch(s, plan);
  if (plan.fused && b.dqPartials) {
    if (b.dqPartials.size < plan.dqPartials * 4) {
      throw new RangeError(
        `attention: dqPartials holds ${b.dqPartials.size} bytes, ${plan.dqPartials * 4} needed`,
      );
    }
    bound.dqp = { range: b.dqPartials, perHead: plan.dqPartials / s.heads, elementBytes: 4 };
    dispatchChunks(gpu, "dkdvq", type, s, t, masks, ds?.type, bound, s.lk, plan.slabs);
    dispatchChunks(gpu, "dqsum", type, s, t, masks, undefined, bound, s.lq * s.headDim, plan.slabs);
  } else {
    if (s.lq > 0) dispatchChunks(gpu, "dq", type, s, t, masks, ds?.type, bound, s.lq);
    if (s.lk > 0) dispatchChunks(gpu, "dkdv", type, s, t, masks, undefined, bound, s.lk);
  }
  if (ds && shared) {
    dispatchChunks(gpu, "dbias", type, s, t, masks, undefined, bound, shared.slices * s.lq * s.lk);
  }
}

/**
 * FLOPs of attention by the algorithm's count (2 per multiply-add): forward 2 matmuls
 * (4·heads·Lq·Lk·Dh), backward 5 (10·heads·Lq·Lk·Dh); causal counts the unmasked pairs only.
 */
export function attentionFlops(s: AttentionShape, pass: "forward" | "backward"): number {
  let pairs = s.lq * s.lk;
  if (s.causal) {
    const n = Math.min(s.lq, s.lk);
    pairs = n * (n + 1) / 2 + Math.max(0, s.lq - s.lk) * s.lk;
  }
  return (pass === "forward" ? 4 : 10) * s.heads * pairs * s.headDim;
}
