/**
 * Scoring a classifier on held-out cases: one forward pass per case on its centred patch (batches.ts),
 * network and head in evaluation mode (no dropout), softmax on the host in float64, the predicted class
 * the most probable one (the first on ties). The summary holds accuracy, balanced accuracy and AUROC
 * (metrics.ts: class 1's probability for two classes, one-vs-rest macro for more); the per-case table
 * is written as CSV (case, path, label, predicted, one probability column per class) and the summary as
 * JSON, both atomically.
 *
 * @module
 */
import type { Shape3 } from "../../data/mod.ts";
import { writeFileAtomic } from "../../nn/mod.ts";
import type { Network } from "../../plugin/mod.ts";
import { noGrad, scope, tensor } from "../../tensor/mod.ts";
import { centreCrop, type ClassificationVolume } from "./batches.ts";
import { type ClassificationHead, classificationLogits } from "./head.ts";
import { accuracy, auroc, balancedAccuracy } from "./metrics.ts";

/** One scored case. */
export interface ClassifiedCase {
  /** Case id. */
  id: string;
  /** The reference class index. */
  label: number;
  /** The predicted class index. */
  predicted: number;
  /** Softmax probabilities, one per class. */
  probabilities: number[];
}

/** Test-set classification scores. */
export interface ClassificationScores {
  /** Class names (index order). */
  classes: string[];
  /** Test cases scored. */
  cases: number;
  /** Share of cases predicted right. */
  accuracy: number;
  /** Mean recall over the classes present. */
  balancedAccuracy: number;
  /** Binary: class 1's AUROC; more classes: the one-vs-rest macro mean (null where undefined). */
  auroc: number | null;
  /** One-vs-rest AUROC per class (null where the test set lacks positives or negatives). */
  aurocPerClass: (number | null)[];
  /** Cases per class in the test set. */
  support: number[];
  /** Per case. */
  predictions: ClassifiedCase[];
}

/** Softmax of one row in float64 (max subtracted). */
export function softmaxRow(logits: ArrayLike<number>): number[] {
  let max = -Infinity;
  for (let k = 0; k < logits.length; k++) max = Math.max(max, logits[k]);
  const e = Array.from(logits, (x) => Math.exp(x - max));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

/** Index of the largest value (the first on ties). */
export function argmax(values: readonly number[]): number {
  let best = 0;
  for (let k = 1; k < values.length; k++) if (values[k] > values[best]) best = k;
  return best;
}

/** Scores from per-case predictions (pure arithmetic; what {@link scoreClassifier} returns). */
export function summarisePredictions(predictions: ClassifiedCase[], classes: string[]): ClassificationScores {
  const k = classes.length;
  const labels = predictions.map((p) => p.label);
  const predicted = predictions.map((p) => p.predicted);
  const probabilities = predictions.flatMap((p) => p.probabilities);
  const roc = auroc(probabilities, labels, k);
  const finite = (x: number) => (Number.isFinite(x) ? x : null);
  const support = Array.from({ length: k }, (_, c) => labels.filter((l) => l === c).length);
  return {
    classes,
    cases: predictions.length,
    accuracy: accuracy(predicted, labels),
    balancedAccuracy: balancedAccuracy(predicted, labels, k),
    auroc: finite(roc.auroc),
    aurocPerClass: roc.perClass.map(finite),
    support,
    predictions,
  };
}

/**
 * Predicts `cases` with `network` and `head` (both put in eval mode) on centred patches of `patch`, and
 * summarises. `classes` are the class names.
 */
export async function scoreClassifier(
  network: Network,
  head: ClassificationHead,
  cases: readonly ClassificationVolume[],
  patch: Shape3,
  classes: string[],
): Promise<ClassificationScores> {
  network.eval();
  head.eval();
  const predictions: ClassifiedCase[] = [];
  for (const c of cases) {
    const x = centreCrop(c, patch);
    const y = noGrad(() =>
      scope(() => classificationLogits(network, head, tensor(x, [1, c.image.length, ...patch])))
    );
    let logits: ArrayLike<number>;
    try {
      logits = await y.toArray();
    } finally {
      y.dispose();
    }
    const probabilities = softmaxRow(logits);
    predictions.push({ id: c.id, label: c.classIndex, predicted: argmax(probabilities), probabilities });
  }
  return summarisePredictions(predictions, classes);
}

function csvField(value: string): string {
  return /[",\n\r]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

/**
 * The per-case CSV: `case,path,label,predicted,p_<class>…` (labels and predictions as class names;
 * `paths` maps a case id to its first image).
 */
export function predictionsCsv(scores: ClassificationScores, paths: Record<string, string>): string {
  const header = ["case", "path", "label", "predicted", ...scores.classes.map((c) => `p_${c}`)];
  const rows = scores.predictions.map((p) => [
    p.id,
    paths[p.id] ?? "",
    scores.classes[p.label],
    scores.classes[p.predicted],
    ...p.probabilities.map((v) => v.toPrecision(6)),
  ]);
  return [header, ...rows].map((r) => r.map(csvField).join(",")).join("\n") + "\n";
}

/** Writes `<dir>/test_predictions.csv` and `<dir>/test_scores.json` (the summary without the per-case list). */
export async function writeClassificationScores(
  dir: string,
  scores: ClassificationScores,
  paths: Record<string, string>,
): Promise<{ csv: string; json: string }> {
  const csv = `${dir}/test_predictions.csv`;
  const json = `${dir}/test_scores.json`;
  await writeFileAtomic(csv, predictionsCsv(scores, paths));
  const { predictions: _, ...summary } = scores;
  await writeFileAtomic(json, JSON.stringify(summary, null, 2) + "\n");
  return { csv, json };
}
