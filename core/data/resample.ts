/**
 * Resampling to a target voxel spacing, separably along each axis (three 1D passes): cubic convolution
 * for images (Keys, a = −0.5), linear then threshold for masks, nearest where asked. Like nnU-Net, an
 * axis whose spacing is more than `anisotropyThreshold` times the finest one is resampled with nearest
 * neighbour (nnU-Net's "separate z"), so thick slices are not smeared into each other. Sample positions
 * align voxel centres: `x_in = (x_out + 0.5) · n_in / n_out − 0.5`, edges clamp.
 *
 * @module
 */
import { type Affine, mulAffine, type Shape3, type Volume, voxelCount } from "./volume.ts";

/** Interpolation along one axis. */
export type Interpolation = "cubic" | "linear" | "nearest";

/** The shape after resampling from `spacing` to `target`: `round(shape · spacing / target)`, at least 1. */
export function resampledShape(shape: Shape3, spacing: Shape3, target: Shape3): Shape3 {
  return shape.map((n, i) => Math.max(1, Math.round((n * spacing[i]) / target[i]))) as Shape3;
}

/** Keys' cubic convolution kernel with a = −0.5 (Catmull–Rom): interpolating, support (−2, 2). */
export function keysCubic(t: number): number {
  const a = -0.5;
  const x = Math.abs(t);
  if (x <= 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0;
}

/**
 * For each output position of a 1D resampling from `nIn` to `nOut` samples: source indices (clamped)
 * and float32 weights, `taps` per position (the GPU's low-resolution kernel uses the same tables).
 */
export function resampleTaps(
  nIn: number,
  nOut: number,
  order: Interpolation,
): { index: Int32Array; weight: Float32Array; taps: number } {
  const k = order === "cubic" ? 4 : order === "linear" ? 2 : 1;
  const index = new Int32Array(nOut * k);
  const weight = new Float32Array(nOut * k);
  const scale = nIn / nOut;
  const clamp = (i: number) => Math.min(nIn - 1, Math.max(0, i));
  for (let o = 0; o < nOut; o++) {
    const x = (o + 0.5) * scale - 0.5;
    if (order === "nearest") {
      index[o] = clamp(Math.round(x));
      weight[o] = 1;
      continue;
    }
    const x0 = Math.floor(x);
    const t = x - x0;
    for (let j = 0; j < k; j++) {
      const offset = order === "cubic" ? j - 1 : j;
      index[o * k + j] = clamp(x0 + offset);
      weight[o * k + j] = order === "cubic" ? keysCubic(t - offset) : offset === 0 ? 1 - t : t;
    }
  }
  return { index, weight, taps: k };
}

/** One 1D pass along `axis`: `shape[axis]` becomes `nOut`. */
function resampleAxis(
  src: Float32Array,
  shape: Shape3,
  axis: number,
  nOut: number,
  order: Interpolation,
): Float32Array {
  const nIn = shape[axis];
  const outer = voxelCount(shape.slice(0, axis));
  const inner = voxelCount(shape.slice(axis + 1));
  const { index, weight, taps: k } = resampleTaps(nIn, nOut, order);
  const out = new Float32Array(outer * nOut * inner);
  for (let o = 0; o < outer; o++) {
    const srcBase = o * nIn * inner;
    const dstBase = o * nOut * inner;
    for (let x = 0; x < nOut; x++) {
      const dst = dstBase + x * inner;
      for (let j = 0; j < k; j++) {
        const w = weight[x * k + j];
        if (w === 0) continue;
        const s = srcBase + index[x * k + j] * inner;
        for (let i = 0; i < inner; i++) out[dst + i] += w * src[s + i];
      }
    }
  }
  return out;
}

/** Resamples `data` of `shape` to `newShape`, with one interpolation per axis (or one for all). */
export function resampleArray(
  data: Float32Array,
  shape: Shape3,
  newShape: Shape3,
  order: Interpolation | [Interpolation, Interpolation, Interpolation],
): Float32Array {
  const orders = typeof order === "string" ? [order, order, order] : order;
  let current = data;
  const currentShape: Shape3 = [...shape];
  // W first (contiguous), then H, then D: the order does not change the result, only the cost.
  for (const axis of [2, 1, 0]) {
    if (newShape[axis] === currentShape[axis]) continue;
    current = resampleAxis(current, currentShape, axis, newShape[axis], orders[axis]);
    currentShape[axis] = newShape[axis];
  }
  return current === data ? data.slice() : current;
}

/** Per-axis orders for an image: `order` everywhere, nearest along an axis much coarser than the rest. */
export function axisOrders(
  spacing: Shape3,
  order: Interpolation,
  anisotropyThreshold = 3,
): [Interpolation, Interpolation, Interpolation] {
  const finest = Math.min(...spacing);
  return spacing.map((s) => (s / finest > anisotropyThreshold ? "nearest" : order)) as [
    Interpolation,
    Interpolation,
    Interpolation,
  ];
}

/** The affine of the resampled grid (voxel centres aligned as the sampling does). */
export function resampledAffine(affine: Affine, shape: Shape3, newShape: Shape3): Affine {
  // new voxel (i', j', k') sits at old voxel (i' + 0.5) · s − 0.5 per NIfTI axis, s = n_old / n_new
  const s = [shape[2] / newShape[2], shape[1] / newShape[1], shape[0] / newShape[0]];
  const T = [
    s[0],
    0,
    0,
    0.5 * s[0] - 0.5,
    0,
    s[1],
    0,
    0.5 * s[1] - 0.5,
    0,
    0,
    s[2],
    0.5 * s[2] - 0.5,
    0,
    0,
    0,
    1,
  ];
  return mulAffine(affine, T);
}

/** Options of {@link resampleVolume}. */
export interface ResampleOptions {
  /** Interpolation for the finely sampled axes (default cubic). */
  order?: Interpolation;
  /** Ratio above which an axis counts as anisotropic and uses nearest (default 3, as nnU-Net). */
  anisotropyThreshold?: number;
}

/** Resamples an image volume to `target` spacing `[sd, sh, sw]`. */
export function resampleVolume(volume: Volume, target: Shape3, options: ResampleOptions = {}): Volume {
  const shape = resampledShape(volume.shape, volume.spacing, target);
  const orders = axisOrders(volume.spacing, options.order ?? "cubic", options.anisotropyThreshold ?? 3);
  const affine = resampledAffine(volume.affine, volume.shape, shape);
  return {
    data: resampleArray(volume.data, volume.shape, shape, orders),
    shape,
    spacing: volume.spacing.map((s, i) => (s * volume.shape[i]) / shape[i]) as Shape3,
    affine,
  };
}

/** Resamples a binary mask: linear interpolation, then ≥ 0.5 is inside. */
export function resampleMask(mask: Uint8Array, shape: Shape3, newShape: Shape3): Uint8Array {
  if (shape.every((n, i) => n === newShape[i])) return mask.slice();
  const soft = resampleArray(Float32Array.from(mask), shape, newShape, "linear");
  const out = new Uint8Array(soft.length);
  for (let i = 0; i < out.length; i++) out[i] = soft[i] >= 0.5 ? 1 : 0;
  return out;
}
