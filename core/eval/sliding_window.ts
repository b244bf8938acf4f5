/**
 * Sliding-window inference as nnU-Net v2 does it (nnunetv2/inference/sliding_window_prediction.py and
 * predict_from_raw_data.py): windows of the patch size at step 0.5 (nnU-Net's window placement, its
 * rounding included), each window's logits weighted by a Gaussian importance map (sigma = 1/8 of the
 * patch per axis, normalised to a maximum of 1, zeros clamped to the smallest non-zero weight), summed and
 * divided by the summed weights. An image smaller than the patch is zero-padded around its centre.
 * Optional mirroring test-time augmentation averages the logits over every combination of flipped axes.
 *
 * The network is a {@link PatchPredictor}: one window in, its logits out. Only one window is on the
 * device at a time; the weighted sums live on the host, so a large volume never needs a whole-volume
 * device allocation.
 *
 * @module
 */
import type { Shape3 } from "../data/mod.ts";

/** A network on one window: `[C, pd, ph, pw]` float32 in, `[K, pd, ph, pw]` logits out. */
export type PatchPredictor = (patch: Float32Array, patchSize: Shape3) => Promise<Float32Array>;

/**
 * The Gaussian importance map of a patch (nnU-Net's compute_gaussian): a unit impulse at the centre
 * voxel `size // 2` blurred with sigma `size · sigmaScale` per axis (scipy's kernel truncated at 4 sigma),
 * divided by its maximum; zeros are replaced by the smallest non-zero weight so no voxel gets weight 0.
 * nnU-Net scales the maximum to 10 for float16; with float32 weights 1 is used (the scale cancels in
 * the weighted mean).
 */
export function gaussianImportance(patch: Shape3, sigmaScale = 1 / 8): Float32Array {
  const axes = patch.map((n) => {
    const sigma = n * sigmaScale;
    const radius = Math.floor(4 * sigma + 0.5);
    const centre = Math.floor(n / 2);
    return Float64Array.from({ length: n }, (_, x) => {
      const t = x - centre;
      return Math.abs(t) <= radius ? Math.exp(-0.5 * (t / sigma) ** 2) : 0;
    });
  });
  const [D, H, W] = patch;
  const out = new Float32Array(D * H * W);
  let i = 0;
  for (let d = 0; d < D; d++) {
    for (let h = 0; h < H; h++) {
      for (let w = 0; w < W; w++) out[i++] = axes[0][d] * axes[1][h] * axes[2][w];
    }
  }
  let min = Infinity;
  for (const v of out) if (v > 0 && v < min) min = v;
  for (let j = 0; j < out.length; j++) if (out[j] === 0) out[j] = min;
  return out;
}

/** numpy's `round`: halves go to the even neighbour. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Window starts per axis (nnU-Net's compute_steps_for_sliding_window); `image ≥ tile` on every axis. */
export function slidingWindowSteps(
  image: Shape3,
  tile: Shape3,
  stepSize = 0.5,
): [number[], number[], number[]] {
  return image.map((n, a) => {
    const k = tile[a];
    if (n < k) throw new RangeError(`image ${image.join("×")} is smaller than the window ${tile.join("×")}`);
    const count = Math.ceil((n - k) / (k * stepSize)) + 1;
    const step = count > 1 ? (n - k) / (count - 1) : 0;
    return Array.from({ length: count }, (_, i) => roundHalfEven(step * i));
  }) as [number[], number[], number[]];
}

/** Options of {@link slidingWindowPredict}. */
export interface SlidingWindowOptions {
  /** Window size `[pd, ph, pw]`. */
  patchSize: Shape3;
  /** Output channels K of the predictor. */
  numClasses: number;
  /** Step as a fraction of the window (default 0.5, as nnU-Net). */
  stepSize?: number;
  /** Array axes (0 = D, 1 = H, 2 = W) to mirror for test-time augmentation (default none). */
  mirrorAxes?: number[];
  /** Gaussian importance weighting (default true; false weights every voxel alike). */
  gaussian?: boolean;
  /** Called after each window. */
  onWindow?: (done: number, total: number) => void;
}

function flipAxes(data: Float32Array, channels: number, shape: Shape3, axes: number[]): Float32Array {
  if (axes.length === 0) return data;
  const [D, H, W] = shape;
  const fd = axes.includes(0), fh = axes.includes(1), fw = axes.includes(2);
  const out = new Float32Array(data.length);
  const n = D * H * W;
  for (let c = 0; c < channels; c++) {
    let i = c * n;
    for (let d = 0; d < D; d++) {
      const sd = fd ? D - 1 - d : d;
      for (let h = 0; h < H; h++) {
        const sh = fh ? H - 1 - h : h;
        const row = c * n + (sd * H + sh) * W;
        for (let w = 0; w < W; w++) out[i++] = data[row + (fw ? W - 1 - w : w)];
      }
    }
  }
  return out;
}

/** Every subset of `axes` (the empty one first), as nnU-Net's mirroring combinations. */
function subsets(axes: number[]): number[][] {
  const out: number[][] = [[]];
  for (const a of axes) for (const s of out.slice()) out.push([...s, a]);
  return out;
}

/** The predictor's logits for one window, averaged over the mirroring combinations. */
async function predictWindow(
  patch: Float32Array,
  channels: number,
  options: SlidingWindowOptions,
  predict: PatchPredictor,
): Promise<Float32Array> {
  const combos = subsets(options.mirrorAxes ?? []);
  const size = options.patchSize;
  const n = size[0] * size[1] * size[2];
  const sum = new Float32Array(options.numClasses * n);
  for (const axes of combos) {
    const logits = await predict(flipAxes(patch, channels, size, axes), size);
    if (logits.length !== sum.length) {
      throw new RangeError(
        `predictor returned ${logits.length} values for a window, expected ${options.numClasses}×${
          size.join("×")
        }`,
      );
    }
    const back = flipAxes(logits, options.numClasses, size, axes);
    for (let i = 0; i < sum.length; i++) sum[i] += back[i];
  }
  if (combos.length > 1) { for (let i = 0; i < sum.length; i++) sum[i] /= combos.length; }
  return sum;
}

/**
 * Predicts logits `[K, D, H, W]` for a preprocessed volume (one float32 array per channel, each of
 * `shape`) window by window. With one window covering the image it equals the predictor on the whole
 * (zero-padded) image.
 */
export async function slidingWindowPredict(
  channels: Float32Array[],
  shape: Shape3,
  predict: PatchPredictor,
  options: SlidingWindowOptions,
): Promise<Float32Array> {
  const patch = options.patchSize;
  const K = options.numClasses;
  const C = channels.length;
  // pad to at least the patch, centred (nnU-Net's pad_nd_image)
  const padded = shape.map((n, a) => Math.max(n, patch[a])) as Shape3;
  const before = shape.map((n, a) => Math.floor((padded[a] - n) / 2));
  const [PD, PH, PW] = padded;
  const N = PD * PH * PW;
  const steps = slidingWindowSteps(padded, patch, options.stepSize ?? 0.5);
  const weights = options.gaussian === false
    ? new Float32Array(patch[0] * patch[1] * patch[2]).fill(1)
    : gaussianImportance(patch);
  const sum = new Float32Array(K * N);
  const weightSum = new Float32Array(N);
  const [pd, ph, pw] = patch;
  const n = pd * ph * pw;
  const total = steps[0].length * steps[1].length * steps[2].length;
  let done = 0;
  const source = (c: number, d: number, h: number, w: number) => {
    const sd = d - before[0], sh = h - before[1], sw = w - before[2];
    if (sd < 0 || sh < 0 || sw < 0 || sd >= shape[0] || sh >= shape[1] || sw >= shape[2]) return 0;
    return channels[c][(sd * shape[1] + sh) * shape[2] + sw];
  };
  for (const z of steps[0]) {
    for (const y of steps[1]) {
      for (const x of steps[2]) {
        const window = new Float32Array(C * n);
        for (let c = 0; c < C; c++) {
          let i = c * n;
          for (let d = 0; d < pd; d++) {
            for (let h = 0; h < ph; h++) {
              for (let w = 0; w < pw; w++) window[i++] = source(c, z + d, y + h, x + w);
            }
          }
        }
        const logits = await predictWindow(window, C, options, predict);
        for (let d = 0; d < pd; d++) {
          for (let h = 0; h < ph; h++) {
            const local = (d * ph + h) * pw;
            const global = ((z + d) * PH + (y + h)) * PW + x;
            for (let w = 0; w < pw; w++) {
              const g = weights[local + w];
              weightSum[global + w] += g;
              for (let k = 0; k < K; k++) sum[k * N + global + w] += g * logits[k * n + local + w];
            }
          }
        }
        options.onWindow?.(++done, total);
      }
    }
  }
  const [D, H, W] = shape;
  const out = new Float32Array(K * D * H * W);
  for (let k = 0; k < K; k++) {
    let o = k * D * H * W;
    for (let d = 0; d < D; d++) {
      for (let h = 0; h < H; h++) {
        const row = ((d + before[0]) * PH + (h + before[1])) * PW + before[2];
        for (let w = 0; w < W; w++, o++) out[o] = sum[k * N + row + w] / weightSum[row + w];
      }
    }
  }
  return out;
}

/** Softmax over the K class planes of `[K, n]` logits (float64 per voxel). */
export function softmaxClasses(logits: Float32Array, numClasses: number): Float32Array {
  const n = logits.length / numClasses;
  const out = new Float32Array(logits.length);
  for (let i = 0; i < n; i++) {
    let max = -Infinity;
    for (let k = 0; k < numClasses; k++) max = Math.max(max, logits[k * n + i]);
    let s = 0;
    for (let k = 0; k < numClasses; k++) s += Math.exp(logits[k * n + i] - max);
    for (let k = 0; k < numClasses; k++) out[k * n + i] = Math.exp(logits[k * n + i] - max) / s;
  }
  return out;
}

/** The class of highest value per voxel of `[K, n]` planes (the first on ties). */
export function argmaxClasses(planes: Float32Array, numClasses: number): Uint8Array {
  const n = planes.length / numClasses;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let k = 1; k < numClasses; k++) if (planes[k * n + i] > planes[best * n + i]) best = k;
    out[i] = best;
  }
  return out;
}
