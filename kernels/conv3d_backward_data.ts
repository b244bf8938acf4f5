/**
 * conv3d backward with respect to the input, which is also the forward pass of ConvTranspose3d:
 * dx[n, ci, i] = bias[ci] + Σ_{co, k : i + p − k = o·s, 0 ≤ o < out} dy[n, co, o] · w[co, ci, k].
 * Layout NCDHW; w is the convolution's weight [Cout, Cin, kD, kH, kW] (a ConvTranspose3d weight
 * [Cin_T, Cout_T, k…] has exactly this layout). f32 or f16 storage (f32 arithmetic; conv3d_gemm.ts).
 *
 * Stride phases: with stride s, the kernel taps that reach input position i are those with
 * k ≡ (i + p) (mod s). Positions are grouped by their residue r = (i + p) mod s per axis; within one
 * phase the taps are k = r + s·t (t < T_r = ⌈(K − r)/s⌉) and o = j − t + c_r for the j-th position
 * i = i0_r + s·j. So each phase is a dense implicit GEMM — M = positions of the phase, N = Cin,
 * K = Cout·T_d·T_h·T_w — with no multiply wasted on the zeros a dilated-input formulation would insert
 * (7/8 of the work for stride 2). Residues with equal tap counts form at most 2 ranges per axis; each of
 * the ≤ 8 combinations is one dispatch whose grid z enumerates its phases (T is a compile-time constant).
 * Positions that no output reaches (T_r = 0 when K < s, or the last rows of an odd input that the
 * forward pass never read) get a K-loop of length 0 or only out-of-range taps: they are written as zero
 * (or the bias), never left undefined.
 *
 * Tiling: conv3d_gemm.ts, fast axis M (stores along the input's W). Loads: A (dy) — each invocation owns
 * one or more positions of the phase (decomposed once) and fills their K slice entries; vec4 along M when a phase maps onto dy one-to-one (kernel = stride, no padding: decoder
 * upsampling) and the sizes are multiples of 4. B from the weight re-laid out once per call as
 * [Cout, kD·kH·kW, Cin] (a small transposition kernel) so that loads along N (Cin) are contiguous; vec4
 * when Cin is a multiple of 4. (When one weight row exceeds a binding, B is read in the weight's own
 * layout instead.) Stores vec4 along M for stride 1.
 *
 * Limits: chunks over batch, input channels, output channels (accumulating) and input depth rows keep
 * every binding window under maxStorageBufferBindingSize; one H×W slice per channel must fit a binding.
 * Split-K (grid z = phase × split) for small, deep problems. An f16 input gradient whose output channels
 * are chunked accumulates in f32 (conv3d_gemm.ts `accumulatorWindow`).
 */
import { type BufferRange, type Gpu, Params } from "../core/gpu/mod.ts";
import {
  accumulatorWindow,
  checkAlignedRanges,
  checkConvType,
  chooseSplits,
  CONV_BYTES,
  type ConvType,
  coverRow,
  coverRows,
  elem,
  enableF16,
  gemmBody,
  gemmDecls,
  gemmEmit,
  type GemmTile,
  narrow,
  ncdhwSpan,
  probeRanges,
  ranges,
  rowCover,
  runBoxToF16,
  scratch,
  TILE_PROLOGUE,
  tileGrid,
  tileKey,
  tunedConv,
  typeKey,
  widen,
} from "./conv3d_gemm.ts";
import { type ElementWindow, planShrink, planWindows, spanLimitBytes, windowOf } from "./launch_plan.ts";
import { checkConv3dGeometry, type Conv3dGeometry, volume } from "./conv3d_geometry.ts";
import { ELEMENTWISE_WORKGROUP, LINEAR_INDEX } from "./wgsl.ts";

/** Buffers of an input-gradient (transposed) convolution: dy is read, dx written. */
export interface Conv3dBackwardDataBuffers {
  dy: BufferRange;
  w: BufferRange;
  /** Per input channel (ConvTranspose3d's bias). */
  bias?: BufferRange;
  dx: BufferRange;
}

interface Variant {
  /** Storage type of dy, the weight and the bias. */
  type: ConvType;
  /** Storage type of dx (f32 when an f16 output accumulates in an f32 window). */
  out: ConvType;
  tile: GemmTile;
  taps: [number, number, number];
  /** Read the weight in its own layout [Cout, Cin, kvol] instead of the transposed copy. */
  direct: boolean;
  aVec: boolean;
  bVec: boolean;
  yVec: boolean;
  split: boolean;
}

const params = (type: ConvType) => /* wgsl */ `
struct P {
  tiles: u32, tiles_n: u32, m_max: u32, n: u32,
  k: u32, k_split: u32, splits: u32, accumulate: u32,
  in_d: u32, in_h: u32, in_w: u32, in_s: u32,
  out_d: u32, out_h: u32, out_w: u32, out_s: u32,
  id0: u32, id1: u32, n0: u32, nb: u32,
  co0: u32, ci0: u32, cin: u32, cout: u32,
  rd_lo: u32, rh_lo: u32, rw_lo: u32, box_h: u32,
  box_w: u32, phases: u32, has_bias: u32, g_base: u32,
  w_base: u32, b_base: u32, y_base: u32,
}
@group(1) @binding(0) var<uniform> p: P;

struct Phase {
  r: vec3<u32>,    // residue (i + p) mod s per axis
  i0: vec3<u32>,   // first input position of the phase
  c: vec3<i32>,    // o = j − t + c
  cnt: vec3<u32>,  // positions per axis (depth: within the chunk)
  jlo: u32,        // first depth position index of the chunk
  m: u32,          // GEMM rows of this phase
}

fn first_pos(r: u32, s: i32, pad: i32) -> u32 { return u32(((i32(r) - pad) % s + s) % s); }
// positions i0 + s·j below len
fn count_below(len: u32, i0: u32, s: i32) -> u32 { return select(0u, (len - i0 + u32(s) - 1u) / u32(s), len > i0); }

fn phase_of(ph: u32) -> Phase {
  let rw = p.rw_lo + ph % p.box_w;
  let rh = p.rh_lo + (ph / p.box_w) % p.box_h;
  let rd = p.rd_lo + ph / (p.box_w * p.box_h);
  var f: Phase;
  f.r = vec3<u32>(rd, rh, rw);
  f.i0 = vec3<u32>(first_pos(rd, SD, PD), first_pos(rh, SH, PH), first_pos(rw, SW, PW));
  f.c = vec3<i32>((i32(f.i0.x) + PD - i32(rd)) / SD, (i32(f.i0.y) + PH - i32(rh)) / SH,
                  (i32(f.i0.z) + PW - i32(rw)) / SW);
  f.jlo = count_below(p.id0, f.i0.x, SD);
  f.cnt = vec3<u32>(count_below(p.id1, f.i0.x, SD) - f.jlo, count_below(p.in_h, f.i0.y, SH),
                    count_below(p.in_w, f.i0.z, SW));
  f.m = p.nb * f.cnt.x * f.cnt.y * f.cnt.z;
  return f;
}

var<private> cur: Phase;

// index of GEMM output (m, n) of phase cur in the bound window of dx
fn dx_index(m: u32, n: u32) -> u32 {
  let jw = m % cur.cnt.z;
  let t1 = m / cur.cnt.z;
  let jh = t1 % cur.cnt.y;
  let t2 = t1 / cur.cnt.y;
  let jd = cur.jlo + t2 % cur.cnt.x;
  let nb = t2 / cur.cnt.x;
  let id = cur.i0.x + jd * u32(SD);
  let ih = cur.i0.y + jh * u32(SH);
  let iw = cur.i0.z + jw * u32(SW);
  return (p.n0 + nb) * p.cin * p.in_s + (p.ci0 + n) * p.in_s + id * p.in_h * p.in_w + ih * p.in_w + iw - p.y_base;
}

fn bias_of(n: u32) -> f32 {
  if (p.has_bias != 0u && p.accumulate == 0u) { return ${widen(type, "bias[p.ci0 + n - p.b_base]", false)}; }
  return 0.0;
}
`;

function geometryConsts(g: Conv3dGeometry, taps: [number, number, number]): string {
  const [, kh, kw] = g.kernel;
  const [sd, sh, sw] = g.stride;
  const [pd, ph, pw] = g.padding;
  // tap counts of 0 give K = 0 (nothing to load); keep the divisors non-zero
  const [td, th, tw] = taps.map((t) => Math.max(1, t));
  return /* wgsl */ `
const SD = ${sd}i; const SH = ${sh}i; const SW = ${sw}i;
const PD = ${pd}i; const PH = ${ph}i; const PW = ${pw}i;
const KVOL = ${volume(g.kernel)}u; const KHW = ${kh * kw}u; const KWU = ${kw}u;
const TH = ${th}u; const TW = ${tw}u; const THW = ${th * tw}u; const TVOL = ${td * th * tw}u;
`;
}

function aLoader(v: Variant): { setup: string; load: string } {
  const t = v.tile;
  if (v.aVec) {
    // vec4 along M: the phase maps one-to-one onto dy voxels
    const c = rowCover(t, t.bm / 4, t.bk);
    const rows = coverRows(c).map((r) => /* wgsl */ `
  let a_q${r} = ${coverRow(c, r)};
  let am${r} = tile_m + a_q${r} * 4u;
  let a_ok${r} = am${r} < ph.m;
  let a_row${r} = (p.n0 + am${r} / a_chunk) * p.cout * p.out_s + p.co0 * p.out_s + ph.jlo * a_hw + am${r} % a_chunk -
    p.g_base;`);
    const loads = coverRows(c).map((r) => /* wgsl */ `
        {
          var v = vec4<f32>(0.0);
          if (a_ok${r} && k < k_end) { v = ${widen(v.type, `g[(a_row${r} + k * p.out_s) / 4u]`, true)}; }
          As[kl * AS + a_q${r}] = v;
        }`);
    return {
      setup: /* wgsl */ `
  let a_hw = p.out_h * p.out_w;
  let a_chunk = max(ph.cnt.x * a_hw, 1u);
  let a_k = t / ${c.units}u;${rows.join("")}`,
      load: /* wgsl */ `
    for (var j = 0u; j < ${c.kIters}u; j++) {
      let kl = a_k + j * ${c.kStride}u;
      if (kl < BK) {
        let k = k0 + kl;${loads.join("")}
      }
    }`,
    };
  }
  const c = rowCover(t, t.bm, t.bk);
  const rows = coverRows(c).map((r) => /* wgsl */ `
  let a_m${r} = ${coverRow(c, r)};
  let am${r} = tile_m + a_m${r};
  let a_ok${r} = am${r} < ph.m;
  let a_t1${r} = am${r} / cnt_w;
  let a_t2${r} = a_t1${r} / cnt_h;
  let a_od${r} = i32(ph.jlo + a_t2${r} % cnt_d) + ph.c.x;
  let a_oh${r} = i32(a_t1${r} % cnt_h) + ph.c.y;
  let a_ow${r} = i32(am${r} % cnt_w) + ph.c.z;
  let a_row${r} = (p.n0 + a_t2${r} / cnt_d) * p.cout * p.out_s + p.co0 * p.out_s - p.g_base;`);
  const loads = coverRows(c).map((r) => /* wgsl */ `
        {
          var v = 0.0;
          let od = a_od${r} - td;
          let oh = a_oh${r} - th;
          let ow = a_ow${r} - tw;
          if (a_ok${r} && k_ok && u32(od) < p.out_d && u32(oh) < p.out_h && u32(ow) < p.out_w) {
            v = ${widen(v.type, `g[a_row${r} + koff + u32(od) * a_hw + u32(oh) * p.out_w + u32(ow)]`, false)};
          }
          As[kl * AS + a_m${r} / 4u][a_m${r} % 4u] = v;
        }`);
  return {
    setup: /* wgsl */ `
  let a_hw = p.out_h * p.out_w;
  let cnt_w = max(ph.cnt.z, 1u);
  let cnt_h = max(ph.cnt.y, 1u);
  let cnt_d = max(ph.cnt.x, 1u);
  let a_k = t / ${c.units}u;${rows.join("")}`,
    load: /* wgsl */ `
    for (var j = 0u; j < ${c.kIters}u; j++) {
      let kl = a_k + j * ${c.kStride}u;
      if (kl < BK) {
        let k = k0 + kl;
        let k_ok = k < k_end;
        let tt = k % TVOL;
        let td = i32(tt / THW);
        let th = i32((tt % THW) / TW);
        let tw = i32(tt % TW);
        let koff = (k / TVOL) * p.out_s;${loads.join("")}
      }
    }`,
  };
}

function bLoader(v: Variant): { setup: string; load: string } {
  const t = v.tile;
  // weight index of the K entry's (co, tap) for the invocation's first column
  const tap = /* wgsl */ `
        let k_ok = k < k_end;
        let tt = k % TVOL;
        let kv = (ph.r.x + u32(SD) * (tt / THW)) * KHW + (ph.r.y + u32(SH) * ((tt % THW) / TW)) * KWU +
          ph.r.z + u32(SW) * (tt % TW);
        let wk = (p.co0 + k / TVOL) * KVOL * p.cin + ${v.direct ? "kv" : "kv * p.cin"};`;
  if (v.bVec) {
    const c = rowCover(t, t.bn / 4, t.bk);
    const rows = coverRows(c).map((r) => /* wgsl */ `
  let b_q${r} = ${coverRow(c, r)};
  let b_ok${r} = tile_n + b_q${r} * 4u < p.n;
  let b_col${r} = p.ci0 + tile_n + b_q${r} * 4u - p.w_base;`);
    const loads = coverRows(c).map((r) => /* wgsl */ `
        {
          var v = vec4<f32>(0.0);
          if (b_ok${r} && k_ok) { v = ${widen(v.type, `wt[(wk + b_col${r}) / 4u]`, true)}; }
          Bs[kl * BS + b_q${r}] = v;
        }`);
    return {
      setup: /* wgsl */ `
  let b_k = t / ${c.units}u;${rows.join("")}`,
      load: /* wgsl */ `
    for (var j = 0u; j < ${c.kIters}u; j++) {
      let kl = b_k + j * ${c.kStride}u;
      if (kl < BK) {
        let k = k0 + kl;${tap}${loads.join("")}
      }
    }`,
    };
  }
  const c = rowCover(t, t.bn, t.bk);
  const rows = coverRows(c).map((r) => /* wgsl */ `
  let b_n${r} = ${coverRow(c, r)};
  let b_ok${r} = tile_n + b_n${r} < p.n;
  let b_col${r} = ${
    v.direct ? `(p.ci0 + tile_n + b_n${r}) * KVOL` : `p.ci0 + tile_n + b_n${r}`
  } - p.w_base;`);
  const loads = coverRows(c).map((r) => /* wgsl */ `
        {
          var v = 0.0;
          if (b_ok${r} && k_ok) { v = ${widen(v.type, `wt[wk + b_col${r}]`, false)}; }
          Bs[kl * BS + b_n${r} / 4u][b_n${r} % 4u] = v;
        }`);
  return {
    setup: /* wgsl */ `
  let b_k = t / ${c.units}u;${rows.join("")}`,
    load: /* wgsl */ `
    for (var j = 0u; j < ${c.kIters}u; j++) {
      let kl = b_k + j * ${c.kStride}u;
      if (kl < BK) {
        let k = k0 + kl;${tap}${loads.join("")}
      }
    }`,
  };
}

function emitFn(v: Variant): string {
  return gemmEmit({
    buffer: "dx",
    index: "dx_index",
    rows: "cur.m",
    splitBase: "((phase_id * p.splits + split_id) * p.n + n) * p.m_max",
  }, v);
}

function source(g: Conv3dGeometry, v: Variant): string {
  const a = aLoader(v);
  const b = bLoader(v);
  const yType = v.split ? "f32" : elem(v.out, v.yVec);
  return /* wgsl */ `${enableF16(v.type, v.out)}
@group(0) @binding(0) var<storage, read> g: array<${elem(v.type, v.aVec)}>;
@group(0) @binding(1) var<storage, read> wt: array<${elem(v.type, v.bVec)}>;
@group(0) @binding(2) var<storage, read> bias: array<${v.type}>;
@group(0) @binding(3) var<storage, read_write> dx: array<${yType}>;
${geometryConsts(g, v.taps)}
${params(v.type)}
${gemmDecls(v.tile)}
var<private> split_id: u32;
var<private> phase_id: u32;
${emitFn(v)}

@compute @workgroup_size(${v.tile.threads})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
${TILE_PROLOGUE}
  let ph = phase_of(wid.z / p.splits);
  if (tile_m >= ph.m) { return; }
  cur = ph;
  phase_id = wid.z / p.splits;
  split_id = wid.z % p.splits;
  let k_begin = split_id * p.k_split;
  let k_end = min(p.k, k_begin + p.k_split);
${a.setup}
${b.setup}
${gemmBody(v.tile, a.load + b.load)}
}
`;
}

function finishSource(
  g: Conv3dGeometry,
  taps: [number, number, number],
  type: ConvType,
  out: ConvType,
): string {
  return /* wgsl */ `${enableF16(type, out)}
@group(0) @binding(0) var<storage, read> part: array<f32>;
@group(0) @binding(1) var<storage, read> bias: array<${type}>;
@group(0) @binding(2) var<storage, read_write> dx: array<${out}>;
${geometryConsts(g, taps)}
${params(type)}
${LINEAR_INDEX}
@compute @workgroup_size(${ELEMENTWISE_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let e = linear_workgroup(wid, nwg) * ${ELEMENTWISE_WORKGROUP}u + lid;
  if (e >= p.phases * p.n * p.m_max) { return; }
  let m = e % p.m_max;
  let n = (e / p.m_max) % p.n;
  let phase = e / (p.m_max * p.n);
  cur = phase_of(phase);
  if (m >= cur.m) { return; }
  var s = 0.0;
  for (var z = 0u; z < p.splits; z++) { s += part[((phase * p.splits + z) * p.n + n) * p.m_max + m]; }
  let i = dx_index(m, n);
  var r = s + bias_of(n);
  if (p.accumulate != 0u) { r += ${widen(out, "dx[i]", false)}; }
  dx[i] = ${narrow(out, "r", false)};
}
`;
}

const transposeSource = (type: ConvType) =>
  /* wgsl */ `${enableF16(type)}
struct P { n: u32, cin: u32, kvol: u32, co0: u32, w_base: u32, t_base: u32 }
@group(0) @binding(0) var<storage, read> w: array<${type}>;
@group(0) @binding(1) var<storage, read_write> wt: array<${type}>;
@group(1) @binding(0) var<uniform> p: P;
${LINEAR_INDEX}
@compute @workgroup_size(${ELEMENTWISE_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let e = linear_workgroup(wid, nwg) * ${ELEMENTWISE_WORKGROUP}u + lid; // [co][kv][ci] order of the chunk
  if (e >= p.n) { return; }
  let ci = e % p.cin;
  let r = e / p.cin;
  let kv = r % p.kvol;
  let co = p.co0 + r / p.kvol;
  wt[co * p.kvol * p.cin + kv * p.cin + ci - p.t_base] = w[(co * p.cin + ci) * p.kvol + kv - p.w_base];
}
`;

/**
 * Re-lays the weight [Cout, Cin, kvol] out as [Cout, kvol, Cin] into `wt`, in runs of output channels
 * whose rows fit a binding (the launch planner, one output channel per item).
 */
function transposeWeight(
  gpu: Gpu,
  g: Conv3dGeometry,
  w: BufferRange,
  wt: BufferRange,
  type: ConvType,
): void {
  const row = g.cin * volume(g.kernel);
  const tb = CONV_BYTES[type];
  const kernel = gpu.kernel(`conv3d_weight_transpose${typeKey(type, type)}`, () => ({
    name: `conv3d_weight_transpose${type === "f32" ? "" : `[${type}]`}`,
    code: transposeSource(type),
    storage: ["read", "read_write"],
    uniform: true,
  }));
  const rows = (range: BufferRange) => ({ range, elementBytes: tb, itemStride: row, itemExtent: row });
  for (
    const win of planWindows(gpu.limits, [rows(w), rows(wt)], g.cout, { label: "conv3d_weight_transpose" })
  ) {
    const n = win.items * row;
    // the kernel subtracts each binding's first element index from global indices
    const [src, dst] = win.bases.map((base) => win.item0 * row - base);
    const params = new Params().u32(n).u32(g.cin).u32(volume(g.kernel)).u32(win.item0).u32(src).u32(dst);
    gpu.dispatch(kernel, win.ranges, params, Math.ceil(n / ELEMENTWISE_WORKGROUP));
  }
}

/** Residue ranges of one axis with equal tap counts: [lo, hi) with taps T. */
function tapGroups(k: number, s: number): { lo: number; hi: number; taps: number }[] {
  const q = Math.floor(k / s);
  const rem = k % s;
  const groups = [];
  if (rem > 0) groups.push({ lo: 0, hi: rem, taps: q + 1 });
  groups.push({ lo: rem, hi: s, taps: q });
  return groups;
}

/** Per-axis facts of one residue (host mirror of `phase_of`). */
function phaseAxis(r: number, s: number, pad: number, lo: number, hi: number, len: number) {
  const i0 = (((r - pad) % s) + s) % s;
  const below = (n: number) => (n > i0 ? Math.ceil((n - i0) / s) : 0);
  const jlo = below(lo);
  return { i0, c: (i0 + pad - r) / s, jlo, count: below(hi) - jlo, full: below(len) };
}

/**
 * Records dx = conv3d input gradient of dy (equivalently ConvTranspose3d of dy with the same weight),
 * plus `bias` per input channel when given. `dx` must hold batch·cin·in elements; every element is
 * written. `type` is the storage type of every buffer (f16 needs shader-f16); arithmetic and
 * accumulation are f32.
 */
export function runConv3dBackwardData(
  gpu: Gpu,
  g: Conv3dGeometry,
  b: Conv3dBackwardDataBuffers,
  type: ConvType = "f32",
): void {
  checkConv3dGeometry("conv3d input gradient", g);
  checkConvType(gpu, "conv3d input gradient", type);
  checkAlignedRanges(gpu, "conv3d input gradient", { ...b });
  if (g.batch === 0) return;
  const [D, H, W] = g.in;
  const [Do, Ho, Wo] = g.out;
  const kvol = volume(g.kernel);
  const sx = D * H * W;
  const sy = Do * Ho * Wo;
  const hw = H * W;
  const hwo = Ho * Wo;
  const limit = Math.floor(spanLimitBytes(gpu.limits, 4) / 4);
  const tb = CONV_BYTES[type];
  // the transposed copy needs one weight row per binding; beyond that, read the weight as it is
  const direct = g.cin * kvol * tb > spanLimitBytes(gpu.limits, tb);
  const wt = direct ? b.w : scratch(gpu, g.cout * g.cin * kvol, tb);
  if (!direct) transposeWeight(gpu, g, b.w, wt, type);
  const outRows = (d: number) => Math.min(Do, Math.floor((d + g.kernel[0] - 2) / g.stride[0]) + 1);
  const plan = (outBytes: number) =>
    planShrink("conv3d input gradient", { n: g.batch, co: g.cout, ci: g.cin, d: D }, [
      {
        what: "the input gradient",
        span: (c) => ncdhwSpan(g.cin, D, hw, c.n, c.ci, c.d),
        bytes: outBytes,
        shrink: ["n", "ci", "d"],
      },
      {
        what: "the output gradient",
        span: (c) => ncdhwSpan(g.cout, Do, hwo, c.n, c.co, outRows(c.d)),
        bytes: tb,
        shrink: ["n", "co", "d"],
      },
      {
        what: "the weight",
        span: (c) =>
          direct
            ? (c.co - 1) * kvol * g.cin + c.ci * kvol
            : (c.co - 1) * kvol * g.cin + (kvol - 1) * g.cin + c.ci,
        bytes: tb,
        shrink: ["co", "ci"],
      },
      { what: "the bias", span: (c) => c.ci, bytes: tb, shrink: ["ci"] },
    ], gpu.limits);
  let chunk = plan(tb);
  // an f16 input gradient summed over several output-channel chunks accumulates in an f32 window instead
  const f32Acc = type === "f16" && chunk.co < g.cout;
  if (f32Acc) chunk = plan(4);
  const out: ConvType = f32Acc ? "f32" : type;
  const groups = [0, 1, 2].map((a) => tapGroups(g.kernel[a], g.stride[a]));
  const unitStride = g.stride.every((s) => s === 1);

  for (const [n0, n1] of ranges(g.batch, chunk.n)) {
    for (const [ci0, ci1] of ranges(g.cin, chunk.ci)) {
      for (const [id0, id1] of ranges(D, chunk.d)) {
        const nb = n1 - n0;
        const n = ci1 - ci0;
        const dxStart = n0 * g.cin * sx + ci0 * sx + id0 * hw;
        const dxEnd = (n1 - 1) * g.cin * sx + (ci1 - 1) * sx + id1 * hw;
        const dxOut = windowOf(gpu.limits, b.dx, tb, dxStart, dxEnd);
        const dxWin: ElementWindow<BufferRange> = f32Acc ? accumulatorWindow(gpu, dxStart, dxEnd) : dxOut;
        const bWin = b.bias ? windowOf(gpu.limits, b.bias, tb, ci0, ci1) : undefined;
        const odLo = Math.max(0, Math.ceil((id0 + g.padding[0] - g.kernel[0] + 1) / g.stride[0]));
        const odHi = Math.min(Do, Math.floor((id1 - 1 + g.padding[0]) / g.stride[0]) + 1);
        for (const [co0, co1] of ranges(g.cout, chunk.co)) {
          const dyWin = odHi > odLo
            ? windowOf(
              gpu.limits,
              b.dy,
              tb,
              n0 * g.cout * sy + co0 * sy + odLo * hwo,
              (n1 - 1) * g.cout * sy + (co1 - 1) * sy + odHi * hwo,
            )
            : windowOf(gpu.limits, b.dy, tb, 0, 0);
          const wWin = direct
            ? windowOf(
              gpu.limits,
              wt,
              tb,
              co0 * kvol * g.cin + ci0 * kvol,
              (co1 - 1) * kvol * g.cin + ci1 * kvol,
            )
            : windowOf(
              gpu.limits,
              wt,
              tb,
              co0 * kvol * g.cin + ci0,
              (co1 - 1) * kvol * g.cin + (kvol - 1) * g.cin + ci1,
            );
          const accumulate = co0 > 0 ? 1 : 0;
          for (const gd of groups[0]) {
            for (const gh of groups[1]) {
              for (const gw of groups[2]) {
                const taps: [number, number, number] = [gd.taps, gh.taps, gw.taps];
                const box = [gd, gh, gw].map((x) => x.hi - x.lo);
                const phases = box[0] * box[1] * box[2];
                // host mirror of the phases: M per phase and the conditions of the vec4 variants
                let mMax = 0;
                let linear = taps.every((t) => t === 1) && sy % 4 === 0;
                let stores = unitStride && sx % 4 === 0;
                for (let rd = gd.lo; rd < gd.hi; rd++) {
                  const ad = phaseAxis(rd, g.stride[0], g.padding[0], id0, id1, D);
                  for (let rh = gh.lo; rh < gh.hi; rh++) {
                    const ah = phaseAxis(rh, g.stride[1], g.padding[1], 0, H, H);
                    for (let rw = gw.lo; rw < gw.hi; rw++) {
                      const aw = phaseAxis(rw, g.stride[2], g.padding[2], 0, W, W);
                      mMax = Math.max(mMax, nb * ad.count * ah.count * aw.count);
                      linear &&= ad.c === 0 && ah.c === 0 && aw.c === 0 && ah.count === Ho &&
                        aw.count === Wo &&
                        ad.jlo + ad.count <= Do && (ad.jlo * hwo) % 4 === 0 && (ad.count * hwo) % 4 === 0;
                      stores &&= (ad.count * hw) % 4 === 0 && (id0 * hw) % 4 === 0;
                    }
                  }
                }
                if (mMax === 0) continue;
                const k = (co1 - co0) * taps[0] * taps[1] * taps[2];
                const bVec = !direct && g.cin % 4 === 0 && ci0 % 4 === 0 && n % 4 === 0;
                const choice = tunedConv(
                  gpu,
                  "conv3d_bwd_data",
                  `${g.kernel}/${g.stride}/${g.padding}/${taps}:${+direct}${+linear}${+bVec}${+stores}` +
                    `${typeKey(type, out)}`,
                  { m: mMax, n, k, fast: "m" },
                  () => {
                    const probe = probeRanges(gpu, { dy: b.dy, w: b.w, bias: b.bias, dx: b.dx });
                    return {
                      record: () => runConv3dBackwardData(gpu, g, probe.buffers, type),
                      dispose: probe.dispose,
                    };
                  },
                );
                const tile = choice.tile;
                const tiles = Math.ceil(mMax / tile.bm) * Math.ceil(n / tile.bn);
                const maxZ = Math.floor(gpu.limits.maxComputeWorkgroupsPerDimension / phases);
                const split = chooseSplits(
                  tiles * phases,
                  k,
                  tile.bk,
                  phases * mMax * n,
                  limit,
                  maxZ,
                  choice.splitTarget,
                );
                const variant: Variant = {
                  type,
                  out,
                  tile,
                  taps,
                  direct,
                  aVec: linear,
                  bVec,
                  yVec: stores,
                  split: split.splits > 1,
                };
                const params = new Params()
                  .u32(tiles).u32(Math.ceil(n / tile.bn)).u32(mMax).u32(n)
                  .u32(k).u32(split.kSplit).u32(split.splits).u32(accumulate)
                  .u32(D).u32(H).u32(W).u32(sx)
                  .u32(Do).u32(Ho).u32(Wo).u32(sy)
                  .u32(id0).u32(id1).u32(n0).u32(nb)
                  .u32(co0).u32(ci0).u32(g.cin).u32(g.cout)
                  .u32(gd.lo).u32(gh.lo).u32(gw.lo).u32(box[1])
                  .u32(box[2]).u32(phases).u32(bWin ? 1 : 0).u32(dyWin.first)
                  .u32(wWin.first).u32(bWin?.first ?? 0).u32(dxWin.first);
                const geo = `${g.kernel}/${g.stride}/${g.padding}/${taps}`;
                const types = typeKey(type, out);
                const key = `conv3d_bwd_data:${tileKey(tile)}:${geo}:` +
                  `${+variant.direct}${+variant.aVec}${+variant.bVec}${+variant.yVec}${+variant
                    .split}${types}`;
                const kernel = gpu.kernel(key, () => ({
                  name: `conv3d_backward_data[${tileKey(tile)},k${g.kernel.join("")},s${g.stride.join("")},` +
                    `t${taps.join("")}${direct ? ",direct" : ""}${variant.aVec ? ",vecA" : ""}${
                      variant.bVec ? ",vecB" : ""
                    }` +
                    `${variant.yVec ? ",vecY" : ""}${variant.split ? ",split" : ""}` +
                    `${types ? `,${type}>${out}` : ""}]`,
                  code: source(g, variant),
                  storage: ["read", "read", "read", "read_write"],
                  uniform: true,
                }));
                const biasBinding = bWin?.binding ?? wWin.binding;
                const grid = tileGrid(gpu, tiles, phases * split.splits);
                if (!variant.split) {
                  gpu.dispatch(
                    kernel,
                    [dyWin.binding, wWin.binding, biasBinding, dxWin.binding],
                    params,
                    grid,
                  );
                  continue;
                }
                const part = scratch(gpu, split.splits * phases * mMax * n);
                gpu.dispatch(kernel, [dyWin.binding, wWin.binding, biasBinding, part], params, grid);
                const finish = gpu.kernel(`conv3d_bwd_data_finish:${geo}${types}`, () => ({
                  name: `conv3d_backward_data_finish[k${g.kernel.join("")},s${g.stride.join("")}` +
                    `${types ? `,${type}>${out}` : ""}]`,
                  code: finishSource(g, taps, type, out),
                  storage: ["read", "read", "read_write"],
                  uniform: true,
                }));
                gpu.dispatch(
                  finish,
                  [part, biasBinding, dxWin.binding],
                  params,
                  Math.ceil((phases * mMax * n) / ELEMENTWISE_WORKGROUP),
                );
                gpu.pool.release(part.buffer);
              }
            }
          }
        }
        if (f32Acc) {
          runBoxToF16(gpu, dxWin, dxOut, {
            start: dxStart,
            outer: nb,
            outerStride: g.cin * sx,
            mid: n,
            midStride: sx,
            inner: (id1 - id0) * hw,
          });
          gpu.pool.release(dxWin.binding.buffer);
        }
      }
    }
  }
  if (!direct) gpu.pool.release(wt.buffer);
}
