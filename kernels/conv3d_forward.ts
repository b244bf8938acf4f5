/**
 * conv3d forward as an implicit GEMM: y[n, co, o] = bias[co] + Σ_{ci, kd, kh, kw} x[n, ci, o·s − p + k] ·
 * w[co, ci, kd, kh, kw]. Layout NCDHW, weight [Cout, Cin, kD, kH, kW] (PyTorch), f32 or f16 storage (f32
 * arithmetic; conv3d_gemm.ts).
 *
 * GEMM: M = outputs (n, od, oh, ow) of the chunk, N = output channels, K = (ci, kd, kh, kw), so
 * A[m, k] = x gathered at the receptive field (zero in the padding) and B[k, n] = w[n, k] (row-major
 * weight rows are contiguous along K). Tiling: conv3d_gemm.ts (fast axis M: consecutive invocations
 * store consecutive output voxels of one channel). Kernel size, stride and padding are compile-time
 * constants, so the K index splits into (ci, kd, kh, kw) with multiplies, not divisions; each invocation
 * decomposes its output voxels once, before the K loop, and each K entry's tap once for all of them.
 *
 * Loads: A — each invocation owns one or more tile rows (output voxels; more when BM exceeds the
 * workgroup's invocations) and fills their K slice entries (conv3d_gemm.ts `rowCover`); vec4 along M for
 * pointwise convolutions (1³ kernel, stride 1, no padding, spatial size a multiple of 4) and vec4 along
 * K for patch embeddings (kW = sW a multiple of 4, no W padding, W a multiple of 4). B — K-contiguous
 * scalar or vec4 loads (vec4 when the weight row length Cin·kD·kH·kW is a multiple of 4).
 * Stores: vec4 along M when the output's spatial size is a multiple of 4.
 *
 * Limits: big tensors are split into chunks over batch, output channels, input channels (accumulating)
 * and output depth rows so that every binding window fits maxStorageBufferBindingSize; one H×W slice
 * per channel (times kD for the input) must fit a binding. Small-M, long-K problems (deep layers with 5³
 * outputs) use split-K. An f16 output whose input channels are chunked accumulates in f32
 * (conv3d_gemm.ts `accumulatorWindow`).
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
import { type ElementWindow, planShrink, spanLimitBytes, windowOf } from "./launch_plan.ts";
import { checkConv3dGeometry, type Conv3dGeometry, volume } from "./conv3d_geometry.ts";
import { ELEMENTWISE_WORKGROUP, LINEAR_INDEX } from "./wgsl.ts";

/** Buffers of a forward convolution (contiguous NCDHW, all of one storage type). */
export interface Conv3dForwardBuffers {
  x: BufferRange;
  w: BufferRange;
  bias?: BufferRange;
  y: BufferRange;
}

type ALoad = "scalar" | "pointwise" | "patch";

interface Variant {
  /** Storage type of x, w and bias. */
  type: ConvType;
  /** Storage type of y (f32 when an f16 output accumulates in an f32 window). */
  out: ConvType;
  tile: GemmTile;
  a: ALoad;
  bVec: boolean;
  yVec: boolean;
  split: boolean;
}

const params = (type: ConvType) => /* wgsl */ `
struct P {
  tiles: u32, tiles_n: u32, m: u32, n: u32,
  k: u32, k_split: u32, splits: u32, accumulate: u32,
  in_d: u32, in_h: u32, in_w: u32, in_s: u32,
  out_h: u32, out_w: u32, out_s: u32, odc: u32,
  od0: u32, n0: u32, co0: u32, ci0: u32,
  cin: u32, cout: u32, kc: u32, has_bias: u32,
  x_base: u32, w_base: u32, b_base: u32, y_base: u32,
}
@group(1) @binding(0) var<uniform> p: P;

// index of output (m, n) of the chunk in the bound window of y
fn y_index(m: u32, n: u32) -> u32 {
  let hw = p.out_h * p.out_w;
  let chunk = p.odc * hw;
  return (p.n0 + m / chunk) * p.cout * p.out_s + (p.co0 + n) * p.out_s + p.od0 * hw + m % chunk - p.y_base;
}

fn bias_of(n: u32) -> f32 {
  if (p.has_bias != 0u && p.accumulate == 0u) { return ${widen(type, "bias[p.co0 + n - p.b_base]", false)}; }
  return 0.0;
}
`;

function geometryConsts(g: Conv3dGeometry): string {
  const [kd, kh, kw] = g.kernel;
  const [sd, sh, sw] = g.stride;
  const [pd, ph, pw] = g.padding;
  return /* wgsl */ `
const SD = ${sd}i; const SH = ${sh}i; const SW = ${sw}i;
const PD = ${pd}i; const PH = ${ph}i; const PW = ${pw}i;
const KVOL = ${kd * kh * kw}u; const KHW = ${kh * kw}u; const KWU = ${kw}u;
`;
}

// Output voxel of A row `r` of this invocation, decomposed once before the K loop.
function aRowSetup(r: number, local: string): string {
  return /* wgsl */ `
  let a_m${r} = ${local};
  let am${r} = tile_m + a_m${r};
  let a_ok${r} = am${r} < p.m;
  let a_sp${r} = am${r} % chunk_o;
  let a_hw${r} = a_sp${r} % hw_o;
  let a_id${r} = i32(p.od0 + a_sp${r} / hw_o) * SD - PD;
  let a_ih${r} = i32(a_hw${r} / p.out_w) * SH - PH;
  let a_iw${r} = i32(a_hw${r} % p.out_w) * SW - PW;
  let a_row${r} = (p.n0 + am${r} / chunk_o) * p.cin * p.in_s + p.ci0 * p.in_s - p.x_base;`;
}

const A_COMMON = /* wgsl */ `
  let hw_o = p.out_h * p.out_w;
  let chunk_o = p.odc * hw_o;
  let in_hw = p.in_h * p.in_w;`;

// The K entry's input channel and kernel tap (shared by all rows of the invocation).
const K_TAP = /* wgsl */ `
        let k_ok = k < k_end;
        let ci = k / KVOL;
        let kr = k % KVOL;
        let kd = i32(kr / KHW);
        let kh = i32((kr % KHW) / KWU);
        let kw = i32(kr % KWU);
        let koff = ci * p.in_s;`;

function aLoader(v: Variant): { setup: string; load: string } {
  const t = v.tile;
  if (v.a === "pointwise") {
    // vec4 along M: rows are quads of 4 consecutive output voxels (same batch item, aligned)
    const c = rowCover(t, t.bm / 4, t.bk);
    const rows = coverRows(c).map((r) => /* wgsl */ `
  let a_q${r} = ${coverRow(c, r)};
  let am${r} = tile_m + a_q${r} * 4u;
  let a_ok${r} = am${r} < p.m;
  let a_row${r} = (p.n0 + am${r} / a_chunk) * p.cin * p.in_s + p.ci0 * p.in_s + p.od0 * hw_o + am${r} % a_chunk -
    p.x_base;`);
    const loads = coverRows(c).map((r) => /* wgsl */ `
        {
          var v = vec4<f32>(0.0);
          if (a_ok${r} && k < k_end) { v = ${widen(v.type, `x[(a_row${r} + k * p.in_s) / 4u]`, true)}; }
          As[kl * AS + a_q${r}] = v;
        }`);
    return {
      setup: /* wgsl */ `
  let hw_o = p.out_h * p.out_w;
  let a_chunk = p.odc * hw_o;
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
  if (v.a === "patch") {
    // vec4 along K: four consecutive kW taps of one row of the patch
    const c = rowCover(t, t.bm, t.bk / 4);
    const loads = coverRows(c).map((r) => /* wgsl */ `
        {
          var v = vec4<f32>(0.0);
          let id = a_id${r} + kd;
          let ih = a_ih${r} + kh;
          if (a_ok${r} && k_ok && u32(id) < p.in_d && u32(ih) < p.in_h) {
            v = ${
      widen(
        v.type,
        `x[(a_row${r} + koff + u32(id) * in_hw + u32(ih) * p.in_w + u32(a_iw${r} + kw)) / 4u]`,
        true,
      )
    };
          }
          let col = a_m${r} / 4u;
          let lane = a_m${r} % 4u;
          As[kl * AS + col][lane] = v.x;
          As[(kl + 1u) * AS + col][lane] = v.y;
          As[(kl + 2u) * AS + col][lane] = v.z;
          As[(kl + 3u) * AS + col][lane] = v.w;
        }`);
    return {
      setup: `${A_COMMON}
  let a_k = t / ${c.units}u;${coverRows(c).map((r) => aRowSetup(r, coverRow(c, r))).join("")}`,
      load: /* wgsl */ `
    for (var j = 0u; j < ${c.kIters}u; j++) {
      let q = a_k + j * ${c.kStride}u;
      if (q < BK / 4u) {
        let kl = q * 4u;
        let k = k0 + kl;${K_TAP}${loads.join("")}
      }
    }`,
    };
  }
  const c = rowCover(t, t.bm, t.bk);
  const loads = coverRows(c).map((r) => /* wgsl */ `
        {
          var v = 0.0;
          let id = a_id${r} + kd;
          let ih = a_ih${r} + kh;
          let iw = a_iw${r} + kw;
          if (a_ok${r} && k_ok && u32(id) < p.in_d && u32(ih) < p.in_h && u32(iw) < p.in_w) {
            v = ${widen(v.type, `x[a_row${r} + koff + u32(id) * in_hw + u32(ih) * p.in_w + u32(iw)]`, false)};
          }
          As[kl * AS + a_m${r} / 4u][a_m${r} % 4u] = v;
        }`);
  return {
    setup: `${A_COMMON}
  let a_k = t / ${c.units}u;${coverRows(c).map((r) => aRowSetup(r, coverRow(c, r))).join("")}`,
    load: /* wgsl */ `
    for (var j = 0u; j < ${c.kIters}u; j++) {
      let kl = a_k + j * ${c.kStride}u;
      if (kl < BK) {
        let k = k0 + kl;${K_TAP}${loads.join("")}
      }
    }`,
  };
}

function bLoader(v: Variant): { setup: string; load: string } {
  const t = v.tile;
  if (v.bVec) {
    const iters = Math.ceil((t.bk * t.bn) / (4 * t.threads));
    return {
      setup: /* wgsl */ `
  let b_k4 = (t % (BK / 4u)) * 4u;
  let b_n = t / (BK / 4u);
  let b_row = p.ci0 * KVOL - p.w_base;`,
      load: /* wgsl */ `
    for (var j = 0u; j < ${iters}u; j++) {
      let nl = b_n + j * (4u * THREADS / BK);
      if (nl < BN) {
        let k = k0 + b_k4;
        let n = tile_n + nl;
        var v = vec4<f32>(0.0);
        if (k < k_end && n < p.n) { v = ${widen(v.type, "w[((p.co0 + n) * p.kc + b_row + k) / 4u]", true)}; }
        let col = nl / 4u;
        let lane = nl % 4u;
        Bs[b_k4 * BS + col][lane] = v.x;
        Bs[(b_k4 + 1u) * BS + col][lane] = v.y;
        Bs[(b_k4 + 2u) * BS + col][lane] = v.z;
        Bs[(b_k4 + 3u) * BS + col][lane] = v.w;
      }
    }`,
    };
  }
  const iters = Math.ceil((t.bk * t.bn) / t.threads);
  return {
    setup: /* wgsl */ `
  let b_k = t % BK;
  let b_n = t / BK;
  let b_row = p.ci0 * KVOL - p.w_base;`,
    load: /* wgsl */ `
    for (var j = 0u; j < ${iters}u; j++) {
      let nl = b_n + j * (THREADS / BK);
      if (nl < BN) {
        let k = k0 + b_k;
        let n = tile_n + nl;
        var v = 0.0;
        if (k < k_end && n < p.n) { v = ${widen(v.type, "w[(p.co0 + n) * p.kc + b_row + k]", false)}; }
        Bs[b_k * BS + nl / 4u][nl % 4u] = v;
      }
    }`,
  };
}

function emitFn(v: Variant): string {
  return gemmEmit(
    { buffer: "y", index: "y_index", rows: "p.m", splitBase: "split_id * p.m * p.n + n * p.m" },
    v,
  );
}

function source(g: Conv3dGeometry, v: Variant): string {
  const a = aLoader(v);
  const b = bLoader(v);
  const yType = v.split ? "f32" : elem(v.out, v.yVec);
  return /* wgsl */ `${enableF16(v.type, v.out)}
@group(0) @binding(0) var<storage, read> x: array<${elem(v.type, v.a !== "scalar")}>;
@group(0) @binding(1) var<storage, read> w: array<${elem(v.type, v.bVec)}>;
@group(0) @binding(2) var<storage, read> bias: array<${v.type}>;
@group(0) @binding(3) var<storage, read_write> y: array<${yType}>;
${params(v.type)}
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

const finishSource = (type: ConvType, out: ConvType) =>
  /* wgsl */ `${enableF16(type, out)}
@group(0) @binding(0) var<storage, read> part: array<f32>;
@group(0) @binding(1) var<storage, read> bias: array<${type}>;
@group(0) @binding(2) var<storage, read_write> y: array<${out}>;
${params(type)}
${LINEAR_INDEX}
@compute @workgroup_size(${ELEMENTWISE_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let e = linear_workgroup(wid, nwg) * ${ELEMENTWISE_WORKGROUP}u + lid;
  let mn = p.m * p.n;
  if (e >= mn) { return; }
  var s = 0.0;
  for (var z = 0u; z < p.splits; z++) { s += part[z * mn + e]; }
  let i = y_index(e % p.m, e / p.m);
  var r = s + bias_of(e / p.m);
  if (p.accumulate != 0u) { r += ${widen(out, "y[i]", false)}; }
  y[i] = ${narrow(out, "r", false)};
}
`;

/**
 * Records y = conv3d(x, w) + bias for the geometry `g` (see the header comment for tiling and chunking).
 * `y` must hold batch·cout·out elements. `type` is the storage type of every buffer (f16 needs
 * shader-f16); arithmetic and accumulation are f32.
 */
export function runConv3dForward(
  gpu: Gpu,
  g: Conv3dGeometry,
  b: Conv3dForwardBuffers,
  type: ConvType = "f32",
): void {
  checkConv3dGeometry("conv3d", g);
  checkConvType(gpu, "conv3d", type);
  checkAlignedRanges(gpu, "conv3d", { ...b });
  if (g.batch === 0) return;
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
  const plan = (outBytes: number) =>
    planShrink("conv3d", { n: g.batch, co: g.cout, ci: g.cin, d: Do }, [
      {
        what: "the input",
        span: (c) => ncdhwSpan(g.cin, D, hw, c.n, c.ci, inRows(c.d)),
        bytes: tb,
        shrink: ["n", "ci", "d"],
      },
      {
        what: "the output",
        span: (c) => ncdhwSpan(g.cout, Do, hwo, c.n, c.co, c.d),
        bytes: outBytes,
        shrink: ["n", "co", "d"],
      },
      { what: "the weight", span: (c) => (c.co - 1) * kc + c.ci * kvol, bytes: tb, shrink: ["co", "ci"] },
      { what: "the bias", span: (c) => c.co, bytes: tb, shrink: ["co"] },
    ], gpu.limits);
  let chunk = plan(tb);
  // an f16 output summed over several input-channel chunks accumulates in an f32 window instead
  const f32Acc = type === "f16" && chunk.ci < g.cin;
  if (f32Acc) chunk = plan(4);
  const out: ConvType = f32Acc ? "f32" : type;
  const pointwise = kvol === 1 && g.stride.every((s) => s === 1) && g.padding.every((p) => p === 0) &&
    sx % 4 === 0;
  const patch = kW % 4 === 0 && g.stride[2] === kW && g.padding[2] === 0 && W % 4 === 0;

  for (const [n0, n1] of ranges(g.batch, chunk.n)) {
    for (const [co0, co1] of ranges(g.cout, chunk.co)) {
      for (const [od0, od1] of ranges(Do, chunk.d)) {
        const idLo = Math.max(0, od0 * g.stride[0] - g.padding[0]);
        const idHi = Math.min(D, (od1 - 1) * g.stride[0] - g.padding[0] + kD);
        const odc = od1 - od0;
        const m = (n1 - n0) * odc * hwo;
        const n = co1 - co0;
        const yStart = n0 * g.cout * sy + co0 * sy + od0 * hwo;
        const yEnd = (n1 - 1) * g.cout * sy + (co1 - 1) * sy + od1 * hwo;
        const yOut = windowOf(gpu.limits, b.y, tb, yStart, yEnd);
        const yWin: ElementWindow<BufferRange> = f32Acc ? accumulatorWindow(gpu, yStart, yEnd) : yOut;
        const bWin = b.bias ? windowOf(gpu.limits, b.bias, tb, co0, co1) : undefined;
        const rowsAligned = (odc * hwo) % 4 === 0 && (od0 * hwo) % 4 === 0;
        for (const [ci0, ci1] of ranges(g.cin, chunk.ci)) {
          const k = (ci1 - ci0) * kvol;
          const xWin = idHi > idLo
            ? windowOf(
              gpu.limits,
              b.x,
              tb,
              n0 * g.cin * sx + ci0 * sx + idLo * hw,
              (n1 - 1) * g.cin * sx + (ci1 - 1) * sx + idHi * hw,
            )
            : windowOf(gpu.limits, b.x, tb, 0, 0);
          const wWin = windowOf(gpu.limits, b.w, tb, co0 * kc + ci0 * kvol, (co1 - 1) * kc + ci1 * kvol);
          const a: ALoad = pointwise && rowsAligned ? "pointwise" : patch ? "patch" : "scalar";
          const bVec = kc % 4 === 0 && (ci0 * kvol) % 4 === 0 && k % 4 === 0;
          const yVec = rowsAligned && sy % 4 === 0;
          const choice = tunedConv(
            gpu,
            "conv3d_fwd",
            `${g.kernel}/${g.stride}/${g.padding}:${a}${+bVec}${+yVec}${typeKey(type, out)}`,
            { m, n, k, fast: "m" },
            () => {
              const probe = probeRanges(gpu, { x: b.x, w: b.w, bias: b.bias, y: b.y });
              return { record: () => runConv3dForward(gpu, g, probe.buffers, type), dispose: probe.dispose };
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
          const variant: Variant = { type, out, tile, a, bVec, yVec, split: split.splits > 1 };
          const accumulate = ci0 > 0 ? 1 : 0;
          const params = new Params()
            .u32(tiles).u32(Math.ceil(n / tile.bn)).u32(m).u32(n)
            .u32(k).u32(split.kSplit).u32(split.splits).u32(accumulate)
            .u32(D).u32(H).u32(W).u32(sx)
            .u32(Ho).u32(Wo).u32(sy).u32(odc)
            .u32(od0).u32(n0).u32(co0).u32(ci0)
            .u32(g.cin).u32(g.cout).u32(kc).u32(bWin ? 1 : 0)
            .u32(xWin.first).u32(wWin.first).u32(bWin?.first ?? 0).u32(yWin.first);
          const types = typeKey(type, out);
          const key = `conv3d_fwd:${tileKey(tile)}:${g.kernel}/${g.stride}/${g.padding}:` +
            `${variant.a}${+variant.bVec}${+variant.yVec}${+variant.split}${types}`;
          const kernel = gpu.kernel(key, () => ({
            name: `conv3d_forward[${tileKey(tile)},k${g.kernel.join("")},s${g.stride.join("")},${variant.a}` +
              `${variant.bVec ? ",vecB" : ""}${variant.yVec ? ",vecY" : ""}${variant.split ? ",split" : ""}` +
              `${types ? `,${type}>${out}` : ""}]`,
            code: source(g, variant),
            storage: ["read", "read", "read", "read_write"],
            uniform: true,
          }));
          const biasBinding = bWin?.binding ?? wWin.binding;
          const grid = tileGrid(gpu, tiles, split.splits);
          if (!variant.split) {
            gpu.dispatch(kernel, [xWin.binding, wWin.binding, biasBinding, yWin.binding], params, grid);
            continue;
          }
          const part = scratch(gpu, split.splits * m * n);
          gpu.dispatch(kernel, [xWin.binding, wWin.binding, biasBinding, part], params, grid);
          const finish = gpu.kernel(`conv3d_fwd_finish${types}`, () => ({
            name: `conv3d_forward_finish${types ? `[${type}>${out}]` : ""}`,
            code: finishSource(type, out),
            storage: ["read", "read", "read_write"],
            uniform: true,
          }));
          gpu.dispatch(
            finish,
            [part, biasBinding, yWin.binding],
            params,
            Math.ceil((m * n) / ELEMENTWISE_WORKGROUP),
          );
          gpu.pool.release(part.buffer);
        }
        if (f32Acc) {
          runBoxToF16(gpu, yWin, yOut, {
            start: yStart,
            outer: n1 - n0,
            outerStride: g.cout * sy,
            mid: n,
            midStride: sy,
            inner: odc * hwo,
          });
          gpu.pool.release(yWin.binding.buffer);
        }
      }
    }
  }
}
