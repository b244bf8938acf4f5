/**
 * Low-resolution simulation: downsample by a zoom factor with nearest neighbour, then upsample back to
 * the original shape with cubic interpolation (nnU-Net's SimulateLowResolutionTransform).
 *
 * @module
 */
import { resampleArray } from "../resample.ts";
import type { Shape3 } from "../volume.ts";

/** Returns the low-resolution version of `data` at the same shape; `zoom` in (0, 1]. */
export function simulateLowResolution(data: Float32Array, shape: Shape3, zoom: number): Float32Array {
  const small = shape.map((n) => Math.max(1, Math.round(n * zoom))) as Shape3;
  if (small.every((n, i) => n === shape[i])) return data.slice();
  return resampleArray(resampleArray(data, shape, small, "nearest"), small, shape, "cubic");
}
