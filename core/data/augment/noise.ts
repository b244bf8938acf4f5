/**
 * Additive Gaussian noise. The standard deviation is drawn per sample from the configured range (what
 * batchgenerators calls `noise_variance` is used as a standard deviation there too).
 *
 * @module
 */
import type { Rng } from "../rng.ts";

/** Adds N(0, sigma²) to every voxel, in place. */
export function addGaussianNoise(data: Float32Array, sigma: number, rng: Rng): void {
  if (sigma === 0) return;
  for (let i = 0; i < data.length; i++) data[i] += sigma * rng.normal();
}
