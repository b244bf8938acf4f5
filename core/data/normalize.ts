/**
 * Intensity normalisation: per-image z-score over all voxels (nnU-Net's ZScoreNormalization without a
 * mask, as nnssl uses it). Accumulates in float64 so large volumes do not lose precision.
 *
 * @module
 */

/** Mean and standard deviation used for a z-score. */
export interface ZScoreStats {
  /** Mean of the voxels. */
  mean: number;
  /** Population standard deviation. */
  std: number;
}

/** Mean and (population) standard deviation of `data`. */
export function meanStd(data: ArrayLike<number>): ZScoreStats {
  let sum = 0;
  for (let i = 0; i < data.length; i++) sum += data[i];
  const mean = sum / Math.max(1, data.length);
  let sq = 0;
  for (let i = 0; i < data.length; i++) {
    const d = data[i] - mean;
    sq += d * d;
  }
  return { mean, std: Math.sqrt(sq / Math.max(1, data.length)) };
}

/** Z-scores `data` in place: (x − mean) / max(std, 1e-8). Returns the statistics used. */
export function zscoreInPlace(data: Float32Array): ZScoreStats {
  const stats = meanStd(data);
  const inv = 1 / Math.max(stats.std, 1e-8);
  for (let i = 0; i < data.length; i++) data[i] = (data[i] - stats.mean) * inv;
  return stats;
}
