/**
 * AUROC of a classification entry with its interval: the mean over seeds of each seed's AUROC (binary:
 * class 1's score; more classes: one-vs-rest, macro over the classes with positives and negatives, as
 * core/eval/classification/metrics.ts computes it), and a percentile interval from the crossed seeds ×
 * cases bootstrap with the cases **stratified by true class** (bootstrap.ts's
 * {@link stratifiedCrossedBootstrapStatistic}): every resample keeps each class's count, so every
 * one-vs-rest AUROC defined on the test set stays defined on every resample, over the same classes. (The
 * plain crossed bootstrap can draw a resample without a class's positives, where AUROC does not exist,
 * and dropping such resamples would bias the interval.) A resample counts a case drawn n times n times:
 * its AUROC is the Mann–Whitney statistic over the drawn cases with multiplicity, ties counting ½.
 *
 * Each seed's cases are sorted by each class's score once; a resample is then one weighted pass per
 * (drawn seed, class).
 *
 * @module
 */
import {
  type BootstrapOptions,
  type Interval,
  percentileInterval,
  stratifiedCrossedBootstrapStatistic,
} from "./bootstrap.ts";

/** AUROC of seed `row` on cases weighted by `weights` (multiplicity per case); NaN where undefined. */
export type WeightedAuroc = (row: number, weights: Float64Array) => number;

/**
 * The weighted AUROC of every seed of `probabilities` [seed][case][class] against `labels` (class per
 * case): binary for 2 classes (class 1's score), else the macro mean over the classes whose positives and
 * negatives both have weight.
 */
export function weightedAuroc(probabilities: number[][][], labels: number[], classes: number): WeightedAuroc {
  const scored = classes === 2 ? [1] : Array.from({ length: classes }, (_, k) => k);
  // order[seed][class]: case indices by ascending score of that class
  const order = probabilities.map((seed) =>
    scored.map((k) => Int32Array.from(labels.keys()).sort((a, b) => seed[a][k] - seed[b][k]))
  );
  return (row, weights) => {
    let sum = 0;
    let defined = 0;
    scored.forEach((k, c) => {
      const a = classAuroc(order[row][c], probabilities[row], k, labels, weights);
      if (Number.isNaN(a)) return;
      sum += a;
      defined++;
    });
    return defined === 0 ? NaN : sum / defined;
  };
}

/** One-vs-rest AUROC of class `k` over cases in ascending score order, weighted; tied groups count ½. */
function classAuroc(
  order: Int32Array,
  scores: number[][],
  k: number,
  labels: number[],
  weights: Float64Array,
): number {
  let negativesBelow = 0;
  let positives = 0;
  let wins = 0;
  for (let i = 0; i < order.length;) {
    const score = scores[order[i]][k];
    let groupPositives = 0;
    let groupNegatives = 0;
    for (; i < order.length && scores[order[i]][k] === score; i++) {
      const j = order[i];
      if (labels[j] === k) groupPositives += weights[j];
      else groupNegatives += weights[j];
    }
    wins += groupPositives * (negativesBelow + groupNegatives / 2);
    negativesBelow += groupNegatives;
    positives += groupPositives;
  }
  return positives === 0 || negativesBelow === 0 ? NaN : wins / (positives * negativesBelow);
}

/** Mean over the drawn seeds of each one's AUROC on the drawn cases (indices, repeats allowed). */
export function resampledAuroc(
  auroc: WeightedAuroc,
  cases: number,
  rows: ArrayLike<number>,
  columns: ArrayLike<number>,
): number {
  const weights = new Float64Array(cases);
  for (let j = 0; j < columns.length; j++) weights[columns[j]]++;
  let sum = 0;
  for (let i = 0; i < rows.length; i++) sum += auroc(rows[i], weights);
  return sum / rows.length;
}

const all = (n: number) => Int32Array.from({ length: n }, (_, i) => i);

/**
 * The entry's AUROC (mean over seeds) with its stratified percentile interval; null where the test set
 * has too few classes for AUROC (no class with both positives and negatives).
 */
export function aurocInterval(
  probabilities: number[][][],
  labels: number[],
  classes: number,
  statistics: BootstrapOptions,
): Interval | null {
  const auroc = weightedAuroc(probabilities, labels, classes);
  const seeds = probabilities.length;
  const estimate = resampledAuroc(auroc, labels.length, all(seeds), all(labels.length));
  if (!Number.isFinite(estimate)) return null;
  const replicates = stratifiedCrossedBootstrapStatistic(
    seeds,
    labels,
    (rows, columns) => resampledAuroc(auroc, labels.length, rows, columns),
    statistics,
  );
  return percentileInterval(estimate, replicates, statistics.confidence);
}

/**
 * The paired Δ of AUROC (own − base) on the same seeds and cases (both [seed][case][class], rows and
 * columns aligned): per resample of the stratified bootstrap, the mean over the drawn seeds of the
 * difference of the two entries' AUROCs on the drawn cases. Null where AUROC is undefined.
 */
export function pairedAurocDelta(
  own: number[][][],
  base: number[][][],
  labels: number[],
  classes: number,
  statistics: BootstrapOptions,
): Interval | null {
  const a = weightedAuroc(own, labels, classes);
  const b = weightedAuroc(base, labels, classes);
  const delta = (rows: ArrayLike<number>, columns: ArrayLike<number>) =>
    resampledAuroc(a, labels.length, rows, columns) - resampledAuroc(b, labels.length, rows, columns);
  const estimate = delta(all(own.length), all(labels.length));
  if (!Number.isFinite(estimate)) return null;
  const replicates = stratifiedCrossedBootstrapStatistic(own.length, labels, delta, statistics);
  return percentileInterval(estimate, replicates, statistics.confidence);
}
