/**
 * Batched matrix multiply C[b] = op(A[b]) · op(B[b]), op = identity or transpose, f32 accumulation.
 *
 * Tiling: a workgroup of 16×16 invocations computes a 64×64 tile of C; each invocation owns a 4×4
 * register block (four vec4 accumulators). K advances in slices of 16: the workgroup stages a 16×64 slice
 * of A and of B in workgroup memory as vec4<f32> (2 × 4 KiB), then each invocation does 16 rank-1 updates
 * reading one vec4 of A and one of B per step (16 FMAs per two shared loads). That is the reasoned
 * tile; with an autotuner attached to the device (kernels/autotune.ts) the tile is the fastest measured
 * of {@link matmulCandidates} (BM × BN from 32 × 32 to 128 × 64, same 4×4 blocks, (BN/4) × (BM/4)
 * invocations, each loading ⌈4·BM/invocations⌉ quads of A and ⌈4·BN/invocations⌉ of B per K slice).
 * Loads: vec4 global loads along the contiguous axis when that axis is a multiple of 4 (variant "v"),
 * scalar loads otherwise; edges are zero-padded, so any M, N, K is correct. f16 storage is widened on
 * load. Grid: x = ⌈N/BN⌉, y = ⌈M/BM⌉, z = batch (chunks of 65,535). Limits: (BM + BN) KiB/4 of workgroup
 * memory (8 KiB for 64 × 64), (BM/4)·(BN/4) invocations; above `maxStorageBufferBindingSize`, windows of whole
 * batches from the launch planner (one batch's A, B and C must each fit a binding).
 */
import { type BufferRange, type Gpu, type GpuLimits, Params } from "../core/gpu/mod.ts";
import { autotunerOf, bucket } from "./autotune.ts";
import { planWindows } from "./launch_plan.ts";
import { specialize } from "./wgsl.ts";

/** Storage type of matmul operands. */
export type MatmulType = "f32" | "f16";

/** Shapes and layouts of one batched matmul. */
export interface MatmulShape {
  batch: number;
  m: number;
  n: number;
  k: number;
  /** A is stored [K, M] (row-major) instead of [M, K]. */
  transA: boolean;
  /** B is stored [N, K] instead of [K, N]. */
  transB: boolean;
  /** Elements between consecutive batches of A (0 broadcasts one matrix). */
  aBatchStride: number;
  bBatchStride: number;
}

/** One matmul tiling: a BM × BN tile of C per workgroup of (BN/4) × (BM/4) invocations (4×4 blocks). */
export interface MatmulTile {
  bm: number;
  bn: number;
}

/** K slice staged in workgroup memory per step. */
const BK = 16;

/** Cache key of a {@link MatmulTile}, e.g. "64x64". */
export function matmulTileKey(t: MatmulTile): string {
  return `${t.bm}x${t.bn}`;
}

/**
 * The tiles the autotuner times for a matmul: the reasoned 64 × 64 first, then 32 × 32, 32 × 64,
 * 64 × 32, 128 × 64 and 64 × 128, those whose invocations ((BM/4)·(BN/4)), workgroup width and
 * workgroup memory ((BM + BN)·BK·16 bytes) fit the device's limits.
 */
export function matmulCandidates(limits: GpuLimits): MatmulTile[] {
  const all: MatmulTile[] = [
    { bm: 64, bn: 64 },
    { bm: 32, bn: 32 },
    { bm: 32, bn: 64 },
    { bm: 64, bn: 32 },
    { bm: 128, bn: 64 },
    { bm: 64, bn: 128 },
  ];
  return all.filter((t) =>
    (t.bm / 4) * (t.bn / 4) <= limits.maxComputeInvocationsPerWorkgroup &&
    t.bn / 4 <= limits.maxComputeWorkgroupSizeX &&
    (t.bm + t.bn) * BK * 16 <= limits.maxComputeWorkgroupStorageSize
  );
}

// Each loader fills one operand's BK-slice from quads q = t + j·THREADS (4 consecutive elements along
// the operand's contiguous axis), j < ⌈quads / THREADS⌉.
function quadLoop(quads: number, threads: number, body: string): string {
  const iters = Math.ceil(quads / threads);
  return `for (var j = 0u; j < ${iters}u; j++) {
    let q = t + j * ${threads}u;
    if (q < ${quads}u) {${body}
    }
  }`;
}

function loadA(tile: MatmulTile, transA: boolean, vec: boolean): string {
  const threads = (tile.bm * tile.bn) / 16;
  const sa = tile.bm / 4;
  if (!transA) {
    // A[m, k]: quad q is row q/4, four consecutive k at (q%4)*4, stored transposed into As[k][m/4]
    return quadLoop(
      4 * tile.bm,
      threads,
      vec
        ? `
      let row = q / 4u; let kq = (q % 4u) * 4u; let m = tile_m + row; let k = k0 + kq;
      var v = vec4<f32>(0.0);
      if (m < p.m && k < p.k) { v = vec4<f32>(a[(a_base + m * p.k + k) / 4u]); }
      As[(kq + 0u) * ${sa}u + row / 4u][row % 4u] = v.x; As[(kq + 1u) * ${sa}u + row / 4u][row % 4u] = v.y;
      As[(kq + 2u) * ${sa}u + row / 4u][row % 4u] = v.z; As[(kq + 3u) * ${sa}u + row / 4u][row % 4u] = v.w;`
        : `
      let row = q / 4u; let kq = (q % 4u) * 4u; let m = tile_m + row;
      for (var c = 0u; c < 4u; c++) {
        let k = k0 + kq + c;
        var v = 0.0;
        if (m < p.m && k < p.k) { v = f32(a[a_base + m * p.k + k]); }
        As[(kq + c) * ${sa}u + row / 4u][row % 4u] = v;
      }`,
    );
  }
  // A stored [k, m]: quad q is k-row q/(BM/4), four consecutive m
  return quadLoop(
    4 * tile.bm,
    threads,
    vec
      ? `
      let kr = q / ${sa}u; let mq = (q % ${sa}u) * 4u; let k = k0 + kr; let m = tile_m + mq;
      var v = vec4<f32>(0.0);
      if (k < p.k && m < p.m) { v = vec4<f32>(a[(a_base + k * p.m + m) / 4u]); }
      As[kr * ${sa}u + mq / 4u] = v;`
      : `
      let kr = q / ${sa}u; let mq = (q % ${sa}u) * 4u; let k = k0 + kr;
      var v = vec4<f32>(0.0);
      for (var c = 0u; c < 4u; c++) {
        let m = tile_m + mq + c;
        if (k < p.k && m < p.m) { v[c] = f32(a[a_base + k * p.m + m]); }
      }
      As[kr * ${sa}u + mq / 4u] = v;`,
  );
}

function loadB(tile: MatmulTile, transB: boolean, vec: boolean): string {
  const threads = (tile.bm * tile.bn) / 16;
  const sb = tile.bn / 4;
  if (!transB) {
    // B[k, n]: quad q is k-row q/(BN/4), four consecutive n
    return quadLoop(
      4 * tile.bn,
      threads,
      vec
        ? `
      let kr = q / ${sb}u; let nq = (q % ${sb}u) * 4u; let k = k0 + kr; let n = tile_n + nq;
      var v = vec4<f32>(0.0);
      if (k < p.k && n < p.n) { v = vec4<f32>(b[(b_base + k * p.n + n) / 4u]); }
      Bs[kr * ${sb}u + nq / 4u] = v;`
        : `
      let kr = q / ${sb}u; let nq = (q % ${sb}u) * 4u; let k = k0 + kr;
      var v = vec4<f32>(0.0);
      for (var c = 0u; c < 4u; c++) {
        let n = tile_n + nq + c;
        if (k < p.k && n < p.n) { v[c] = f32(b[b_base + k * p.n + n]); }
      }
      Bs[kr * ${sb}u + nq / 4u] = v;`,
    );
  }
  // B stored [n, k]: quad q is n-row q/4, four consecutive k, stored transposed into Bs[k][n/4]
  return quadLoop(
    4 * tile.bn,
    threads,
    vec
      ? `
      let row = q / 4u; let kq = (q % 4u) * 4u; let n = tile_n + row; let k = k0 + kq;
      var v = vec4<f32>(0.0);
      if (n < p.n && k < p.k) { v = vec4<f32>(b[(b_base + n * p.k + k) / 4u]); }
      Bs[(kq + 0u) * ${sb}u + row / 4u][row % 4u] = v.x; Bs[(kq + 1u) * ${sb}u + row / 4u][row % 4u] = v.y;
      Bs[(kq + 2u) * ${sb}u + row / 4u][row % 4u] = v.z; Bs[(kq + 3u) * ${sb}u + row / 4u][row % 4u] = v.w;`
      : `
      let row = q / 4u; let kq = (q % 4u) * 4u; let n = tile_n + row;
      for (var c = 0u; c < 4u; c++) {
        let k = k0 + kq + c;
        var v = 0.0;
        if (n < p.n && k < p.k) { v = f32(b[b_base + n * p.k + k]); }
        Bs[(kq + c) * ${sb}u + row / 4u][row % 4u] = v;
      }`,
  );
}

function source(
  type: MatmulType,
  s: MatmulShape,
  tile: MatmulTile,
  vecA: boolean,
  vecB: boolean,
  vecC: boolean,
): string {
  const store = vecC
    ? `if (m < p.m && n < p.n) { c[(c_base + m * p.n + n) / 4u] = vec4<{{T}}>(acc[i]); }`
    : `for (var j = 0u; j < 4u; j++) {
        if (m < p.m && n + j < p.n) { c[c_base + m * p.n + n + j] = {{T}}(acc[i][j]); }
      }`;
  const sa = tile.bm / 4;
  const sb = tile.bn / 4;
  return specialize(
    /* wgsl */ `
struct P { m: u32, n: u32, k: u32, a_stride: u32, b_stride: u32, batch0: u32, a_first: u32, b_first: u32, c_first: u32 }
@group(0) @binding(0) var<storage, read> a: array<{{TA}}>;
@group(0) @binding(1) var<storage, read> b: array<{{TB}}>;
@group(0) @binding(2) var<storage, read_write> c: array<{{TC}}>;
@group(1) @binding(0) var<uniform> p: P;
var<workgroup> As: array<vec4<f32>, ${BK * sa}>; // [k][m/4] of the current ${BK}×${tile.bm} slice
var<workgroup> Bs: array<vec4<f32>, ${BK * sb}>; // [k][n/4]

@compute @workgroup_size(${sb}, ${sa})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
  let batch = p.batch0 + wid.z;
  // *_first: the element of the tensor at the start of its binding (a window above the binding limit)
  let a_base = batch * p.a_stride - p.a_first;
  let b_base = batch * p.b_stride - p.b_first;
  let c_base = batch * p.m * p.n - p.c_first;
  let tile_m = wid.y * ${tile.bm}u;
  let tile_n = wid.x * ${tile.bn}u;
  var acc = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
  for (var k0 = 0u; k0 < p.k; k0 += ${BK}u) {
    ${loadA(tile, s.transA, vecA)}
    ${loadB(tile, s.transB, vecB)}
    workgroupBarrier();
    for (var kk = 0u; kk < ${BK}u; kk++) {
      let av = As[kk * ${sa}u + lid.y];
      let bv = Bs[kk * ${sb}u + lid.x];
      acc[0] = fma(vec4<f32>(av.x), bv, acc[0]);
      acc[1] = fma(vec4<f32>(av.y), bv, acc[1]);
      acc[2] = fma(vec4<f32>(av.z), bv, acc[2]);
      acc[3] = fma(vec4<f32>(av.w), bv, acc[3]);
    }
    workgroupBarrier();
  }
  let n = tile_n + lid.x * 4u;
  for (var i = 0u; i < 4u; i++) {
    let m = tile_m + lid.y * 4u + i;
    ${store}
  }
}`,
    {
      T: type,
      TA: vecA ? `vec4<${type}>` : type,
      TB: vecB ? `vec4<${type}>` : type,
      TC: vecC ? `vec4<${type}>` : type,
    },
  );
}

const REASONED: MatmulTile = { bm: 64, bn: 64 };

/** Records C = op(A)·op(B) for every batch. `c` holds batch·M·N elements of `type`. */
export function runMatmul(
  gpu: Gpu,
  type: MatmulType,
  a: BufferRange,
  b: BufferRange,
  c: BufferRange,
  s: MatmulShape,
): void {
  if (s.batch * s.m * s.n === 0) return;
  // vec4 loads need the contiguous axis (and so every row and batch start) to be a multiple of 4
  const vecA = (s.transA ? s.m : s.k) % 4 === 0;
  const vecB = (s.transB ? s.k : s.n) % 4 === 0;
  const vecC = s.n % 4 === 0;
  const flags = `${+s.transA}${+s.transB}:${+vecA}${+vecB}${+vecC}`;
  const tuner = autotunerOf(gpu);
  const tile = !tuner ? REASONED : tuner.choose({
    op: "matmul",
    shapeClass: `${type}:${flags}:b${bucket(s.batch)}:m${bucket(s.m)}:n${bucket(s.n)}:k${bucket(s.k)}`,
    candidates: matmulCandidates(gpu.limits),
    keyOf: matmulTileKey,
    probe: () => {
      const taken = [a, b, c].map((r) => ({ buffer: gpu.pool.acquire(Math.max(16, r.size)), size: r.size }));
      return {
        record: () => runMatmul(gpu, type, taken[0], taken[1], taken[2], s),
        dispose: () => taken.forEach((r) => gpu.pool.release(r.buffer)),
      };
    },
  });
  const tk = matmulTileKey(tile);
  const reasoned = tk === matmulTileKey(REASONED);
  const key = `matmul:${type}:${flags}${reasoned ? "" : `:${tk}`}`;
  const kernel = gpu.kernel(key, () => ({
    name: `matmul[${type},${s.transA ? "T" : "N"}${s.transB ? "T" : "N"},${vecA ? "v" : "s"}${
      vecB ? "v" : "s"
    }${reasoned ? "" : `,${tk}`}]`,
    code: source(type, s, tile, vecA, vecB, vecC),
    storage: ["read", "read", "read_write"],
    uniform: true,
  }));
  const gx = Math.ceil(s.n / tile.bn);
  const gy = Math.ceil(s.m / tile.bm);
  const bytes = type === "f16" ? 2 : 4;
  const strides = [s.aBatchStride, s.bBatchStride, s.m * s.n];
  const operands = [[a, s.m * s.k], [b, s.k * s.n], [c, s.m * s.n]].map(([range, extent], i) => ({
    range: range as BufferRange,
    elementBytes: bytes,
    itemStride: strides[i],
    itemExtent: extent as number,
  }));
  // windows of whole batches (the launch planner), at most a grid's z extent each
  const windows = planWindows(gpu.limits, operands, s.batch, {
    maxItems: gpu.limits.maxComputeWorkgroupsPerDimension,
    label: "matmul",
  });
  for (const w of windows) {
    const [af, bf, cf] = w.bases.map((base, i) => w.item0 * strides[i] - base);
    const params = new Params().u32(s.m).u32(s.n).u32(s.k).u32(s.aBatchStride).u32(s.bBatchStride)
      .u32(w.item0).u32(af).u32(bf).u32(cf);
    gpu.dispatch(kernel, w.ranges, params, [gx, gy, w.items]);
  }
}

/** FLOPs of one matmul (2·batch·M·N·K), for benchmarks. */
export function matmulFlops(s: Pick<MatmulShape, "batch" | "m" | "n" | "k">): number {
  return 2 * s.batch * s.m * s.n * s.k;
}
