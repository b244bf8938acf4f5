/**
 * Launchers of the augmentation kernels (kernels/augment/*.wgsl): spatial resampling, mirroring, Philox
 * noise, separable Gaussian blur, per-sample statistics, intensity transforms and low-resolution
 * simulation. Each launch works on one sample of a batch: operands are whole bindings and the sample
 * starts at an element offset inside them, so the samples of a batch share one tensor without the
 * binding-offset alignment. The random parameters are the caller's (drawn on the host); only the per-voxel
 * noise is drawn in the kernel. Limits: every binding must fit `maxStorageBufferBindingSize` (callers split:
 * core/train/gpu_augment.ts binds each sample's part of a batch and resamples large regions by slabs of
 * D planes, `SpatialArgs.rows`); element offsets and counts below 2³².
 *
 * @module
 */
import { type BufferRange, type Gpu, Params } from "../core/gpu/mod.ts";
import blurSource from "./augment/blur.wgsl" with { type: "text" };
import intensitySource from "./augment/intensity.wgsl" with { type: "text" };
import lowresSource from "./augment/lowres.wgsl" with { type: "text" };
import mirrorSource from "./augment/mirror.wgsl" with { type: "text" };
import noiseSource from "./augment/noise.wgsl" with { type: "text" };
import spatialSource from "./augment/spatial.wgsl" with { type: "text" };
import statsSource from "./augment/stats.wgsl" with { type: "text" };
import philoxCore from "./philox_core.wgsl" with { type: "text" };
import { LINEAR_INDEX, specialize } from "./wgsl.ts";

const WG = 256;
type Shape3 = readonly [number, number, number];

const count = (s: Shape3) => s[0] * s[1] * s[2];

/** Interpolation of the spatial kernel (masks use "nearest"). */
export type SpatialInterp = "nearest" | "linear" | "cubic";

/** Values outside the source: zero, or the nearest edge voxel. */
export type SpatialPad = "zero" | "border";

/** One sample of a spatial launch. */
export interface SpatialArgs {
  /** Row-major 3×3 matrix from patch offsets to source offsets. */
  matrix: readonly number[];
  /** Source coordinates (continuous, in the source region) of the patch centre. */
  centre: readonly number[];
  /** Shape of the source region `[D, H, W]`. */
  srcShape: Shape3;
  /** Element offset of the region in its binding. */
  srcBase: number;
  /** Patch shape. */
  patch: Shape3;
  /** Element offset of the patch in the output binding. */
  dstBase: number;
  /**
   * Only the planes `[first, end)` along D of the patch (a slab; default all): the launch writes them at
   * `dstBase + first·H·W`, reading a source region that need only cover them.
   */
  rows?: readonly [number, number];
}

const SAMPLE: Record<SpatialInterp, string> = {
  nearest: `return load_src(vec3<i32>(floor(s + vec3<f32>(0.5))));`,
  linear: `let b = floor(s);
  let f = s - b;
  let i = vec3<i32>(b);
  var acc = 0.0;
  for (var a = 0; a < 2; a++) {
    let wd = select(1.0 - f.x, f.x, a == 1);
    var acc_h = 0.0;
    for (var c = 0; c < 2; c++) {
      let wh = select(1.0 - f.y, f.y, c == 1);
      let j = i + vec3<i32>(a, c, 0);
      acc_h += wh * ((1.0 - f.z) * load_src(j) + f.z * load_src(j + vec3<i32>(0, 0, 1)));
    }
    acc += wd * acc_h;
  }
  return acc;`,
  cubic: `let b = floor(s);
  let i = vec3<i32>(b) - vec3<i32>(1);
  let wd = cubic_weights(s.x - b.x);
  let wh = cubic_weights(s.y - b.y);
  let ww = cubic_weights(s.z - b.z);
  var acc = 0.0;
  for (var a = 0; a < 4; a++) {
    var acc_h = 0.0;
    for (var c = 0; c < 4; c++) {
      let j = i + vec3<i32>(a, c, 0);
      let row = ww.x * load_src(j) + ww.y * load_src(j + vec3<i32>(0, 0, 1)) + ww.z * load_src(j + vec3<i32>(0, 0, 2)) +
        ww.w * load_src(j + vec3<i32>(0, 0, 3));
      acc_h += wh[c] * row;
    }
    acc += wd[a] * acc_h;
  }
  return acc;`,
};

/** u8 element `e` of a packed u32 array named `arr`. */
const byteOf = (arr: string, e: string) => `((${arr}[(${e}) >> 2u] >> (((${e}) & 3u) * 8u)) & 0xffu)`;

/**
 * Records the spatial transform of one sample: `x` holds the source region (f32, or u8 for a mask, which
 * needs `interp` "nearest"), `out` receives the patch.
 */
export function runAugmentSpatial(
  gpu: Gpu,
  kind: "image" | "mask",
  interp: SpatialInterp,
  pad: SpatialPad,
  x: BufferRange,
  out: BufferRange,
  a: SpatialArgs,
): void {
  if (kind === "mask" && interp !== "nearest") throw new Error(`masks are resampled with "nearest" only`);
  const [first, end] = a.rows ?? [0, a.patch[0]];
  if (!(Number.isInteger(first) && Number.isInteger(end) && 0 <= first && first < end && end <= a.patch[0])) {
    throw new RangeError(`rows [${first}, ${end}) are not planes of a patch of [${a.patch}]`);
  }
  const plane = a.patch[1] * a.patch[2];
  const dst: Shape3 = [end - first, a.patch[1], a.patch[2]];
  const dstBase = a.dstBase + first * plane;
  const n = count(dst);
  if (kind === "mask" && (n % 4 !== 0 || dstBase % 4 !== 0)) {
    throw new RangeError(`a mask patch of [${dst}] voxels at ${dstBase} does not fill whole u32 words`);
  }
  const kernel = gpu.kernel(`augment:spatial:${kind}:${interp}:${pad}`, () => ({
    name: `augment_spatial[${kind},${interp},${pad}]`,
    code: specialize(spatialSource, {
      STORE: kind === "image" ? "f32" : "u32",
      INTERP: interp,
      PADDING: pad,
      LINEAR_INDEX,
      SAMPLE: SAMPLE[interp],
      FETCH_PAD: pad === "zero"
        ? "if (!inside(i)) { return 0.0; }\n  let j = i;"
        : "let j = clamp(i, vec3<i32>(0), n - vec3<i32>(1));",
      FETCH_LOAD: kind === "image" ? "return x[e];" : `return f32(${byteOf("x", "e")});`,
      MAIN: kind === "image"
        ? `if (t >= p.dst.x * p.dst.y * p.dst.z) { return; }
  o[p.dst.w + t] = sample_at(source_of(t));`
        : `if (t * 4u >= p.dst.x * p.dst.y * p.dst.z) { return; }
  var word = 0u;
  for (var j = 0u; j < 4u; j++) { word |= (u32(sample_at(source_of(4u * t + j))) & 0xffu) << (8u * j); }
  o[(p.dst.w >> 2u) + t] = word;`,
    }),
    storage: ["read", "read_write"],
    uniform: true,
  }));
  const m = a.matrix;
  const params = new Params()
    .f32(m[0]).f32(m[1]).f32(m[2]).f32(a.centre[0])
    .f32(m[3]).f32(m[4]).f32(m[5]).f32(a.centre[1])
    .f32(m[6]).f32(m[7]).f32(m[8]).f32(a.centre[2])
    // output voxel v of the slab is v + first of the patch: v − (half − first) = (v + first) − half, exactly
    .f32((a.patch[0] - 1) / 2 - first).f32((a.patch[1] - 1) / 2).f32((a.patch[2] - 1) / 2).f32(0)
    .u32s([...a.srcShape, a.srcBase]).u32s([...dst, dstBase]);
  const units = kind === "image" ? n : n / 4;
  gpu.dispatch(kernel, [x, out], params, Math.ceil(units / WG));
}

/** Quarter turns in the plane of two axes (NumPy's `np.rot90(m, turns, axes)`). */
export interface QuarterTurns {
  /** The two axes of the plane (different, each 0, 1 or 2). */
  axes: readonly [number, number];
  /** Number of quarter turns (any integer; taken modulo 4). */
  turns: number;
}

/**
 * Records the mirroring of one `[D, H, W]` sample from `x` (at `srcBase`) to `out` (at `dstBase`; must not
 * overlap), flipping the axes marked true, then turning it by `turn` (as the CPU pipeline: mirror, then
 * rot90; odd turns need equal sizes on the two axes). Masks are u8 (needs D·H·W and `dstBase` multiples of 4).
 */
export function runAugmentMirror(
  gpu: Gpu,
  kind: "image" | "mask",
  x: BufferRange,
  out: BufferRange,
  shape: Shape3,
  axes: readonly boolean[],
  srcBase: number,
  dstBase: number,
  turn?: QuarterTurns,
): void {
  const n = count(shape);
  if (kind === "mask" && (n % 4 !== 0 || dstBase % 4 !== 0)) {
    throw new RangeError(`a mask of [${shape}] voxels at ${dstBase} does not fill whole u32 words`);
  }
  const turns = turn ? ((Math.trunc(turn.turns) % 4) + 4) % 4 : 0;
  const [ta, tb] = turn?.axes ?? [0, 1];
  if (turns !== 0) {
    if (ta === tb || ![ta, tb].every((v) => v === 0 || v === 1 || v === 2)) {
      throw new RangeError(`quarter turns need two different axes of 0, 1, 2, got [${turn!.axes}]`);
    }
    if (turns % 2 === 1 && shape[ta] !== shape[tb]) {
      throw new RangeError(
        `an odd number of quarter turns needs equal sizes on axes ${ta} and ${tb}, got [${shape}]`,
      );
    }
  }
  const kernel = gpu.kernel(`augment:mirror:${kind}`, () => ({
    name: `augment_mirror[${kind}]`,
    code: specialize(mirrorSource, {
      STORE: kind === "image" ? "f32" : "u32",
      LINEAR_INDEX,
      MAIN: kind === "image"
        ? `if (t >= n) { return; }\n  o[p.base.y + t] = x[source_index(t)];`
        : `if (t * 4u >= n) { return; }
  var word = 0u;
  for (var j = 0u; j < 4u; j++) {
    let e = source_index(4u * t + j);
    word |= ${byteOf("x", "e")} << (8u * j);
  }
  o[(p.base.y >> 2u) + t] = word;`,
    }),
    storage: ["read", "read_write"],
    uniform: true,
  }));
  const flags = (axes[0] ? 1 : 0) | (axes[1] ? 2 : 0) | (axes[2] ? 4 : 0);
  const params = new Params().u32s([...shape, flags]).u32s([srcBase, dstBase, 0, 0]).u32s([ta, tb, turns, 0]);
  gpu.dispatch(kernel, [x, out], params, Math.ceil((kind === "image" ? n : n / 4) / WG));
}

/**
 * The Philox key and counter words of a sample's noise: (seed, step, sample, view). The view of the run's
 * standard patch is 0; a method's own crops of one sample take 1, 2, … (see core/train/gpu_augment.ts).
 */
export interface NoiseKey {
  /** Run seed (a non-negative safe integer: 64-bit key, low and high words). */
  seed: number;
  /** Training step (a 32-bit counter word). */
  step: number;
  /** Index of the sample in the batch (a 32-bit counter word). */
  sample: number;
  /** View of the sample (default 0): counter word 3 is 0x4e4f4953 + view (mod 2³²). */
  view?: number;
}

/** Counter word 3 of the noise of `view`: the stream tag "NOIS" plus the view. */
export const NOISE_STREAM = 0x4e4f4953;

/** Records x[base + i] += sigma · N(0, 1) for i < n, the normals from Philox keyed by `key`. */
export function runAugmentNoise(
  gpu: Gpu,
  x: BufferRange,
  base: number,
  n: number,
  sigma: number,
  key: NoiseKey,
): void {
  const kernel = gpu.kernel("augment:noise", () => ({
    name: "augment_noise",
    code: specialize(noiseSource, { LINEAR_INDEX, PHILOX_CORE: philoxCore }),
    storage: ["read_write"],
    uniform: true,
  }));
  const params = new Params().u32(n).u32(base).u32(key.seed % 2 ** 32)
    .u32(Math.floor(key.seed / 2 ** 32) % 2 ** 32).u32(key.step >>> 0).u32(key.sample >>> 0).f32(sigma)
    .u32((NOISE_STREAM + (key.view ?? 0)) >>> 0);
  gpu.dispatch(kernel, [x], params, Math.ceil(Math.ceil(n / 4) / WG));
}

/**
 * Records one axis of the Gaussian blur of a `[D, H, W]` sample: `out` at `dstBase` from `x` at `srcBase`
 * (must not overlap), σ in voxels (> 0), radius ⌈4σ⌉ (at least 1) as core/data/augment/blur.ts.
 */
export function runAugmentBlurAxis(
  gpu: Gpu,
  x: BufferRange,
  out: BufferRange,
  shape: Shape3,
  axis: number,
  sigma: number,
  srcBase: number,
  dstBase: number,
): void {
  if (!(sigma > 0)) throw new RangeError(`blur sigma must be > 0, got ${sigma}`);
  const kernel = gpu.kernel("augment:blur", () => ({
    name: "augment_blur",
    code: specialize(blurSource, { LINEAR_INDEX }),
    storage: ["read", "read_write"],
    uniform: true,
  }));
  const radius = Math.max(1, Math.ceil(4 * sigma));
  const params = new Params().u32s([...shape, axis]).u32s([srcBase, dstBase, 0, 0]).f32(sigma).i32(radius);
  gpu.dispatch(kernel, [x, out], params, Math.ceil(count(shape) / WG));
}

/** Words of a statistics work buffer: `slots` slots of 8 plus 4 per stage-1 workgroup. */
export function statsWorkWords(slots: number): number {
  return 8 * slots + 4 * WG;
}

/**
 * Records the statistics of x[base .. base + n) into slot `slot` of `work` (a buffer of
 * {@link statsWorkWords} f32 words): [mean, std, min, max] (population std).
 */
export function runAugmentStats(
  gpu: Gpu,
  x: BufferRange,
  work: BufferRange,
  base: number,
  n: number,
  slot: number,
  slots: number,
): void {
  if (slot >= slots) throw new RangeError(`statistics slot ${slot} is outside the ${slots} slots`);
  const stage = (entry: "stage1" | "stage2") =>
    gpu.kernel(`augment:stats:${entry}`, () => ({
      name: `augment_stats_${entry}`,
      code: statsSource,
      entryPoint: entry,
      storage: ["read", "read_write"],
      uniform: true,
    }));
  const groups = Math.max(1, Math.min(WG, Math.ceil(n / (WG * 16))));
  for (const mode of [0, 1]) {
    const params = () => new Params().u32(n).u32(base).u32(slot).u32(8 * slots).u32(groups).u32(mode);
    gpu.dispatch(stage("stage1"), [x, work], params(), [groups, 1, 1]);
    gpu.dispatch(stage("stage2"), [x, work], params(), [1, 1, 1]);
  }
}

/** The pointwise intensity operations of intensity.wgsl. */
export type IntensityOp =
  | { op: "brightness"; factor: number }
  | { op: "contrast"; factor: number; slot: number }
  | { op: "gammaPow"; gamma: number; invert: boolean; slot: number }
  | { op: "gammaRestore"; invert: boolean; slotBefore: number; slotAfter: number };

/** Records one intensity operation on x[base .. base + n) in place, statistics from `work`. */
export function runAugmentIntensity(
  gpu: Gpu,
  x: BufferRange,
  work: BufferRange,
  base: number,
  n: number,
  op: IntensityOp,
): void {
  const kernel = gpu.kernel("augment:intensity", () => ({
    name: "augment_intensity",
    code: specialize(intensitySource, { LINEAR_INDEX }),
    storage: ["read_write", "read"],
    uniform: true,
  }));
  const p = new Params().u32(n).u32(base);
  if (op.op === "brightness") p.u32(0).u32(0).u32(0).f32(op.factor).f32(0).f32(1);
  else if (op.op === "contrast") p.u32(1).u32(op.slot).u32(0).f32(op.factor).f32(0).f32(1);
  else if (op.op === "gammaPow") p.u32(2).u32(op.slot).u32(0).f32(0).f32(op.gamma).f32(op.invert ? -1 : 1);
  else p.u32(3).u32(op.slotBefore).u32(op.slotAfter).f32(0).f32(0).f32(op.invert ? -1 : 1);
  gpu.dispatch(kernel, [x, work], p, Math.ceil(n / WG));
}

/** Per-axis taps of a low-resolution launch: 4 source indices and 4 weights per output index. */
export interface LowresAxisTaps {
  index: Int32Array;
  weight: Float32Array;
}

/** Packs three axes of taps into the u32 table lowres.wgsl reads. */
export function packLowresTaps(axes: readonly LowresAxisTaps[]): Uint32Array {
  const total = axes.reduce((s, a) => s + a.index.length / 4, 0);
  const words = new Uint32Array(8 * total);
  const bits = new Uint32Array(1);
  const f = new Float32Array(bits.buffer);
  let at = 0;
  for (const a of axes) {
    for (let o = 0; o < a.index.length / 4; o++, at += 8) {
      for (let j = 0; j < 4; j++) {
        words[at + j] = a.index[4 * o + j];
        f[0] = a.weight[4 * o + j];
        words[at + 4 + j] = bits[0];
      }
    }
  }
  return words;
}

/**
 * Records one axis of the low-resolution simulation of a `[D, H, W]` sample: `out` at `dstBase` from `x`
 * at `srcBase` (must not overlap), with the packed taps (see {@link packLowresTaps}) of all three axes
 * at word `tableBase` of `tables`. The three axes, one after the other, make the whole transform.
 */
export function runAugmentLowresAxis(
  gpu: Gpu,
  x: BufferRange,
  tables: BufferRange,
  out: BufferRange,
  shape: Shape3,
  axis: number,
  srcBase: number,
  dstBase: number,
  tableBase: number,
): void {
  const kernel = gpu.kernel("augment:lowres", () => ({
    name: "augment_lowres",
    code: specialize(lowresSource, { LINEAR_INDEX }),
    storage: ["read", "read", "read_write"],
    uniform: true,
  }));
  const axisBase = tableBase + 8 * shape.slice(0, axis).reduce((s, v) => s + v, 0);
  const params = new Params().u32s([...shape, axis]).u32s([srcBase, dstBase, axisBase, 0]);
  gpu.dispatch(kernel, [x, tables, out], params, Math.ceil(count(shape) / WG));
}
