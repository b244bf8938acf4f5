/**
 * The fine-tuning run's own test score: each held-out case predicted with tiles of the training patch
 * (step ½ patch, overlapping softmax averaged with equal weights), argmax, and the hard Dice per class,
 * 2|P∩R| / (|P| + |R|). A class absent from both prediction and reference has no Dice (NaN, left out of
 * the means, as nnU-Net does). This is a quick score in preprocessed space for the run's summary;
 * `voxssl predict` / `evaluate` are the full inference (Gaussian weighting, mirroring, original geometry).
 *
 * @module
 */
import type { Shape3 } from "../data/mod.ts";
import type { Network } from "../plugin/mod.ts";
import { noGrad, scope, softmax, tensor } from "../tensor/mod.ts";
import type { SegmentationCase } from "./seg_batches.ts";

/** Tile starts along one axis: 0, step, …, and the last one flush with the end (0 when size ≤ patch). */
export function tileStarts(size: number, patch: number): number[] {
  if (size <= patch) return [0];
  const step = Math.max(1, Math.ceil(patch / 2));
  const starts: number[] = [];
  for (let s = 0; s + patch < size; s += step) starts.push(s);
  starts.push(size - patch);
  return starts;
}

/** Class probabilities [classes, D, H, W] of a case, averaged over overlapping tiles. */
export async function predictCase(
  network: Network,
  c: SegmentationCase,
  patch: Shape3,
  classes: number,
): Promise<Float32Array> {
  const [D, H, W] = c.shape;
  const n = D * H * W;
  const probs = new Float32Array(classes * n);
  const count = new Float32Array(n);
  const pn = patch[0] * patch[1] * patch[2];
  const channels = c.image.length;
  const gpu = network.namedParameters().next().value![1].gpu;
  for (const d0 of tileStarts(D, patch[0])) {
    for (const h0 of tileStarts(H, patch[1])) {
      for (const w0 of tileStarts(W, patch[2])) {
        const input = new Float32Array(channels * pn);
        for (let k = 0; k < channels; k++) {
          for (let d = 0; d < patch[0] && d0 + d < D; d++) {
            for (let h = 0; h < patch[1] && h0 + h < H; h++) {
              const src = ((d0 + d) * H + h0 + h) * W + w0;
              const len = Math.min(patch[2], W - w0);
              input.set(c.image[k].subarray(src, src + len), k * pn + (d * patch[1] + h) * patch[2]);
            }
          }
        }
        const out = scope(() =>
          noGrad(() => softmax(network.forward(tensor(input, [1, channels, ...patch], { gpu })), 1))
        );
        const p = await out.toArray();
        out.dispose();
        for (let d = 0; d < patch[0] && d0 + d < D; d++) {
          for (let h = 0; h < patch[1] && h0 + h < H; h++) {
            for (let w = 0; w < patch[2] && w0 + w < W; w++) {
              const v = ((d0 + d) * H + h0 + h) * W + w0 + w;
              const q = (d * patch[1] + h) * patch[2] + w;
              for (let k = 0; k < classes; k++) probs[k * n + v] += p[k * pn + q];
              count[v]++;
            }
          }
        }
      }
    }
  }
  for (let k = 0; k < classes; k++) for (let v = 0; v < n; v++) probs[k * n + v] /= count[v];
  return probs;
}

/** The argmax label map of probabilities [classes, N]. */
export function argmaxLabels(probs: Float32Array, classes: number): Uint8Array {
  const n = probs.length / classes;
  const out = new Uint8Array(n);
  for (let v = 0; v < n; v++) {
    let best = 0;
    for (let k = 1; k < classes; k++) if (probs[k * n + v] > probs[best * n + v]) best = k;
    out[v] = best;
  }
  return out;
}

/** Hard Dice of class `k` (NaN when the class is absent from both maps). */
export function diceOf(pred: Uint8Array, ref: Uint8Array, k: number): number {
  let tp = 0, p = 0, r = 0;
  for (let i = 0; i < pred.length; i++) {
    const a = pred[i] === k, b = ref[i] === k;
    if (a) p++;
    if (b) r++;
    if (a && b) tp++;
  }
  return p + r === 0 ? NaN : 2 * tp / (p + r);
}

/** Test-set Dice: per case and foreground class, the per-class means and their mean. */
export interface TestScore {
  /** Dice per case id, one entry per foreground class (1…C−1; NaN: class absent from both). */
  perCase: Record<string, number[]>;
  /** Mean over cases per foreground class (NaN entries left out). */
  perClass: number[];
  /** Mean of `perClass`. */
  meanDice: number;
}

const meanOf = (xs: number[]) => {
  const ok = xs.filter((x) => !Number.isNaN(x));
  return ok.length ? ok.reduce((a, b) => a + b, 0) / ok.length : NaN;
};

/**
 * Scores `network` (put in eval mode) on `cases` with tiles of `window` (the training patch, or a larger
 * window a fully convolutional network accepts: one forward per case when it covers the case).
 */
export async function scoreCases(
  network: Network,
  cases: readonly SegmentationCase[],
  window: Shape3,
  classes: number,
): Promise<TestScore> {
  network.eval();
  const perCase: Record<string, number[]> = {};
  for (const c of cases) {
    const pred = argmaxLabels(await predictCase(network, c, window, classes), classes);
    perCase[c.id] = Array.from({ length: classes - 1 }, (_, k) => diceOf(pred, c.label, k + 1));
  }
  const perClass = Array.from(
    { length: classes - 1 },
    (_, k) => meanOf(Object.values(perCase).map((d) => d[k])),
  );
  return { perCase, perClass, meanDice: meanOf(perClass) };
}
