/**
 * Batched matrix multiply C[b] = op(A[b]) · op(B[b]), op = identity or transpose, f32 accumulation.
 *
 * Tiling: a workgroup of 16×16 invocations computes a 64×64 tile of C; each invocation owns a 4×4
 * register block (four vec4 accumulators). K advances in slices of 16: the workgroup stages a 16×64 slice
 * of A and of B in workgroup memory as vec4<f32> (2 × 4 KiB), then each invocation does 16 rank-1 updates
 * reading one vec4 of A and one of B per step (16 FMAs per two shared loads).
 * Loads: vec4 global loads along the contiguous axis when that axis is a multiple of 4 (variant "v"),
 * scalar loads otherwise; edges are zero-padded, so any M, N, K is correct. f16 storage is widened on
 * load. Grid: x = ⌈N/64⌉, y = ⌈M/64⌉, z = batch (chunks of 65,535). Limits: 8 KiB workgroup memory.
 */
import { type BufferRange, type Gpu, Params } from "../core/gpu/mod.ts";
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

const TILE = 64;

function loadA(transA: boolean, vec: boolean): string {
  if (!transA) {
    // A[m, k]: invocation t loads row t/4, four consecutive k at (t%4)*4
    return vec
      ? `{
    let row = t / 4u; let kq = (t % 4u) * 4u; let m = tile_m + row; let k = k0 + kq;
    var v = vec4<f32>(0.0);
    if (m < p.m && k < p.k) { v = vec4<f32>(a[(a_base + m * p.k + k) / 4u]); }
    As[(kq + 0u) * 16u + row / 4u][row % 4u] = v.x; As[(kq + 1u) * 16u + row / 4u][row % 4u] = v.y;
    As[(kq + 2u) * 16u + row / 4u][row % 4u] = v.z; As[(kq + 3u) * 16u + row / 4u][row % 4u] = v.w;
  }`
      : `{
    let row = t / 4u; let kq = (t % 4u) * 4u; let m = tile_m + row;
    for (var j = 0u; j < 4u; j++) {
      let k = k0 + kq + j;
      var v = 0.0;
      if (m < p.m && k < p.k) { v = f32(a[a_base + m * p.k + k]); }
      As[(kq + j) * 16u + row / 4u][row % 4u] = v;
    }
  }`;
  }
  // A stored [k, m]: invocation t loads k-row t/16, four consecutive m at (t%16)*4
  return vec
    ? `{
    let kr = t / 16u; let mq = (t % 16u) * 4u; let k = k0 + kr; let m = tile_m + mq;
    var v = vec4<f32>(0.0);
    if (k < p.k && m < p.m) { v = vec4<f32>(a[(a_base + k * p.m + m) / 4u]); }
    As[kr * 16u + mq / 4u] = v;
  }`
    : `{
    let kr = t / 16u; let mq = (t % 16u) * 4u; let k = k0 + kr;
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
      let m = tile_m + mq + j;
      if (k < p.k && m < p.m) { v[j] = f32(a[a_base + k * p.m + m]); }
    }
    As[kr * 16u + mq / 4u] = v;
  }`;
}

function loadB(transB: boolean, vec: boolean): string {
  if (!transB) {
    // B[k, n]: invocation t loads k-row t/16, four consecutive n at (t%16)*4
    return vec
      ? `{
    let kr = t / 16u; let nq = (t % 16u) * 4u; let k = k0 + kr; let n = tile_n + nq;
    var v = vec4<f32>(0.0);
    if (k < p.k && n < p.n) { v = vec4<f32>(b[(b_base + k * p.n + n) / 4u]); }
    Bs[kr * 16u + nq / 4u] = v;
  }`
      : `{
    let kr = t / 16u; let nq = (t % 16u) * 4u; let k = k0 + kr;
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
      let n = tile_n + nq + j;
      if (k < p.k && n < p.n) { v[j] = f32(b[b_base + k * p.n + n]); }
    }
    Bs[kr * 16u + nq / 4u] = v;
  }`;
  }
  // B stored [n, k]: invocation t loads n-row t/4, four consecutive k at (t%4)*4
  return vec
    ? `{
    let row = t / 4u; let kq = (t % 4u) * 4u; let n = tile_n + row; let k = k0 + kq;
    var v = vec4<f32>(0.0);
    if (n < p.n && k < p.k) { v = vec4<f32>(b[(b_base + n * p.k + k) / 4u]); }
    Bs[(kq + 0u) * 16u + row / 4u][row % 4u] = v.x; Bs[(kq + 1u) * 16u + row / 4u][row % 4u] = v.y;
    Bs[(kq + 2u) * 16u + row / 4u][row % 4u] = v.z; Bs[(kq + 3u) * 16u + row / 4u][row % 4u] = v.w;
  }`
    : `{
    let row = t / 4u; let kq = (t % 4u) * 4u; let n = tile_n + row;
    for (var j = 0u; j < 4u; j++) {
      let k = k0 + kq + j;
      var v = 0.0;
      if (n < p.n && k < p.k) { v = f32(b[b_base + n * p.k + k]); }
      Bs[(kq + j) * 16u + row / 4u][row % 4u] = v;
    }
  }`;
}

function source(type: MatmulType, s: MatmulShape, vecA: boolean, vecB: boolean, vecC: boolean): string {
  const store = vecC
    ? `if (m < p.m && n < p.n) { c[(c_base + m * p.n + n) / 4u] = vec4<{{T}}>(acc[i]); }`
    : `for (var j = 0u; j < 4u; j++) {
        if (m < p.m && n + j < p.n) { c[c_base + m * p.n + n + j] = {{T}}(acc[i][j]); }
      }`;
  return specialize(
    /* wgsl */ `
struct P { m: u32, n: u32, k: u32, a_stride: u32, b_stride: u32, batch0: u32 }
@group(0) @binding(0) var<storage, read> a: array<{{TA}}>;
@group(0) @binding(1) var<storage, read> b: array<{{TB}}>;
@group(0) @binding(2) var<storage, read_write> c: array<{{TC}}>;
@group(1) @binding(0) var<uniform> p: P;
var<workgroup> As: array<vec4<f32>, 256>; // [k][m/4] of the current 16×64 slice
var<workgroup> Bs: array<vec4<f32>, 256>; // [k][n/4]

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
  let batch = p.batch0 + wid.z;
  let a_base = batch * p.a_stride;
  let b_base = batch * p.b_stride;
  let c_base = batch * p.m * p.n;
  let tile_m = wid.y * ${TILE}u;
  let tile_n = wid.x * ${TILE}u;
  var acc = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
  for (var k0 = 0u; k0 < p.k; k0 += 16u) {
    ${loadA(s.transA, vecA)}
    ${loadB(s.transB, vecB)}
    workgroupBarrier();
    for (var kk = 0u; kk < 16u; kk++) {
      let av = As[kk * 16u + lid.y];
      let bv = Bs[kk * 16u + lid.x];
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
  const key = `matmul:${type}:${+s.transA}${+s.transB}:${+vecA}${+vecB}${+vecC}`;
  const kernel = gpu.kernel(key, () => ({
    name: `matmul[${type},${s.transA ? "T" : "N"}${s.transB ? "T" : "N"},${vecA ? "v" : "s"}${
      vecB ? "v" : "s"
    }]`,
    code: source(type, s, vecA, vecB, vecC),
    storage: ["read", "read", "read_write"],
    uniform: true,
  }));
  const gx = Math.ceil(s.n / TILE);
  const gy = Math.ceil(s.m / TILE);
  const maxZ = gpu.limits.maxComputeWorkgroupsPerDimension;
  for (let b0 = 0; b0 < s.batch; b0 += maxZ) {
    const params = new Params().u32(s.m).u32(s.n).u32(s.k).u32(s.aBatchStride).u32(s.bBatchStride).u32(b0);
    gpu.dispatch(kernel, [a, b, c], params, [gx, gy, Math.min(maxZ, s.batch - b0)]);
  }
}

/** FLOPs of one matmul (2·batch·M·N·K), for benchmarks. */
export function matmulFlops(s: Pick<MatmulShape, "batch" | "m" | "n" | "k">): number {
  return 2 * s.batch * s.m * s.n * s.k;
}
