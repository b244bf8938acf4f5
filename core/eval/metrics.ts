/**
 * Segmentation metrics per class (docs/downstream.md): Dice, IoU, precision, recall from the confusion
 * counts, and HD95 in mm (95th percentile of the symmetric surface distances, MONAI's definition).
 *
 * Empty classes follow nnU-Net (evaluate_predictions.compute_metrics): a class absent from both
 * reference and prediction has Dice and IoU NaN, and NaN is left out of every mean (`nanmean`).
 * Precision is NaN without predicted voxels, recall NaN without reference voxels. HD95 is NaN when both
 * are empty and Infinity when exactly one is (no surface to measure to); means of HD95 use finite values
 * only and count the infinite ones.
 *
 * @module
 */
import type { Shape3 } from "../data/mod.ts";
import { percentile } from "./target_spacing.ts";

/** The metrics of one class in one case. */
export interface ClassMetrics {
  /** 2TP / (2TP + FP + FN); NaN when the class is in neither map. */
  dice: number;
  /** TP / (TP + FP + FN); NaN when the class is in neither map. */
  iou: number;
  /** TP / (TP + FP); NaN without predicted voxels. */
  precision: number;
  /** TP / (TP + FN); NaN without reference voxels. */
  recall: number;
  /** 95th-percentile symmetric surface distance in mm (when computed; see the module notes). */
  hd95?: number;
  /** True positives (voxels). */
  tp: number;
  /** False positives. */
  fp: number;
  /** False negatives. */
  fn: number;
  /** True negatives. */
  tn: number;
  /** Reference voxels of the class (TP + FN). */
  nReference: number;
  /** Predicted voxels of the class (TP + FP). */
  nPrediction: number;
}

/** Confusion counts of class `k` between a prediction and a reference label map. */
export function confusion(
  prediction: ArrayLike<number>,
  reference: ArrayLike<number>,
  k: number,
): { tp: number; fp: number; fn: number; tn: number } {
  if (prediction.length !== reference.length) {
    throw new RangeError(`prediction has ${prediction.length} voxels, reference ${reference.length}`);
  }
  let tp = 0, fp = 0, fn = 0, tn = 0;
  for (let i = 0; i < prediction.length; i++) {
    const p = prediction[i] === k, r = reference[i] === k;
    if (p && r) tp++;
    else if (p) fp++;
    else if (r) fn++;
    else tn++;
  }
  return { tp, fp, fn, tn };
}

/** Surface voxels of `mask`: inside voxels with a 6-neighbour outside (or on the volume's border). */
export function surfaceOf(mask: Uint8Array, shape: Shape3): Uint8Array {
  const [D, H, W] = shape;
  const out = new Uint8Array(mask.length);
  for (let d = 0; d < D; d++) {
    for (let h = 0; h < H; h++) {
      for (let w = 0; w < W; w++) {
        const i = (d * H + h) * W + w;
        if (!mask[i]) continue;
        out[i] = d === 0 || d === D - 1 || h === 0 || h === H - 1 || w === 0 || w === W - 1 ||
            !mask[i - H * W] || !mask[i + H * W] || !mask[i - W] || !mask[i + W] || !mask[i - 1] ||
            !mask[i + 1]
          ? 1
          : 0;
      }
    }
  }
  return out;
}

/** In place along one line: g[p] = min_q (s·(p − q))² + g[q] (Felzenszwalb–Huttenlocher lower envelope). */
function distanceLine(
  g: Float64Array,
  n: number,
  s: number,
  v: Int32Array,
  z: Float64Array,
  out: Float64Array,
) {
  let k = -1;
  for (let q = 0; q < n; q++) {
    if (g[q] === Infinity) continue;
    const fq = g[q] + (s * q) ** 2;
    while (k >= 0) {
      const p = v[k];
      const x = (fq - (g[p] + (s * p) ** 2)) / (2 * s * (q - p));
      if (x <= z[k]) k--;
      else break;
    }
    k++;
    v[k] = q;
    z[k] = k === 0 ? -Infinity : (fq - (g[v[k - 1]] + (s * v[k - 1]) ** 2)) / (2 * s * (q - v[k - 1]));
    z[k + 1] = Infinity;
  }
  if (k < 0) return; // no finite entries on this line
  let j = 0;
  for (let p = 0; p < n; p++) {
    const x = s * p;
    while (z[j + 1] < x) j++;
    out[p] = (s * (p - v[j])) ** 2 + g[v[j]];
  }
  for (let p = 0; p < n; p++) g[p] = out[p];
}

/** Squared Euclidean distance (mm²) from every voxel to the nearest set voxel of `seeds`, exact. */
export function squaredDistanceTransform(seeds: Uint8Array, shape: Shape3, spacing: Shape3): Float64Array {
  const dist = new Float64Array(seeds.length);
  for (let i = 0; i < seeds.length; i++) dist[i] = seeds[i] ? 0 : Infinity;
  const strides = [shape[1] * shape[2], shape[2], 1];
  const longest = Math.max(...shape);
  const line = new Float64Array(longest);
  const v = new Int32Array(longest);
  const z = new Float64Array(longest + 1);
  const tmp = new Float64Array(longest);
  for (let axis = 0; axis < 3; axis++) {
    const n = shape[axis];
    const stride = strides[axis];
    const others = [0, 1, 2].filter((a) => a !== axis);
    for (let a = 0; a < shape[others[0]]; a++) {
      for (let b = 0; b < shape[others[1]]; b++) {
        const base = a * strides[others[0]] + b * strides[others[1]];
        for (let p = 0; p < n; p++) line[p] = dist[base + p * stride];
        distanceLine(line, n, spacing[axis], v, z, tmp);
        for (let p = 0; p < n; p++) dist[base + p * stride] = line[p];
      }
    }
  }
  return dist;
}

/** HD95 in mm between two binary masks (see the module notes for empty masks). */
export function hausdorff95(
  prediction: Uint8Array,
  reference: Uint8Array,
  shape: Shape3,
  spacing: Shape3,
): number {
  const ps = surfaceOf(prediction, shape);
  const rs = surfaceOf(reference, shape);
  const hasP = ps.some((v) => v !== 0), hasR = rs.some((v) => v !== 0);
  if (!hasP && !hasR) return NaN;
  if (!hasP || !hasR) return Infinity;
  const toR = squaredDistanceTransform(rs, shape, spacing);
  const toP = squaredDistanceTransform(ps, shape, spacing);
  const a: number[] = [], b: number[] = [];
  for (let i = 0; i < ps.length; i++) {
    if (ps[i]) a.push(Math.sqrt(toR[i]));
    if (rs[i]) b.push(Math.sqrt(toP[i]));
  }
  return Math.max(percentile(a, 95), percentile(b, 95));
}

/** Options of {@link classMetrics}. */
export interface ClassMetricsOptions {
  /** Compute HD95 (needs `shape` and `spacing`). */
  hd95?: boolean;
  /** Array shape `[D, H, W]` (for HD95). */
  shape?: Shape3;
  /** Voxel size `[sd, sh, sw]` in mm (for HD95). */
  spacing?: Shape3;
}

/** The metrics of every class in `classes` between a prediction and a reference label map. */
export function classMetrics(
  prediction: ArrayLike<number>,
  reference: ArrayLike<number>,
  classes: readonly number[],
  options: ClassMetricsOptions = {},
): Record<number, ClassMetrics> {
  const out: Record<number, ClassMetrics> = {};
  for (const k of classes) {
    const { tp, fp, fn, tn } = confusion(prediction, reference, k);
    const m: ClassMetrics = {
      dice: tp + fp + fn === 0 ? NaN : (2 * tp) / (2 * tp + fp + fn),
      iou: tp + fp + fn === 0 ? NaN : tp / (tp + fp + fn),
      precision: tp + fp === 0 ? NaN : tp / (tp + fp),
      recall: tp + fn === 0 ? NaN : tp / (tp + fn),
      tp,
      fp,
      fn,
      tn,
      nReference: tp + fn,
      nPrediction: tp + fp,
    };
    if (options.hd95) {
      if (!options.shape || !options.spacing) throw new RangeError("hd95 needs shape and spacing");
      const p = new Uint8Array(prediction.length), r = new Uint8Array(reference.length);
      for (let i = 0; i < p.length; i++) {
        p[i] = prediction[i] === k ? 1 : 0;
        r[i] = reference[i] === k ? 1 : 0;
      }
      m.hd95 = hausdorff95(p, r, options.shape, options.spacing);
    }
    out[k] = m;
  }
  return out;
}

/** Mean of the non-NaN values (nnU-Net's `np.nanmean`); NaN when there are none. */
export function nanMean(values: readonly number[]): number {
  const kept = values.filter((v) => !Number.isNaN(v));
  return kept.length === 0 ? NaN : kept.reduce((a, b) => a + b, 0) / kept.length;
}
