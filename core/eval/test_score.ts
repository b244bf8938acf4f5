/**
 * The fine-tuning run's own test score, in preprocessed space: each held-out case predicted with the
 * sliding window (sliding_window.ts: step ½, Gaussian importance, no mirroring), argmax, and the Dice per
 * foreground class (metrics.ts: NaN when a class is in neither map, left out of the means, as nnU-Net
 * does). `voxssl predict` + `evaluate` are the full protocol (original geometry, mirroring, HD95).
 *
 * @module
 */
import type { Shape3 } from "../data/mod.ts";
import type { Network } from "../plugin/mod.ts";
import { classMetrics, nanMean } from "./metrics.ts";
import { networkPredictor } from "./network_predictor.ts";
import type { SegmentationCase } from "./seg_batches.ts";
import { argmaxClasses, slidingWindowPredict } from "./sliding_window.ts";

/** Test-set Dice: per case and foreground class, the per-class means and their mean. */
export interface TestScore {
  /** Dice per case id, one entry per foreground class (1…C−1; NaN: class absent from both). */
  perCase: Record<string, number[]>;
  /** Mean over cases per foreground class (NaN entries left out). */
  perClass: number[];
  /** Mean of `perClass`. */
  meanDice: number;
}

/**
 * Scores `network` (put in eval mode) on `cases` with windows of `window` (the training patch, or a larger
 * window a fully convolutional network accepts: one forward per case when it covers the case).
 */
export async function scoreCases(
  network: Network,
  cases: readonly SegmentationCase[],
  window: Shape3,
  classes: number,
): Promise<TestScore> {
  const perCase: Record<string, number[]> = {};
  const foreground = Array.from({ length: classes - 1 }, (_, k) => k + 1);
  for (const c of cases) {
    const predict = networkPredictor(network, c.image.length);
    const logits = await slidingWindowPredict(c.image, c.shape, predict, {
      patchSize: window,
      numClasses: classes,
    });
    const metrics = classMetrics(argmaxClasses(logits, classes), c.label, foreground);
    perCase[c.id] = foreground.map((k) => metrics[k].dice);
  }
  const perClass = foreground.map((_, k) => nanMean(Object.values(perCase).map((d) => d[k])));
  return { perCase, perClass, meanDice: nanMean(perClass) };
}
