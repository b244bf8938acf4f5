/**
 * Shared machinery of the 3D convolution kernels (conv3d_forward.ts, conv3d_backward_data.ts,
 * conv3d_backward_weight.ts): each is an implicit GEMM C[M, N] = Σ_k A[M, K] · B[K, N] whose operands
 * are gathered from NCDHW tensors on the fly (no im2col buffer).
 *
 * Tiling (register-tiled GEMM): a workgroup computes a BM × BN tile of C; each invocation owns a TM × TN
 * register block held in TM·TN/4 vec4 accumulators (named c0, c1, ... so they stay in registers). K
 * advances in slices of BK: the workgroup stages a BK × BM slice of A and a BK × BN slice of B in
 * workgroup memory as vec4<f32> (As[k][m/4], Bs[k][n/4]), then every invocation does BK rank-1 updates,
 * reading TM/4 + TN/4 vec4 per TM·TN FMAs.
 *
 * Tile choice ({@link chooseTile}, from the device's limits): register blocks of 8×8 (8×4 when a side
 * has only 16), which give 64 FMAs per 4 vec4 workgroup-memory reads. The smaller GEMM side (usually
 * channels) gets a tile of 16, 32, 64 or 128 (the smallest that covers it, or 64 when 128 would pad
 * much more: 320 channels are 5 × 64), the larger side 128 (less when the problem is smaller), so a
 * workgroup has 64 to 256 invocations. BK is 16, halved while (BM + BN + 8)·BK·4 bytes exceed
 * maxComputeWorkgroupStorageSize (WebGPU guarantees 16 KiB, so 128 × 128 tiles use BK = 8 there); the
 * large tile is halved while the invocations exceed maxComputeInvocationsPerWorkgroup. These tiles were
 * chosen by reasoning about GPUs and checked on lavapipe only (where 8×8 blocks ran about 2× faster
 * than 4×4); they are the default. With an autotuner attached to the device (kernels/autotune.ts; the
 * pretrain command on GPUs) each dispatch's tile and split-K target are the fastest measured among
 * {@link convCandidates}: the reasoned choice and its neighbours within the device's limits
 * ({@link tunedConv}). The "fast" axis is the one contiguous in the output tensor
 * (M for activations, N for weight gradients): invocations adjacent in index own adjacent vec4 of it,
 * so stores coalesce.
 *
 * Split-K ({@link chooseSplits}): when the tiles alone would leave a large GPU idle (few outputs, long
 * reduction: the weight gradient of a batch of 2, deep layers with 5³ outputs), the K range is split over
 * grid z; each split writes its partial tile to a scratch buffer and a second kernel sums the splits
 * into the real output (adding bias or accumulating where asked).
 *
 * Big tensors (the launch planner, launch_plan.ts, which owns the binding limits): when a tensor exceeds
 * maxStorageBufferBindingSize, the launchers shrink the chunk sizes over batch, channels and depth
 * ({@link ChunkDim}; `planShrink` with one span rule per tensor); each dispatch binds only the planner's
 * window over what its chunk touches (`windowOf`: offset rounded down to minStorageBufferOffsetAlignment,
 * end rounded up to 16 bytes) and the kernel subtracts the window's first element index (`first`, the
 * `*_base` params) from global indices. Tensor ranges must start on the offset alignment
 * ({@link checkAlignedRanges}), so `first` is a multiple of 4 and the vec4 views stay aligned. Reductions
 * split this way (input channels of the forward pass) run as successive dispatches that accumulate into
 * the output.
 *
 * Storage types ({@link ConvType}): every launcher takes f32 or f16 tensors (all operands of one call
 * share the type; f16 needs the device's shader-f16). f16 values are widened to f32 as they are staged in
 * workgroup memory, so the GEMM arithmetic and its accumulators are f32 whatever the storage; split-K
 * partials are always f32; the result is rounded to the output type once, when it is stored. Binding
 * limits are in bytes: chunk rules carry the element size of their tensor, so f16 tensors get chunks of
 * twice as many elements. A reduction that the chunking splits over several dispatches (input channels
 * of the forward pass, output channels of the input gradient, batch and depth of the weight gradient)
 * would round its running sum to f16 after every dispatch; for f16 outputs it accumulates instead into
 * an f32 buffer mirroring the chunk's window ({@link accumulatorWindow}), converted to f16 once at the
 * end ({@link runBoxToF16}).
 */
import { type BufferRange, type Gpu, type GpuLimits, Params } from "../core/gpu/mod.ts";
import { autotunerOf, bucket, type TuneProbe } from "./autotune.ts";
import type { ElementWindow } from "./launch_plan.ts";
import { ELEMENTWISE_WORKGROUP, LINEAR_INDEX } from "./wgsl.ts";

/** Storage type of convolution tensors. */
export type ConvType = "f32" | "f16";

/** Bytes per element of a {@link ConvType} (and of the f32 accumulators). */
export const CONV_BYTES: Record<ConvType, number> = { f32: 4, f16: 2 };

/** Throws a clear error when `type` is f16 and the device lacks shader-f16. */
export function checkConvType(gpu: Gpu, op: string, type: ConvType): void {
  if (type !== "f32" && type !== "f16") {
    throw new TypeError(`${op}: storage type must be f32 or f16, got ${type}`);
  }
  if (type === "f16" && !gpu.hasF16) {
    throw new TypeError(`${op}: f16 tensors need the device's shader-f16 feature, which this device lacks`);
  }
}

/**
 * WGSL: `expr` (a value of storage type `type`, scalar or vec4) widened to f32. The identity for f32, so
 * the f32 kernels' code is what it was before f16 storage existed.
 */
export function widen(type: ConvType, expr: string, vec: boolean): string {
  if (type === "f32") return expr;
  return vec ? `vec4<f32>(${expr})` : `f32(${expr})`;
}

/** WGSL: the f32 value `expr` (scalar or vec4) converted to storage type `type` for a store. */
export function narrow(type: ConvType, expr: string, vec: boolean): string {
  if (type === "f32") return expr;
  return vec ? `vec4<${type}>(${expr})` : `${type}(${expr})`;
}

/** WGSL array element type: `type` or `vec4<type>`. */
export function elem(type: ConvType, vec: boolean): string {
  return vec ? `vec4<${type}>` : type;
}

/** Names of the output side of a GEMM kernel, for {@link gemmEmit}. */
export interface EmitTarget {
  /** The output buffer (`y`, `dx`). */
  buffer: string;
  /** The WGSL function mapping (m, n) to an element index of the output. */
  index: string;
  /** Rows of the current pass (`p.m`, `cur.m`). */
  rows: string;
  /** Element index of (m = 0, n) in the f32 split-K partial buffer. */
  splitBase: string;
}

/**
 * The `emit(m, n, v)` function of a GEMM kernel: writes four rows of column n, adding the bias and, when
 * `p.accumulate` is set, what the output already holds; split-K passes write raw f32 partials instead.
 * Shared by the forward and input-gradient kernels, which differ only in the names of `t`.
 */
export function gemmEmit(t: EmitTarget, v: { split: boolean; yVec: boolean; out: ConvType }): string {
  if (v.split) {
    return /* wgsl */ `
fn emit(m: u32, n: u32, v: vec4<f32>) {
  if (n >= p.n) { return; }
  let base = ${t.splitBase};
  for (var c = 0u; c < 4u; c++) {
    if (m + c < ${t.rows}) { ${t.buffer}[base + m + c] = v[c]; }
  }
}`;
  }
  if (v.yVec) {
    return /* wgsl */ `
fn emit(m: u32, n: u32, v: vec4<f32>) {
  if (n >= p.n || m >= ${t.rows}) { return; }
  let i = ${t.index}(m, n) / 4u;
  var r = v + vec4<f32>(bias_of(n));
  if (p.accumulate != 0u) { r += ${widen(v.out, `${t.buffer}[i]`, true)}; }
  ${t.buffer}[i] = ${narrow(v.out, "r", true)};
}`;
  }
  return /* wgsl */ `
fn emit(m: u32, n: u32, v: vec4<f32>) {
  if (n >= p.n) { return; }
  let b = bias_of(n);
  for (var c = 0u; c < 4u; c++) {
    if (m + c < ${t.rows}) {
      let i = ${t.index}(m + c, n);
      var r = v[c] + b;
      if (p.accumulate != 0u) { r += ${widen(v.out, `${t.buffer}[i]`, false)}; }
      ${t.buffer}[i] = ${narrow(v.out, "r", false)};
    }
  }
}`;
}

/** `enable f16;` when any of `types` is f16 (WGSL needs it before any f16 use). */
export function enableF16(...types: ConvType[]): string {
  return types.includes("f16") ? "enable f16;\n" : "";
}

/** Kernel-key and label suffix of the storage types: "" for f32 (the f32 keys are unchanged). */
export function typeKey(input: ConvType, output: ConvType): string {
  return input === "f32" && output === "f32" ? "" : `:${input}>${output}`;
}

/** One GEMM tiling. */
export interface GemmTile {
  bm: number;
  bn: number;
  bk: number;
  /** Register block per invocation: TM rows × TN columns. */
  tm: number;
  tn: number;
  threads: number;
  /** The output axis contiguous in memory. */
  fast: "m" | "n";
}

/** Tunables of the convolution launchers (exported for benchmarks and for tests that force a path). */
export const CONV_TUNING = {
  /** Workgroups a dispatch should have before split-K stops adding splits. */
  targetWorkgroups: 512,
  /** Smallest K range one split handles. */
  minKPerSplit: 256,
};

/**
 * The sizes that define a tile before it is oriented and checked: the tile along the smaller GEMM side
 * (`small`) and the larger (`big`), and the register block along the smaller side (`tSmall`; 8 along
 * the larger). `bk` caps the K slice (halved further while workgroup memory does not fit).
 */
export interface TileShape {
  small: number;
  big: number;
  tSmall: number;
  bk?: number;
}

/**
 * The tile of `shape` for an M × N output, or undefined when it breaks the device's limits (too many
 * invocations, workgroup memory, fewer invocations than K slice entries, a block that does not divide).
 */
export function tileOf(
  limits: GpuLimits,
  mSize: number,
  nSize: number,
  fast: "m" | "n",
  shape: TileShape,
): GemmTile | undefined {
  const { small, big, tSmall } = shape;
  const tBig = 8;
  if (small % tSmall !== 0 || big % tBig !== 0 || small < 16 || big < 32) return undefined;
  const threads = (big / tBig) * (small / tSmall);
  const tile = mSize <= nSize
    ? { bm: small, tm: tSmall, bn: big, tn: tBig }
    : { bm: big, tm: tBig, bn: small, tn: tSmall };
  let bk = shape.bk ?? 16;
  while ((tile.bm + tile.bn + 8) * bk * 4 > limits.maxComputeWorkgroupStorageSize && bk > 4) bk /= 2;
  if (
    threads > limits.maxComputeInvocationsPerWorkgroup || threads < bk ||
    (tile.bm + tile.bn + 8) * bk * 4 > limits.maxComputeWorkgroupStorageSize
  ) {
    return undefined;
  }
  return { ...tile, bk, threads, fast };
}

/** The reasoned {@link TileShape} for an M × N output (see the header comment). */
export function defaultTileShape(limits: GpuLimits, mSize: number, nSize: number): TileShape {
  const small = Math.min(mSize, nSize);
  const big = Math.max(mSize, nSize);
  const padded = (tile: number) => Math.ceil(small / tile) * tile;
  const smallTile = small <= 16
    ? 16
    : small <= 32
    ? 32
    : small <= 64 || padded(128) > 1.1 * padded(64)
    ? 64
    : 128;
  const tSmall = smallTile === 16 ? 4 : 8;
  let bigTile = 128;
  while (bigTile > 32 && bigTile / 2 >= big) bigTile /= 2;
  while ((bigTile / 8) * (smallTile / tSmall) > limits.maxComputeInvocationsPerWorkgroup && bigTile > 32) {
    bigTile /= 2;
  }
  return { small: smallTile, big: bigTile, tSmall };
}

/** Picks the tile for an M × N output from the device's limits (see the header comment). */
export function chooseTile(limits: GpuLimits, mSize: number, nSize: number, fast: "m" | "n"): GemmTile {
  const shape = defaultTileShape(limits, mSize, nSize);
  const tile = tileOf(limits, mSize, nSize, fast, shape);
  if (!tile) {
    const threads = (shape.big / 8) * (shape.small / shape.tSmall);
    throw new Error(`conv3d: no GEMM tile fits this device's limits (${threads} invocations)`);
  }
  return tile;
}

/** One tuning candidate of a convolution dispatch: its tile and the split-K target it plans with. */
export interface ConvChoice {
  tile: GemmTile;
  /** Workgroups split-K aims for ({@link chooseSplits}); 0 turns split-K off. */
  splitTarget: number;
}

/** Cache key of a {@link ConvChoice}, e.g. "128x32x16/8x8m|s512". */
export function convChoiceKey(c: ConvChoice): string {
  return `${tileKey(c.tile)}|s${c.splitTarget}`;
}

/**
 * The candidates the autotuner times for one convolution dispatch of an M × N output with reduction
 * length `k`: first the reasoned choice ({@link chooseTile}, {@link CONV_TUNING}), then its neighbours
 * (each tile side halved, a 4-wide register block on the small side, K slices of 8), all
 * within the device's limits, and, where split-K can engage, the reasoned tile without split-K and with
 * four times the workgroup target.
 */
export function convCandidates(
  limits: GpuLimits,
  mSize: number,
  nSize: number,
  kSize: number,
  fast: "m" | "n",
): ConvChoice[] {
  const target = CONV_TUNING.targetWorkgroups;
  const base = defaultTileShape(limits, mSize, nSize);
  const first: ConvChoice = { tile: chooseTile(limits, mSize, nSize, fast), splitTarget: target };
  const out = [first];
  const seen = new Set([convChoiceKey(first)]);
  const add = (c: ConvChoice) => {
    const key = convChoiceKey(c);
    if (!seen.has(key)) {
      seen.add(key);
      out.push(c);
    }
  };
  // larger tiles than the reasoned ones would only pad more (it takes the smallest that covers)
  const shapes: TileShape[] = [
    { ...base, small: base.small / 2, tSmall: base.small / 2 === 16 ? 4 : base.tSmall },
    { ...base, big: base.big / 2 },
    { ...base, tSmall: 4 },
    { ...base, bk: 8 },
  ];
  for (const shape of shapes) {
    const tile = tileOf(limits, mSize, nSize, fast, shape);
    if (tile) add({ tile, splitTarget: target });
  }
  if (kSize >= 2 * CONV_TUNING.minKPerSplit) {
    add({ tile: first.tile, splitTarget: 0 });
    add({ tile: first.tile, splitTarget: 4 * target });
  }
  return out;
}

/**
 * How a loader that keeps one tile row (or vec4 quad) per invocation covers `units` rows × `kUnits` K
 * entries of a tile: each invocation owns `rows` rows (t + r·THREADS when the tile has more rows than
 * the workgroup has invocations, t % units otherwise) and visits the K entries t / units + j·kStride,
 * j < kIters (callers guard kl < kUnits).
 */
export interface RowCover {
  units: number;
  rows: number;
  kStride: number;
  kIters: number;
}

/** The {@link RowCover} of a `units` × `kUnits` tile for tile `t`. */
export function rowCover(t: GemmTile, units: number, kUnits: number): RowCover {
  if (units % t.threads !== 0 && t.threads % units !== 0) {
    throw new Error(`conv3d: ${units} tile rows do not divide among ${t.threads} invocations`);
  }
  const rows = Math.max(1, units / t.threads);
  const kStride = Math.max(1, t.threads / units);
  return { units, rows, kStride, kIters: Math.ceil(kUnits / kStride) };
}

/** WGSL expression of the local row (or quad) index of row `r` of a {@link RowCover}. */
export function coverRow(c: RowCover, r: number): string {
  return c.rows > 1 ? `(t + ${r}u * THREADS)` : `(t % ${c.units}u)`;
}

/** The row indices 0..rows−1 of a cover, for code generation. */
export function coverRows(c: RowCover): number[] {
  return Array.from({ length: c.rows }, (_, r) => r);
}

/** A short name of a tile for kernel keys and labels, e.g. "128x64x16/8x4m". */
export function tileKey(t: GemmTile): string {
  return `${t.bm}x${t.bn}x${t.bk}/${t.tm}x${t.tn}${t.fast}`;
}

/**
 * WGSL: workgroup arrays and tile constants. Rows of As/Bs (one K index each) are padded by one vec4
 * (row strides AS, BS) so that loaders writing along K (k-fast) hit different banks.
 */
export function gemmDecls(t: GemmTile): string {
  return /* wgsl */ `
const BM = ${t.bm}u;
const BN = ${t.bn}u;
const BK = ${t.bk}u;
const AS = ${t.bm / 4 + 1}u;
const BS = ${t.bn / 4 + 1}u;
const THREADS = ${t.threads}u;
var<workgroup> As: array<vec4<f32>, ${t.bk * (t.bm / 4 + 1)}>; // [k][m/4] of the current K slice
var<workgroup> Bs: array<vec4<f32>, ${t.bk * (t.bn / 4 + 1)}>; // [k][n/4]
`;
}

/**
 * WGSL statements of the GEMM body, placed in `main` after `tile_m`, `tile_n`, `k_begin`, `k_end` and `t`
 * (local invocation index) are defined. `load` holds the statements that fill As/Bs for the K slice
 * starting at `k0` (entries past `k_end` must be zero). Ends with calls `emit(...)` for every register
 * vec4: `emit(m, n, v)` where v holds 4 consecutive m (fast "m") or 4 consecutive n (fast "n").
 *
 * Along the fast axis an invocation's quads are interleaved with its neighbours' (quad i of invocation
 * f sits at (i·BX/T + f)·4), so adjacent invocations read adjacent vec4 of workgroup memory and store
 * adjacent vec4 of the output; along the other axis its T rows are contiguous (broadcast reads).
 */
export function gemmBody(t: GemmTile, load: string): string {
  const lines: string[] = [];
  const fastM = t.fast === "m";
  const tmi = fastM ? `t % ${t.bm / t.tm}u` : `t / ${t.bn / t.tn}u`;
  const tni = fastM ? `t / ${t.bm / t.tm}u` : `t % ${t.bn / t.tn}u`;
  lines.push(`let tmi = ${tmi};`, `let tni = ${tni};`);
  for (let i = 0; i < (t.tm * t.tn) / 4; i++) lines.push(`var c${i} = vec4<f32>(0.0);`);
  lines.push(`for (var k0 = k_begin; k0 < k_end; k0 += BK) {`, load, `workgroupBarrier();`);
  lines.push(`for (var kk = 0u; kk < BK; kk++) {`);
  const comp = "xyzw";
  // index (in vec4) of register quad i along an axis: interleaved on the fast axis, contiguous otherwise
  const aQuad = (i: number) => fastM ? `${i * (t.bm / t.tm)}u + tmi` : `tmi * ${t.tm / 4}u + ${i}u`;
  const bQuad = (j: number) => fastM ? `tni * ${t.tn / 4}u + ${j}u` : `${j * (t.bn / t.tn)}u + tni`;
  for (let i = 0; i < t.tm / 4; i++) lines.push(`let a${i} = As[kk * AS + ${aQuad(i)}];`);
  for (let j = 0; j < t.tn / 4; j++) lines.push(`let b${j} = Bs[kk * BS + ${bQuad(j)}];`);
  if (fastM) {
    // c[j·TM/4 + i] = rows of quad i, column j
    for (let j = 0; j < t.tn; j++) {
      for (let i = 0; i < t.tm / 4; i++) {
        const c = `c${j * (t.tm / 4) + i}`;
        lines.push(`${c} = fma(a${i}, vec4<f32>(b${j >> 2}.${comp[j & 3]}), ${c});`);
      }
    }
  } else {
    // c[i·TN/4 + j] = columns of quad j, row i
    for (let i = 0; i < t.tm; i++) {
      for (let j = 0; j < t.tn / 4; j++) {
        const c = `c${i * (t.tn / 4) + j}`;
        lines.push(`${c} = fma(vec4<f32>(a${i >> 2}.${comp[i & 3]}), b${j}, ${c});`);
      }
    }
  }
  lines.push(`}`, `workgroupBarrier();`, `}`);
  if (fastM) {
    for (let j = 0; j < t.tn; j++) {
      for (let i = 0; i < t.tm / 4; i++) {
        lines.push(
          `emit(tile_m + (${aQuad(i)}) * 4u, tile_n + tni * ${t.tn}u + ${j}u, c${j * (t.tm / 4) + i});`,
        );
      }
    }
  } else {
    for (let i = 0; i < t.tm; i++) {
      for (let j = 0; j < t.tn / 4; j++) {
        lines.push(
          `emit(tile_m + tmi * ${t.tm}u + ${i}u, tile_n + (${bQuad(j)}) * 4u, c${i * (t.tn / 4) + j});`,
        );
      }
    }
  }
  return lines.map((l) => `  ${l}`).join("\n");
}

/**
 * WGSL preamble of `main`: the tile of this workgroup from a linear index over x/y (rows of tiles share
 * an A tile: consecutive workgroups walk N first), with early exit past `p.tiles`.
 */
export const TILE_PROLOGUE = /* wgsl */ `
  let lin = wid.x + wid.y * nwg.x;
  if (lin >= p.tiles) { return; }
  let tile_n = (lin % p.tiles_n) * BN;
  let tile_m = (lin / p.tiles_n) * BM;
`;

/** Grid [x, y, z] for `tiles` workgroups (linear over x/y) and `z` slices. */
export function tileGrid(gpu: Gpu, tiles: number, z: number): [number, number, number] {
  const max = gpu.limits.maxComputeWorkgroupsPerDimension;
  if (z > max) throw new RangeError(`conv3d: ${z} grid slices exceed ${max}`);
  const x = Math.min(tiles, max);
  const y = Math.ceil(tiles / x);
  if (y > max) throw new RangeError(`conv3d: ${tiles} tiles exceed the dispatch limit`);
  return [x, y, z];
}

/** Split-K decision for one dispatch. */
export interface SplitPlan {
  splits: number;
  /** K range of one split (a multiple of BK). */
  kSplit: number;
}

/**
 * Chooses how many K splits a dispatch of `workgroups` workgroups (tiles × independent problems such as
 * stride phases) gets: enough to reach `target` workgroups ({@link CONV_TUNING}.targetWorkgroups unless
 * the autotuner chose another; 0 never splits), each split at least
 * minKPerSplit long, with the scratch of `partialPerSplit` floats per split within `maxScratchElems` and
 * at most `maxZ` splits (grid z).
 */
export function chooseSplits(
  workgroups: number,
  k: number,
  bk: number,
  partialPerSplit: number,
  maxScratchElems: number,
  maxZ: number,
  target: number = CONV_TUNING.targetWorkgroups,
): SplitPlan {
  const single = { splits: 1, kSplit: Math.max(bk, Math.ceil(k / bk) * bk) };
  if (k < 2 * CONV_TUNING.minKPerSplit || workgroups >= target) return single;
  const want = Math.ceil(target / Math.max(1, workgroups));
  const byK = Math.floor(k / CONV_TUNING.minKPerSplit);
  const byMem = Math.floor(maxScratchElems / Math.max(1, partialPerSplit));
  let splits = Math.min(want, byK, byMem, maxZ);
  if (splits <= 1) return single;
  const kSplit = Math.ceil(Math.ceil(k / splits) / bk) * bk;
  splits = Math.ceil(k / kSplit);
  return splits <= 1 ? single : { splits, kSplit };
}

/**
 * An f32 accumulator standing in for elements [start, end) of an f16 output (see the header): a scratch
 * buffer whose element j holds output element `base + j`, with `base` = start rounded down to a multiple
 * of 4 (vec4 stores stay aligned). Kernels index it exactly as they index the output's window (global
 * index − base). Its size is (end − base)·4 bytes: plan the output's chunks with 4 bytes per element.
 * Release `binding.buffer` to the pool after {@link runBoxToF16}.
 */
export function accumulatorWindow(gpu: Gpu, start: number, end: number): ElementWindow<BufferRange> {
  const base = Math.floor(start / 4) * 4;
  const binding = scratch(gpu, Math.ceil((Math.max(end, start) - base) / 4) * 4);
  return { binding: { ...binding, offset: 0 }, first: base };
}

/**
 * A box of an output tensor: `outer` × `mid` runs of `inner` contiguous elements, run (o, m) starting at
 * element start + o·outerStride + m·midStride.
 */
export interface OutputBox {
  start: number;
  outer: number;
  outerStride: number;
  mid: number;
  midStride: number;
  inner: number;
}

const BOX_TO_F16 = /* wgsl */ `
enable f16;
struct P { n: u32, mid: u32, inner: u32, start: u32, outer_stride: u32, mid_stride: u32, src_base: u32, dst_base: u32 }
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f16>;
@group(1) @binding(0) var<uniform> p: P;
${LINEAR_INDEX}
@compute @workgroup_size(${ELEMENTWISE_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let e = linear_workgroup(wid, nwg) * ${ELEMENTWISE_WORKGROUP}u + lid;
  if (e >= p.n) { return; }
  let per = p.mid * p.inner;
  let r = e % per;
  let i = p.start + (e / per) * p.outer_stride + (r / p.inner) * p.mid_stride + r % p.inner;
  dst[i - p.dst_base] = f16(src[i - p.src_base]);
}`;

/** Records dst[box] = f16(src[box]): an f32 accumulator window into the f16 output window it stands for. */
export function runBoxToF16(
  gpu: Gpu,
  src: ElementWindow<BufferRange>,
  dst: ElementWindow<BufferRange>,
  box: OutputBox,
): void {
  const n = box.outer * box.mid * box.inner;
  if (n === 0) return;
  const kernel = gpu.kernel("conv3d_box_to_f16", () => ({
    name: "conv3d_accumulator_to_f16",
    code: BOX_TO_F16,
    storage: ["read", "read_write"],
    uniform: true,
  }));
  const params = new Params().u32(n).u32(box.mid).u32(box.inner).u32(box.start).u32(box.outerStride)
    .u32(box.midStride).u32(src.first).u32(dst.first);
  gpu.dispatch(kernel, [src.binding, dst.binding], params, Math.ceil(n / ELEMENTWISE_WORKGROUP));
}

/** The dimensions the launchers split (batch, output and input channels, depth), as the planner names them. */
export type ChunkDim = "n" | "co" | "ci" | "d";

/**
 * Throws unless every tensor range starts on the storage offset alignment: the launchers' windows then
 * start a multiple of 4 elements into their tensor, so the vec4 views stay aligned.
 */
export function checkAlignedRanges(
  gpu: Gpu,
  op: string,
  ranges: Record<string, BufferRange | undefined>,
): void {
  const align = gpu.limits.minStorageBufferOffsetAlignment;
  for (const [name, r] of Object.entries(ranges)) {
    if (r && (r.offset ?? 0) % align !== 0) {
      throw new RangeError(
        `${op}: ${name} starts at byte ${r.offset}, not on the ${align}-byte offset alignment`,
      );
    }
  }
}

/** Span in elements of an NCDHW window: `n` batch items, `c` channels, `d` depth rows of `hw` each. */
export function ncdhwSpan(
  channels: number,
  depth: number,
  hw: number,
  n: number,
  c: number,
  d: number,
): number {
  return (n - 1) * channels * depth * hw + (c - 1) * depth * hw + d * hw;
}

/** Ranges [start, start + chunk) covering [0, total). */
export function* ranges(total: number, chunk: number): Generator<[number, number]> {
  for (let start = 0; start < total; start += chunk) yield [start, Math.min(total, start + chunk)];
}

/**
 * Acquires a scratch buffer of `elems` elements of `bytes` bytes (f32 by default) from the pool (released
 * by the caller after recording).
 */
export function scratch(gpu: Gpu, elems: number, bytes = 4): BufferRange {
  const size = Math.max(16, Math.ceil((elems * bytes) / 4) * 4);
  return { buffer: gpu.pool.acquire(size), size };
}

/**
 * The autotuner's choice of tile and split-K target for one dispatch of `op` (kernels/autotune.ts): the
 * reasoned choice unless a tuner is attached to the device. `variant` names what else selects the kernel
 * (geometry, load paths, types); M and K are bucketed to powers of two, N (channels) is exact. `probe`
 * replays the launcher call on scratch buffers ({@link probeRanges}).
 */
export function tunedConv(
  gpu: Gpu,
  op: string,
  variant: string,
  size: { m: number; n: number; k: number; fast: "m" | "n" },
  probe: () => TuneProbe,
): ConvChoice {
  const { m, n, k, fast } = size;
  const tuner = autotunerOf(gpu);
  if (!tuner) return { tile: chooseTile(gpu.limits, m, n, fast), splitTarget: CONV_TUNING.targetWorkgroups };
  return tuner.choose({
    op,
    shapeClass: `${variant}:m${bucket(m)}:n${n}:k${bucket(k)}`,
    candidates: convCandidates(gpu.limits, m, n, k, fast),
    keyOf: convChoiceKey,
    probe,
  });
}

/**
 * Scratch buffers with the sizes of `ranges` (undefined stays undefined), and a function returning them
 * to the pool: what a probe replays a launcher call on.
 */
export function probeRanges<T extends Record<string, BufferRange | undefined>>(
  gpu: Gpu,
  ranges: T,
): { buffers: T; dispose: () => void } {
  const taken: BufferRange[] = [];
  const buffers = Object.fromEntries(
    Object.entries(ranges).map(([name, r]) => {
      if (!r) return [name, undefined];
      const fresh = { buffer: gpu.pool.acquire(Math.max(16, r.size)), size: r.size };
      taken.push(fresh);
      return [name, fresh];
    }),
  ) as T;
  return { buffers, dispose: () => taken.forEach((r) => gpu.pool.release(r.buffer)) };
}
