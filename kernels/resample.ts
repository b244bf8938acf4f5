/**
 * Resampling of NCDHW volumes to an arbitrary output size (up or down): nearest (PyTorch's
 * `mode="nearest"`: src = min(⌊dst·in/out⌋, in − 1)) and trilinear (`align_corners` False: src =
 * max((dst + ½)·in/out − ½, 0); True: src = dst·(in − 1)/(out − 1)), as `F.interpolate` with `size`.
 *
 * The per-axis index arithmetic runs on the host, in the float32 steps PyTorch uses, into one small
 * table per call (u32 words, bound whole): for every output index (i0, i1, λ₁) with i1 = min(i0 + 1,
 * in − 1), and for every input index the range [olo, ohi) of outputs that read it.
 * Forward: one invocation per output voxel, Σ over the 8 corners (1 for nearest) with weights
 * (1 − λ₁, λ₁) per axis. Backward: one invocation per input voxel gathers over its output ranges (no
 * atomics; each output contributes (i0 = d ? 1 − λ₁ : 0) + (i1 = d ? λ₁ : 0) per axis).
 * Chunks: runs of output (input) voxels whose input (output) depth slices fit a binding; one depth slice
 * of the other side, and the table, must fit. f32 or f16 storage, f32 arithmetic.
 */
import type { BufferRange, Gpu } from "../core/gpu/mod.ts";
import { type OperandArg, type OperandSpec, runPointwise } from "./chunked.ts";

/** Resampling mode. */
export type ResampleMode = "nearest" | "linear";

/** Index tables of one axis. */
export interface AxisTable {
  inSize: number;
  outSize: number;
  i0: Int32Array;
  i1: Int32Array;
  /** Weight of i1 (float32, as PyTorch computes it). */
  lambda: Float32Array;
  /** First output reading each input index. */
  olo: Int32Array;
  /** One past the last output reading each input index. */
  ohi: Int32Array;
}

function preimage(t: Omit<AxisTable, "olo" | "ohi">): AxisTable {
  const olo = new Int32Array(t.inSize);
  const ohi = new Int32Array(t.inSize);
  for (let d = 0; d < t.inSize; d++) {
    let lo = 0;
    while (lo < t.outSize && t.i1[lo] < d) lo++;
    let hi = lo;
    while (hi < t.outSize && t.i0[hi] <= d) hi++;
    olo[d] = lo;
    ohi[d] = hi;
  }
  return { ...t, olo, ohi };
}

/** Nearest-neighbour table (PyTorch's legacy `nearest`, with its exact special cases). */
export function nearestAxis(inSize: number, outSize: number): AxisTable {
  const i0 = new Int32Array(outSize);
  const scale = Math.fround(inSize / outSize);
  for (let o = 0; o < outSize; o++) {
    if (outSize === inSize) i0[o] = o;
    else if (outSize === 2 * inSize) i0[o] = o >> 1;
    else i0[o] = Math.min(Math.floor(Math.fround(o * scale)), inSize - 1);
  }
  return preimage({ inSize, outSize, i0, i1: i0.slice(), lambda: new Float32Array(outSize) });
}

/** Linear-interpolation table of one axis (trilinear = three of them). */
export function linearAxis(inSize: number, outSize: number, alignCorners: boolean): AxisTable {
  const i0 = new Int32Array(outSize);
  const i1 = new Int32Array(outSize);
  const lambda = new Float32Array(outSize);
  const scale = alignCorners
    ? (outSize > 1 ? Math.fround((inSize - 1) / (outSize - 1)) : 0)
    : Math.fround(inSize / outSize);
  for (let o = 0; o < outSize; o++) {
    // PyTorch: float scale times (double) dst + 0.5, rounded once to float
    const src = alignCorners ? Math.fround(scale * o) : Math.max(Math.fround(scale * (o + 0.5) - 0.5), 0);
    const lo = Math.min(Math.floor(src), inSize - 1);
    i0[o] = lo;
    i1[o] = lo < inSize - 1 ? lo + 1 : lo;
    lambda[o] = Math.min(Math.max(Math.fround(src - lo), 0), 1);
  }
  return preimage({ inSize, outSize, i0, i1, lambda });
}

/** The three axis tables packed into u32 words, with the word offsets the kernels read. */
export interface PackedTables {
  words: Uint32Array;
  /** [fwd d, fwd h, fwd w, bwd d, bwd h, bwd w] */
  offsets: number[];
}

/** Packs tables: per axis, (i0, i1, λ bits) per output, then (olo, ohi) per input. */
export function packTables(axes: readonly AxisTable[]): PackedTables {
  const size = axes.reduce((s, a) => s + 3 * a.outSize + 2 * a.inSize, 0);
  const words = new Uint32Array(Math.max(size, 4));
  const lambdaBits = new Uint32Array(1);
  const lambdaF = new Float32Array(lambdaBits.buffer);
  const fwd: number[] = [];
  const bwd: number[] = [];
  let at = 0;
  for (const a of axes) {
    fwd.push(at);
    for (let o = 0; o < a.outSize; o++) {
      lambdaF[0] = a.lambda[o];
      words.set([a.i0[o], a.i1[o], lambdaBits[0]], at);
      at += 3;
    }
  }
  for (const a of axes) {
    bwd.push(at);
    for (let d = 0; d < a.inSize; d++) {
      words.set([a.olo[d], a.ohi[d]], at);
      at += 2;
    }
  }
  return { words, offsets: [...fwd, ...bwd] };
}

/** Sizes of a resampling: N·C, input and output spatial sizes (D, H, W). */
export interface ResampleShape {
  nc: number;
  in: [number, number, number];
  out: [number, number, number];
}

const UINTS = ["d", "h", "w", "od", "oh", "ow", "fd", "fh", "fw", "bd", "bh", "bw"];

const TABLE_FNS = /* wgsl */ `
fn fwd_entry(off: u32, i: u32) -> vec3<u32> {
  let b = off + 3u * i;
  return vec3<u32>(tb[b], tb[b + 1u], tb[b + 2u]);
}
fn bwd_entry(off: u32, i: u32) -> vec2<u32> {
  let b = off + 2u * i;
  return vec2<u32>(tb[b], tb[b + 1u]);
}
fn corner_weight(e: vec3<u32>, i: u32) -> f32 {
  let l = bitcast<f32>(e.z);
  return select(0.0, 1.0 - l, e.x == i) + select(0.0, l, e.y == i);
}`;

function scalars(s: ResampleShape, t: PackedTables): number[] {
  return [...s.in, ...s.out, ...t.offsets];
}

/**
 * Records the resampling of `x` [nc, ...in] into `out` [nc, ...out] with the packed `tables` (a buffer
 * holding `packed.words`).
 */
export function runResample(
  gpu: Gpu,
  type: "f32" | "f16",
  mode: ResampleMode,
  s: ResampleShape,
  axes: readonly AxisTable[],
  packed: PackedTables,
  tables: BufferRange,
  x: BufferRange,
  out: BufferRange,
): void {
  const [d, h, w] = s.in;
  const [od, oh, ow] = s.out;
  const n = s.nc * od * oh * ow;
  if (n === 0) return;
  const [ad] = axes;
  const span = (g0: number, g1: number): [number, number] => {
    const at = (g: number) => [Math.floor(g / (od * oh * ow)), Math.floor(g / (oh * ow)) % od];
    const [nc0, z0] = at(g0);
    const [nc1, z1] = at(g1 - 1);
    return [(nc0 * d + ad.i0[z0]) * h * w, (nc1 * d + ad.i1[z1] + 1) * h * w];
  };
  const operands: OperandSpec[] = [
    { name: "tb", type: "u32", index: "whole" },
    { name: "x", type, index: "custom" },
    { name: "o", type, write: true, index: "same" },
  ];
  const args: OperandArg[] = [{ range: tables }, { range: x, span }, { range: out }];
  const decompose = `let xo = g % p.u_ow;
  let yo = (g / p.u_ow) % p.u_oh;
  let zo = (g / (p.u_ow * p.u_oh)) % p.u_od;
  let nc = g / (p.u_ow * p.u_oh * p.u_od);
  let ed = fwd_entry(p.u_fd, zo);
  let eh = fwd_entry(p.u_fh, yo);
  let ew = fwd_entry(p.u_fw, xo);`;
  runPointwise(
    gpu,
    {
      key: `resample:${mode}:${type}`,
      name: `resample_${mode}[${type}]`,
      operands,
      uints: UINTS,
      helpers: TABLE_FNS,
      body: mode === "nearest"
        ? `${decompose}
  o[ix_o(g)] = x[ix_x(((nc * p.u_d + ed.x) * p.u_h + eh.x) * p.u_w + ew.x)];`
        : `${decompose}
  let wd = vec2<f32>(1.0 - bitcast<f32>(ed.z), bitcast<f32>(ed.z));
  let wh = vec2<f32>(1.0 - bitcast<f32>(eh.z), bitcast<f32>(eh.z));
  let ww = vec2<f32>(1.0 - bitcast<f32>(ew.z), bitcast<f32>(ew.z));
  let id = vec2<u32>(ed.x, ed.y);
  let ih = vec2<u32>(eh.x, eh.y);
  let iw = vec2<u32>(ew.x, ew.y);
  var acc = 0.0;
  for (var a = 0u; a < 2u; a++) {
    var acc_h = 0.0;
    for (var b = 0u; b < 2u; b++) {
      let row = ((nc * p.u_d + id[a]) * p.u_h + ih[b]) * p.u_w;
      acc_h += wh[b] * (ww[0] * f32(x[ix_x(row + iw[0])]) + ww[1] * f32(x[ix_x(row + iw[1])]));
    }
    acc += wd[a] * acc_h;
  }
  o[ix_o(g)] = ${type}(acc);`,
    },
    n,
    args,
    scalars(s, packed),
  );
}

/** Records the input gradient of {@link runResample}: dx [nc, ...in] from gy [nc, ...out]. */
export function runResampleGrad(
  gpu: Gpu,
  type: "f32" | "f16",
  mode: ResampleMode,
  s: ResampleShape,
  axes: readonly AxisTable[],
  packed: PackedTables,
  tables: BufferRange,
  gy: BufferRange,
  dx: BufferRange,
): void {
  const [d, h, w] = s.in;
  const [od, oh, ow] = s.out;
  const n = s.nc * d * h * w;
  if (n === 0) return;
  const [ad] = axes;
  const span = (g0: number, g1: number): [number, number] => {
    const at = (g: number) => [Math.floor(g / (d * h * w)), Math.floor(g / (h * w)) % d];
    const [nc0, z0] = at(g0);
    const [nc1, z1] = at(g1 - 1);
    const lo = (nc0 * od + Math.min(ad.olo[z0], od - 1)) * oh * ow;
    const hi = (nc1 * od + Math.max(ad.ohi[z1], 1)) * oh * ow;
    return [lo, Math.max(hi, lo + 1)];
  };
  const weight = (axis: string, e: string, i: string) =>
    mode === "nearest" ? "1.0" : `corner_weight(fwd_entry(p.u_f${axis}, ${e}), ${i})`;
  runPointwise(
    gpu,
    {
      key: `resamplegrad:${mode}:${type}`,
      name: `resample_${mode}_grad[${type}]`,
      operands: [
        { name: "tb", type: "u32", index: "whole" },
        { name: "gy", type, index: "custom" },
        { name: "dx", type, write: true, index: "same" },
      ],
      uints: UINTS,
      helpers: TABLE_FNS,
      body: `let xi = g % p.u_w;
  let yi = (g / p.u_w) % p.u_h;
  let zi = (g / (p.u_w * p.u_h)) % p.u_d;
  let nc = g / (p.u_w * p.u_h * p.u_d);
  let rd = bwd_entry(p.u_bd, zi);
  let rh = bwd_entry(p.u_bh, yi);
  let rw = bwd_entry(p.u_bw, xi);
  var acc = 0.0;
  for (var zo = rd.x; zo < rd.y; zo++) {
    let wd = ${weight("d", "zo", "zi")};
    var acc_h = 0.0;
    for (var yo = rh.x; yo < rh.y; yo++) {
      let wh = ${weight("h", "yo", "yi")};
      let row = ((nc * p.u_od + zo) * p.u_oh + yo) * p.u_ow;
      var acc_w = 0.0;
      for (var xo = rw.x; xo < rw.y; xo++) {
        acc_w += ${weight("w", "xo", "xi")} * f32(gy[ix_gy(row + xo)]);
      }
      acc_h += wh * acc_w;
    }
    acc += wd * acc_h;
  }
  dx[ix_dx(g)] = ${type}(acc);`,
    },
    n,
    [{ range: tables }, { range: gy, span }, { range: dx }],
    scalars(s, packed),
  );
}
