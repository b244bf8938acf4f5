/**
 * Intensity transforms of nnU-Net's pipeline: multiplicative brightness, contrast (around the mean,
 * range preserved), gamma (optionally on the inverted image, statistics retained) — all in place.
 *
 * @module
 */
import { meanStd } from "../normalize.ts";

/** x ← x · factor. */
export function scaleBrightness(data: Float32Array, factor: number): void {
  for (let i = 0; i < data.length; i++) data[i] *= factor;
}

function minMax(data: Float32Array): [number, number] {
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return [lo, hi];
}

/** x ← (x − mean) · factor + mean, clipped to the original [min, max] (batchgenerators' preserve_range). */
export function adjustContrast(data: Float32Array, factor: number): void {
  const { mean } = meanStd(data);
  const [lo, hi] = minMax(data);
  for (let i = 0; i < data.length; i++) {
    data[i] = Math.min(hi, Math.max(lo, (data[i] - mean) * factor + mean));
  }
}

/**
 * Gamma on the range-normalised image: x ← ((x − min) / range)^γ · range + min, then the original mean
 * and standard deviation are restored (retain_stats). With `invert`, applied to −x and negated back.
 */
export function adjustGamma(data: Float32Array, gamma: number, invert: boolean): void {
  if (invert) { for (let i = 0; i < data.length; i++) data[i] = -data[i]; }
  const before = meanStd(data);
  const [lo, hi] = minMax(data);
  const range = hi - lo + 1e-7;
  for (let i = 0; i < data.length; i++) data[i] = Math.pow((data[i] - lo) / range, gamma) * range + lo;
  const after = meanStd(data);
  const k = before.std / (after.std + 1e-8);
  for (let i = 0; i < data.length; i++) data[i] = (data[i] - after.mean) * k + before.mean;
  if (invert) { for (let i = 0; i < data.length; i++) data[i] = -data[i]; }
}
