/**
 * The intensity range the Models Genesis transforms see. They assume images in [0, 1] (the Bézier curve
 * is defined on [0, 1] and clamps outside it; painting noise is U[0, 1)), while nnssl feeds them z-scored
 * patches (mean 0, standard deviation 1 over the volume). `"nnssl"` keeps that; `"minmax"` rescales each
 * patch to [0, 1] first (input and target alike).
 *
 * @module
 */

/** How a patch is brought into the transforms' range: as nnssl (z-scored, unchanged) or per-patch min–max. */
export type RangeMode = "nnssl" | "minmax";

/**
 * Rescales `data` in place to [0, 1] by its own minimum and maximum ((v − min) / (max − min)); a constant
 * patch becomes all zeros. Returns the minimum and maximum used.
 */
export function minMaxRescale(data: Float32Array): { min: number; max: number } {
  let min = Infinity, max = -Infinity;
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (!(max > min)) {
    data.fill(0);
    return { min, max };
  }
  const scale = 1 / (max - min);
  for (let i = 0; i < data.length; i++) data[i] = (data[i] - min) * scale;
  return { min, max };
}
