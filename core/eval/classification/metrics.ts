/**
 * Classification metrics: accuracy, balanced accuracy (mean per-class recall over the classes present in
 * the reference, as scikit-learn) and AUROC (binary: the positive class's score; multi-class: one-vs-rest,
 * macro-averaged over the classes that have both positives and negatives). AUROC counts ties as half
 * (the Mann–Whitney statistic with mid-ranks), so it equals the probability that a random positive
 * scores above a random negative, ties counting ½.
 *
 * @module
 */

function checkLabels(labels: ArrayLike<number>, classes: number, what: string): void {
  for (let i = 0; i < labels.length; i++) {
    const l = labels[i];
    if (!Number.isInteger(l) || l < 0 || l >= classes) {
      throw new RangeError(`${what}[${i}] = ${l}: expected a class index in [0, ${classes})`);
    }
  }
}

/** Share of predictions equal to the reference. */
export function accuracy(predicted: ArrayLike<number>, reference: ArrayLike<number>): number {
  if (predicted.length !== reference.length || reference.length === 0) {
    throw new RangeError(`accuracy: ${predicted.length} predictions for ${reference.length} references`);
  }
  let right = 0;
  for (let i = 0; i < reference.length; i++) if (predicted[i] === reference[i]) right++;
  return right / reference.length;
}

/** Mean recall over the classes that occur in `reference` (classes only predicted do not count). */
export function balancedAccuracy(
  predicted: ArrayLike<number>,
  reference: ArrayLike<number>,
  classes: number,
): number {
  if (predicted.length !== reference.length || reference.length === 0) {
    throw new RangeError(
      `balancedAccuracy: ${predicted.length} predictions for ${reference.length} references`,
    );
  }
  checkLabels(reference, classes, "reference");
  const total = new Float64Array(classes);
  const right = new Float64Array(classes);
  for (let i = 0; i < reference.length; i++) {
    total[reference[i]]++;
    if (predicted[i] === reference[i]) right[reference[i]]++;
  }
  let sum = 0;
  let present = 0;
  for (let k = 0; k < classes; k++) {
    if (total[k] === 0) continue;
    sum += right[k] / total[k];
    present++;
  }
  return sum / present;
}

/**
 * Binary AUROC of `scores` (higher = more positive) against `positive` flags, ties counting ½; NaN when
 * there are no positives or no negatives.
 */
export function binaryAuroc(scores: ArrayLike<number>, positive: ArrayLike<boolean>): number {
  const n = scores.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[a] - scores[b]);
  // mid-ranks (1-based) of tied groups
  const rank = new Float64Array(n);
  for (let i = 0; i < n;) {
    let j = i;
    while (j + 1 < n && scores[order[j + 1]] === scores[order[i]]) j++;
    const mid = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) rank[order[k]] = mid;
    i = j + 1;
  }
  let positives = 0;
  let rankSum = 0;
  for (let i = 0; i < n; i++) {
    if (!Number.isFinite(scores[i])) throw new RangeError(`auroc: score ${i} is ${scores[i]}`);
    if (positive[i]) {
      positives++;
      rankSum += rank[i];
    }
  }
  const negatives = n - positives;
  if (positives === 0 || negatives === 0) return NaN;
  return (rankSum - positives * (positives + 1) / 2) / (positives * negatives);
}

/** AUROC of a multi-class problem. */
export interface AurocResult {
  /** Binary: the AUROC of class 1's score; more classes: the macro mean of the defined one-vs-rest AUROCs. */
  auroc: number;
  /** One-vs-rest AUROC per class (NaN where the reference lacks positives or negatives of the class). */
  perClass: number[];
  /** Classes left out of the macro mean (no positives or no negatives in the reference). */
  undefinedClasses: number[];
}

/**
 * AUROC from class scores (probabilities or logits) `scores` [N, K] row-major and reference labels:
 * binary for K = 2 (class 1's score), else one-vs-rest macro.
 */
export function auroc(scores: ArrayLike<number>, reference: ArrayLike<number>, classes: number): AurocResult {
  const n = reference.length;
  if (scores.length !== n * classes) {
    throw new RangeError(`auroc: ${scores.length} scores for ${n} cases × ${classes} classes`);
  }
  if (classes < 2) throw new RangeError("auroc needs at least 2 classes");
  checkLabels(reference, classes, "reference");
  const perClass: number[] = [];
  for (let k = 0; k < classes; k++) {
    const column = Float64Array.from({ length: n }, (_, i) => scores[i * classes + k]);
    perClass.push(binaryAuroc(column, Array.from(reference, (l) => l === k)));
  }
  const undefinedClasses = perClass.flatMap((a, k) => (Number.isNaN(a) ? [k] : []));
  if (classes === 2) return { auroc: perClass[1], perClass, undefinedClasses };
  const defined = perClass.filter((a) => !Number.isNaN(a));
  return {
    auroc: defined.length === 0 ? NaN : defined.reduce((a, b) => a + b, 0) / defined.length,
    perClass,
    undefinedClasses,
  };
}
