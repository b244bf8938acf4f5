/**
 * conv3d backward with respect to the weight (also ConvTranspose3d's, with the roles of input and
 * output gradient swapped): dw[co, ci, k] = Σ_{n, o} dy[n, co, o] · x[n, ci, o·s − p + k].
 * Layout NCDHW, dw [Cout, Cin, kD, kH, kW], f32 or f16 storage (f32 arithmetic; conv3d_gemm.ts).
 *
 * GEMM: M = Cout, N = Cin·kD·kH·kW (the weight row), K = the reduction over batch × output voxels
 * (millions for a 160³ volume, while M·N is only a few thousand to a few million). A[co, r] = dy (contiguous
 * along the reduction), B[r, (ci, k)] = x gathered at the receptive field. Tiling: conv3d_gemm.ts with
 * fast axis N (stores along the weight row). Both operands are loaded along the reduction axis
 * (consecutive invocations take consecutive output voxels: coalesced reads of dy and, for stride 1, of
 * x); each invocation decomposes its reduction index once per K slice and reuses it for all its
 * columns.
 *
 * Split-K: the reduction is cut into up to CONV_TUNING.targetWorkgroups / tiles slices (grid z), so a
 * batch of 2 still fills the GPU; each slice writes its partial [Cout, N] tile into a scratch buffer and
 * a second kernel sums the slices into dw.
 * Loads: vec4 along the reduction for dy when the output's spatial size is a multiple of 4; vec4 along N
 * for x in patch embeddings (kW = sW a multiple of 4, W a multiple of 4). Stores vec4 when the weight row
 * is a multiple of 4.
 *
 * Limits: chunks over output channels and input channels (separate windows of dw), and over batch and
 * output depth rows (successive dispatches accumulating into dw) keep every binding window under
 * maxStorageBufferBindingSize. An f16 weight gradient accumulated over several such dispatches is summed
 * in an f32 window and rounded once (conv3d_gemm.ts `accumulatorWindow`).
 */
import { type BufferRange, type Gpu, Params } from "../core/gpu/mod.ts";
import {
  accumulatorWindow,
  checkAlignedRanges,
  checkConvType,
  chooseSplits,
  CONV_BYTES,
  type ConvType,
  elem,
  enableF16,
  gemmBody,
  gemmDecls,
  type GemmTile,
  narrow,
  ncdhwSpan,
  probeRanges,
  ranges,
  runBoxToF16,
  scratch,
  TILE_PROLOGUE,
  tileGrid,
  tileKey,
  tunedConv,
  typeKey,
  widen,
} from "./conv3d_gemm.ts";
import { type ElementWindow, planShrink, spanLimitBytes, windowOf } from "./launch_plan.ts";
import { checkConv3dGeometry, type Conv3dGeometry, volume } from "./conv3d_geometry.ts";
import { runFill } from "./copy.ts";
import { ELEMENTWISE_WORKGROUP, LINEAR_INDEX } from "./wgsl.ts";

/** Buffers of a weight-gradient convolution: x and dy are read, dw (overwritten) written. */
export interface Conv3dBackwardWeightBuffers {
  x: BufferRange;
  dy: BufferRange;
  dw: BufferRange;
}

interface Variant {
  /** Storage type of x and dy. */
  type: ConvType;
  /** Storage type of dw (f32 when an f16 gradient accumulates in an f32 window). */
  out: ConvType;
  tile: GemmTile;
  aVec: boolean;
  bPatch: boolean;
  outVec: boolean;
  split: boolean;
}

const PARAMS = /* wgsl */ `
struct P {
  tiles: u32, tiles_n: u32, m: u32, n: u32,
  k: u32, k_split: u32, splits: u32, accumulate: u32,
  in_d: u32, in_h: u32, in_w: u32, in_s: u32,
  out_h: u32, out_w: u32, out_s: u32, odc: u32,
  od0: u32, n0: u32, co0: u32, ci0: u32,
  cin: u32, cout: u32, kc: u32, dw_start: u32,
  x_base: u32, g_base: u32,
}
@group(1) @binding(0) var<uniform> p: P;
`;

function geometryConsts(g: Conv3dGeometry): string {
  const [, kh, kw] = g.kernel;
  const [sd, sh, sw] = g.stride;
  const [pd, ph, pw] = g.padding;
  return /* wgsl */ `
const SD = ${sd}i; const SH = ${sh}i; const SW = ${sw}i;
const PD = ${pd}i; const PH = ${ph}i; const PW = ${pw}i;
const KVOL = ${volume(g.kernel)}u; const KHW = ${kh * kw}u; const KWU = ${kw}u;
`;
}

// The reduction index r of this invocation's K slice entry, decomposed (once per slice).
const R_SETUP = /* wgsl */ `
    let r_ok = r < k_end;
    let r_nb = r / chunk_o;
    let r_sp = r % chunk_o;`;

function aLoader(v: Variant): { setup: string; load: string } {
  const t = v.tile;
  const setup = /* wgsl */ `
  let hw_o = p.out_h * p.out_w;
  let chunk_o = p.odc * hw_o;`;
  if (v.aVec) {
    const iters = Math.ceil((t.bk * t.bm) / (4 * t.threads));
    return {
      setup: `${setup}
  let a_r4 = (t % (BK / 4u)) * 4u;
  let a_m = t / (BK / 4u);`,
      load: /* wgsl */ `
    {
    let r = k0 + a_r4;
${R_SETUP}
    let row = (p.n0 + r_nb) * p.cout * p.out_s + p.co0 * p.out_s + p.od0 * hw_o + r_sp - p.g_base;
    for (var j = 0u; j < ${iters}u; j++) {
      let ml = a_m + j * (4u * THREADS / BK);
      if (ml < BM) {
        let m = tile_m + ml;
        var v = vec4<f32>(0.0);
        if (r_ok && m < p.m) { v = ${widen(v.type, "g[(row + m * p.out_s) / 4u]", true)}; }
        let col = ml / 4u;
        let lane = ml % 4u;
        As[a_r4 * AS + col][lane] = v.x;
        As[(a_r4 + 1u) * AS + col][lane] = v.y;
        As[(a_r4 + 2u) * AS + col][lane] = v.z;
        As[(a_r4 + 3u) * AS + col][lane] = v.w;
      }
    }
    }`,
    };
  }
  const iters = Math.ceil((t.bk * t.bm) / t.threads);
  return {
    setup: `${setup}
  let a_r = t % BK;
  let a_m = t / BK;`,
    load: /* wgsl */ `
    {
    let r = k0 + a_r;
${R_SETUP}
    let row = (p.n0 + r_nb) * p.cout * p.out_s + p.co0 * p.out_s + p.od0 * hw_o + r_sp - p.g_base;
    for (var j = 0u; j < ${iters}u; j++) {
      let ml = a_m + j * (THREADS / BK);
      if (ml < BM) {
        let m = tile_m + ml;
        var v = 0.0;
        if (r_ok && m < p.m) { v = ${widen(v.type, "g[row + m * p.out_s]", false)}; }
        As[a_r * AS + ml / 4u][ml % 4u] = v;
      }
    }
    }`,
  };
}

function bLoader(v: Variant): { setup: string; load: string } {
  const t = v.tile;
  const rSetup = /* wgsl */ `
    let r = k0 + b_r;
${R_SETUP}
    let r_od = p.od0 + r_sp / hw_o;
    let r_hw = r_sp % hw_o;
    let b_id = i32(r_od) * SD - PD;
    let b_ih = i32(r_hw / p.out_w) * SH - PH;
    let b_iw = i32(r_hw % p.out_w) * SW - PW;
    let xrow = (p.n0 + r_nb) * p.cin * p.in_s + p.ci0 * p.in_s - p.x_base;
    let in_hw = p.in_h * p.in_w;`;
  if (v.bPatch) {
    const iters = Math.ceil((t.bk * t.bn) / (4 * t.threads));
    return {
      setup: /* wgsl */ `
  let b_r = t % BK;
  let b_q = t / BK;`,
      load: /* wgsl */ `
    {
${rSetup}
    for (var j = 0u; j < ${iters}u; j++) {
      let q = b_q + j * (THREADS / BK);
      if (q < BN / 4u) {
        let n = tile_n + q * 4u;
        var v = vec4<f32>(0.0);
        if (r_ok && n < p.n) {
          let ci = n / KVOL;
          let kr = n % KVOL;
          let id = b_id + i32(kr / KHW);
          let ih = b_ih + i32((kr % KHW) / KWU);
          let iw = b_iw + i32(kr % KWU);
          if (u32(id) < p.in_d && u32(ih) < p.in_h) {
            v = ${
        widen(v.type, "x[(xrow + ci * p.in_s + u32(id) * in_hw + u32(ih) * p.in_w + u32(iw)) / 4u]", true)
      };
          }
        }
        Bs[b_r * BS + q] = v;
      }
    }
    }`,
    };
  }
  const iters = Math.ceil((t.bk * t.bn) / t.threads);
  return {
    setup: /* wgsl */ `
  let b_r = t % BK;
  let b_n = t / BK;`,
    load: /* wgsl */ `
    {
${rSetup}
    for (var j = 0u; j < ${iters}u; j++) {
      let nl = b_n + j * (THREADS / BK);
      if (nl < BN) {
        let n = tile_n + nl;
        var v = 0.0;
        if (r_ok && n < p.n) {
          let ci = n / KVOL;
          let kr = n % KVOL;
          let id = b_id + i32(kr / KHW);
          let ih = b_ih + i32((kr % KHW) / KWU);
          let iw = b_iw + i32(kr % KWU);
          if (u32(id) < p.in_d && u32(ih) < p.in_h && u32(iw) < p.in_w) {
            v = ${
      widen(v.type, "x[xrow + ci * p.in_s + u32(id) * in_hw + u32(ih) * p.in_w + u32(iw)]", false)
    };
          }
        }
        Bs[b_r * BS + nl / 4u][nl % 4u] = v;
      }
    }
    }`,
  };
}

function emitFn(v: Variant): string {
  if (v.split) {
    return /* wgsl */ `
fn emit(m: u32, n: u32, v: vec4<f32>) {
  if (m >= p.m) { return; }
  let base = (split_id * p.m + m) * p.n;
  for (var c = 0u; c < 4u; c++) {
    if (n + c < p.n) { out[base + n + c] = v[c]; }
  }
}`;
  }
  if (v.outVec) {
    return /* wgsl */ `
fn emit(m: u32, n: u32, v: vec4<f32>) {
  if (m >= p.m || n >= p.n) { return; }
  let i = (m * p.kc + n + p.dw_start) / 4u;
  var r = v;
  if (p.accumulate != 0u) { r += ${widen(v.out, "out[i]", true)}; }
  out[i] = ${narrow(v.out, "r", true)};
}`;
  }
  return /* wgsl */ `
fn emit(m: u32, n: u32, v: vec4<f32>) {
  if (m >= p.m) { return; }
  for (var c = 0u; c < 4u; c++) {
    if (n + c < p.n) {
      let i = m * p.kc + n + c + p.dw_start;
      var r = v[c];
      if (p.accumulate != 0u) { r += ${widen(v.out, "out[i]", false)}; }
      out[i] = ${narrow(v.out, "r", false)};
    }
  }
}`;
}

function source(g: Conv3dGeometry, v: Variant): string {
  const a = aLoader(v);
  const b = bLoader(v);
  return /* wgsl */ `${enableF16(v.type, v.out)}
@group(0) @binding(0) var<storage, read> x: array<${elem(v.type, v.bPatch)}>;
@group(0) @binding(1) var<storage, read> g: array<${elem(v.type, v.aVec)}>;
@group(0) @binding(2) var<storage, read_write> out: array<${v.split ? "f32" : elem(v.out, v.outVec)}>;
${PARAMS}
${geometryConsts(g)}
${gemmDecls(v.tile)}
var<private> split_id: u32;
${emitFn(v)}

@compute @workgroup_size(${v.tile.threads})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
${TILE_PROLOGUE}
  split_id = wid.z;
  let k_begin = wid.z * p.k_split;
  let k_end = min(p.k, k_begin + p.k_split);
${a.setup}
${b.setup}
${gemmBody(v.tile, a.load + b.load)}
}
`;
}

const finishSource = (out: ConvType) =>
  /* wgsl */ `${enableF16(out)}
@group(0) @binding(0) var<storage, read> part: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<${out}>;
${PARAMS}
${LINEAR_INDEX}
@compute @workgroup_size(${ELEMENTWISE_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let e = linear_workgroup(wid, nwg) * ${ELEMENTWISE_WORKGROUP}u + lid;
  let mn = p.m * p.n;
  if (e >= mn) { return; }
  var s = 0.0;
  for (var z = 0u; z < p.splits; z++) { s += part[z * mn + e]; }
  let i = (e / p.n) * p.kc + e % p.n + p.dw_start;
  if (p.accumulate != 0u) { s += ${widen(out, "out[i]", false)}; }
  out[i] = ${narrow(out, "s", false)};
}
`;

/**
 * Records dw = the weight gradient of conv3d for input x and output gradient dy (geometry `g`).
 * `dw` (cout·cin·kernel elements) is overwritten. `type` is the storage type of every buffer (f16 needs
 * shader-f16); arithmetic and accumulation are f32.
 */
export function runConv3dBackwardWeight(
  gpu: Gpu,
  g: Conv3dGeometry,
  b: Conv3dBackwardWeightBuffers,
  type: ConvType = "f32",
): void {
  checkConv3dGeometry("conv3d weight gradient", g);
  checkConvType(gpu, "conv3d weight gradient", type);
  checkAlignedRanges(gpu, "conv3d weight gradient", { ...b });
  const [D, H, W] = g.in;
  const [Do, Ho, Wo] = g.out;
  const [kD, , kW] = g.kernel;
  const kvol = volume(g.kernel);
  const kc = g.cin * kvol;
  const sx = D * H * W;
  const sy = Do * Ho * Wo;
  const hw = H * W;
  const hwo = Ho * Wo;
  const limit = Math.floor(spanLimitBytes(gpu.limits, 4) / 4);
  const tb = CONV_BYTES[type];
  const inRows = (d: number) => Math.min(D, (d - 1) * g.stride[0] + kD);
  const full = { n: Math.max(1, g.batch), co: g.cout, ci: g.cin, d: Do };
  const plan = (outBytes: number) =>
    planShrink("conv3d weight gradient", full, [
      {
        what: "the output gradient",
        span: (c) => ncdhwSpan(g.cout, Do, hwo, c.n, c.co, c.d),
        bytes: tb,
        shrink: ["n", "co", "d"],
      },
      {
        what: "the input",
        span: (c) => ncdhwSpan(g.cin, D, hw, c.n, c.ci, inRows(c.d)),
        bytes: tb,
        shrink: ["n", "ci", "d"],
      },
      {
        what: "the weight gradient",
        span: (c) => (c.co - 1) * kc + c.ci * kvol,
        bytes: outBytes,
        shrink: ["co", "ci"],
      },
    ], gpu.limits);
  let chunk = plan(tb);
  // an f16 gradient summed over several batch or depth chunks accumulates in an f32 window instead
  const f32Acc = type === "f16" && g.batch > 0 && (chunk.n < g.batch || chunk.d < Do);
  if (f32Acc) chunk = plan(4);
  const out: ConvType = f32Acc ? "f32" : type;
  const patch = kW % 4 === 0 && g.stride[2] === kW && g.padding[2] === 0 && W % 4 === 0;

  for (const [co0, co1] of ranges(g.cout, chunk.co)) {
    for (const [ci0, ci1] of ranges(g.cin, chunk.ci)) {
      const m = co1 - co0;
      const n = (ci1 - ci0) * kvol;
      const dwStartElem = co0 * kc + ci0 * kvol;
      const dwEndElem = (co1 - 1) * kc + ci1 * kvol;
      const dwOut = windowOf(gpu.limits, b.dw, tb, dwStartElem, dwEndElem);
      const dwWin: ElementWindow<BufferRange> = f32Acc
        ? accumulatorWindow(gpu, dwStartElem, dwEndElem)
        : dwOut;
      const dwStart = dwStartElem - dwWin.first;
      if (g.batch === 0) {
        // no samples: the gradient is zero (the window may include zeros of the previous chunk: harmless)
        runFill(gpu, dwWin.binding, dwWin.binding.size / 4, 0);
        continue;
      }
      let first = true;
      for (const [n0, n1] of ranges(g.batch, chunk.n)) {
        for (const [od0, od1] of ranges(Do, chunk.d)) {
          const odc = od1 - od0;
          const k = (n1 - n0) * odc * hwo;
          const idLo = Math.max(0, od0 * g.stride[0] - g.padding[0]);
          const idHi = Math.min(D, (od1 - 1) * g.stride[0] - g.padding[0] + kD);
          const xWin = idHi > idLo
            ? windowOf(
              gpu.limits,
              b.x,
              tb,
              n0 * g.cin * sx + ci0 * sx + idLo * hw,
              (n1 - 1) * g.cin * sx + (ci1 - 1) * sx + idHi * hw,
            )
            : windowOf(gpu.limits, b.x, tb, 0, 0);
          const gWin = windowOf(
            gpu.limits,
            b.dy,
            tb,
            n0 * g.cout * sy + co0 * sy + od0 * hwo,
            (n1 - 1) * g.cout * sy + (co1 - 1) * sy + od1 * hwo,
          );
          const aVec = (odc * hwo) % 4 === 0 && (od0 * hwo) % 4 === 0 && sy % 4 === 0;
          const outVec = kc % 4 === 0 && dwStart % 4 === 0 && n % 4 === 0;
          const choice = tunedConv(
            gpu,
            "conv3d_bwd_weight",
            `${g.kernel}/${g.stride}/${g.padding}:${+aVec}${+patch}${+outVec}${typeKey(type, out)}`,
            { m, n, k, fast: "n" },
            () => {
              const probe = probeRanges(gpu, { x: b.x, dy: b.dy, dw: b.dw });
              return {
                record: () => runConv3dBackwardWeight(gpu, g, probe.buffers, type),
                dispose: probe.dispose,
              };
            },
          );
          const tile = choice.tile;
          const tiles = Math.ceil(m / tile.bm) * Math.ceil(n / tile.bn);
          const split = chooseSplits(
            tiles,
            k,
            tile.bk,
            m * n,
            limit,
            gpu.limits.maxComputeWorkgroupsPerDimension,
            choice.splitTarget,
          );
          const variant: Variant = { type, out, tile, aVec, bPatch: patch, outVec, split: split.splits > 1 };
          const params = new Params()
            .u32(tiles).u32(Math.ceil(n / tile.bn)).u32(m).u32(n)
            .u32(k).u32(split.kSplit).u32(split.splits).u32(first ? 0 : 1)
            .u32(D).u32(H).u32(W).u32(sx)
            .u32(Ho).u32(Wo).u32(sy).u32(odc)
            .u32(od0).u32(n0).u32(co0).u32(ci0)
            .u32(g.cin).u32(g.cout).u32(kc).u32(dwStart)
            .u32(xWin.first).u32(gWin.first);
          const types = typeKey(type, out);
          const key = `conv3d_bwd_weight:${tileKey(tile)}:${g.kernel}/${g.stride}/${g.padding}:` +
            `${+variant.aVec}${+variant.bPatch}${+variant.outVec}${+variant.split}${types}`;
          const kernel = gpu.kernel(key, () => ({
            name: `conv3d_backward_weight[${tileKey(tile)},k${g.kernel.join("")},s${g.stride.join("")}` +
              `${variant.aVec ? ",vecA" : ""}${variant.bPatch ? ",vecB" : ""}${
                variant.outVec ? ",vecOut" : ""
              }` +
              `${variant.split ? ",split" : ""}${types ? `,${type}>${out}` : ""}]`,
            code: source(g, variant),
            storage: ["read", "read", "read_write"],
            uniform: true,
          }));
          const grid = tileGrid(gpu, tiles, split.splits);
          if (!variant.split) {
            gpu.dispatch(kernel, [xWin.binding, gWin.binding, dwWin.binding], params, grid);
          } else {
            const part = scratch(gpu, split.splits * m * n);
            gpu.dispatch(kernel, [xWin.binding, gWin.binding, part], params, grid);
            const finish = gpu.kernel(`conv3d_bwd_weight_finish${out === "f32" ? "" : `:${out}`}`, () => ({
              name: `conv3d_backward_weight_finish${out === "f32" ? "" : `[${out}]`}`,
              code: finishSource(out),
              storage: ["read", "read_write"],
              uniform: true,
            }));
            gpu.dispatch(finish, [part, dwWin.binding], params, Math.ceil((m * n) / ELEMENTWISE_WORKGROUP));
            gpu.pool.release(part.buffer);
          }
          first = false;
        }
      }
      if (f32Acc) {
        runBoxToF16(gpu, dwWin, dwOut, {
          start: dwStartElem,
          outer: 1,
          outerStride: 0,
          mid: m,
          midStride: kc,
          inner: n,
        });
        gpu.pool.release(dwWin.binding.buffer);
      }
    }
  }
}
