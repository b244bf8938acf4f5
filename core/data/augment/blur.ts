/**
 * Gaussian blur: separable, one 1D convolution per axis with a kernel truncated at 4σ and normalised,
 * mirror-reflected at the borders like scipy's `gaussian_filter` (mode "reflect").
 *
 * @module
 */
import type { Shape3 } from "../volume.ts";

/** The normalised 1D Gaussian kernel of radius ⌈4σ⌉. */
export function gaussianKernel(sigma: number): Float32Array {
  const radius = Math.max(1, Math.ceil(4 * sigma));
  const k = new Float32Array(2 * radius + 1);
  let sum = 0;
  for (let i = -radius; i <= radius; i++) sum += k[i + radius] = Math.exp(-(i * i) / (2 * sigma * sigma));
  for (let i = 0; i < k.length; i++) k[i] /= sum;
  return k;
}

/** scipy's "reflect" (half-sample symmetric): -1 → 0, n → n-1. */
function reflect(i: number, n: number): number {
  const period = 2 * n;
  let j = ((i % period) + period) % period;
  if (j >= n) j = period - 1 - j;
  return j;
}

function blurAxis(src: Float32Array, shape: Shape3, axis: number, kernel: Float32Array): Float32Array {
  const n = shape[axis];
  const inner = axis === 2 ? 1 : axis === 1 ? shape[2] : shape[1] * shape[2];
  const outer = src.length / (n * inner);
  const radius = (kernel.length - 1) / 2;
  const out = new Float32Array(src.length);
  if (inner === 1) {
    // contiguous rows: one row at a time keeps it in cache
    const taps = new Int32Array(n * kernel.length);
    for (let x = 0; x < n; x++) {
      for (let j = 0; j < kernel.length; j++) taps[x * kernel.length + j] = reflect(x + j - radius, n);
    }
    for (let o = 0; o < outer; o++) {
      const base = o * n;
      for (let x = 0; x < n; x++) {
        let v = 0;
        for (let j = 0; j < kernel.length; j++) v += kernel[j] * src[base + taps[x * kernel.length + j]];
        out[base + x] = v;
      }
    }
    return out;
  }
  const index = new Int32Array(kernel.length);
  for (let x = 0; x < n; x++) {
    for (let j = 0; j < kernel.length; j++) index[j] = reflect(x + j - radius, n);
    for (let o = 0; o < outer; o++) {
      const base = o * n * inner;
      const dst = base + x * inner;
      for (let j = 0; j < kernel.length; j++) {
        const w = kernel[j];
        const s = base + index[j] * inner;
        for (let i = 0; i < inner; i++) out[dst + i] += w * src[s + i];
      }
    }
  }
  return out;
}

/** Blurs `data` with per-axis standard deviations `sigma` (voxels); returns a new array. */
export function gaussianBlur(data: Float32Array, shape: Shape3, sigma: readonly number[]): Float32Array {
  let out = data;
  for (let axis = 0; axis < 3; axis++) {
    if (sigma[axis] > 0) out = blurAxis(out, shape, axis, gaussianKernel(sigma[axis]));
  }
  return out === data ? data.slice() : out;
}
