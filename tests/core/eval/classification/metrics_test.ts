/**
 * Classification metrics on hand-made cases and against independent float64 references: AUROC from the
 * O(n²) pair count (positive above negative counts 1, a tie ½), on scores rounded to force ties.
 */
import { assert, assertEquals, assertThrows } from "../../../assert.ts";
import { accuracy, auroc, balancedAccuracy, binaryAuroc } from "../../../../core/eval/classification/mod.ts";
import { seededRandom } from "../../../helpers.ts";

/** P(positive > negative) + ½ P(tie), by counting every pair. */
function pairAuroc(scores: number[], positive: boolean[]): number {
  let wins = 0;
  let pairs = 0;
  scores.forEach((sp, i) => {
    if (!positive[i]) return;
    scores.forEach((sn, j) => {
      if (positive[j]) return;
      pairs++;
      wins += sp > sn ? 1 : sp === sn ? 0.5 : 0;
    });
  });
  return wins / pairs;
}

Deno.test("accuracy and balanced accuracy on hand-made cases", () => {
  assertEquals(accuracy([0, 0, 1, 1], [0, 0, 0, 1]), 0.75);
  // recalls: class 0 2/3, class 1 1/1 → 5/6
  assert(Math.abs(balancedAccuracy([0, 0, 1, 1], [0, 0, 0, 1], 2) - 5 / 6) < 1e-15);
  // class 2 only predicted, never in the reference: it does not count (scikit-learn's rule)
  assert(Math.abs(balancedAccuracy([0, 2, 1, 1], [0, 0, 1, 1], 3) - 0.75) < 1e-15);
  assertThrows(() => balancedAccuracy([0], [3], 3), RangeError, "reference[0] = 3");
  assertThrows(() => accuracy([0, 1], [0]), RangeError);
});

Deno.test("binary AUROC: the textbook case, ties counting ½, degenerate references", () => {
  // scikit-learn's roc_auc_score example: 0.75
  assertEquals(binaryAuroc([0.1, 0.4, 0.35, 0.8], [false, false, true, true]), 0.75);
  assertEquals(binaryAuroc([0.5, 0.5, 0.5, 0.5], [false, true, false, true]), 0.5);
  assertEquals(binaryAuroc([0.2, 0.5, 0.5, 0.9], [false, false, true, true]), 0.875);
  assert(Number.isNaN(binaryAuroc([0.1, 0.2], [true, true])));
  const next = seededRandom(3);
  for (let trial = 0; trial < 20; trial++) {
    const n = 5 + Math.floor(next() * 40);
    const scores = Array.from({ length: n }, () => Math.round(next() * 6) / 6); // many ties
    const positive = Array.from({ length: n }, (_, i) => i < 2 ? i === 0 : next() < 0.4);
    assert(Math.abs(binaryAuroc(scores, positive) - pairAuroc(scores, positive)) < 1e-12, `trial ${trial}`);
  }
});

Deno.test("AUROC: binary uses class 1's score; multi-class is one-vs-rest macro against the pair count", () => {
  const next = seededRandom(8);
  const n = 60;
  const k = 4;
  const labels = Array.from({ length: n }, () => Math.floor(next() * k));
  const scores = Array.from({ length: n * k }, () => Math.round(next() * 10) / 10);
  const result = auroc(scores, labels, k);
  const perClass = Array.from({ length: k }, (_, c) =>
    pairAuroc(
      labels.map((_, i) => scores[i * k + c]),
      labels.map((l) => l === c),
    ));
  for (let c = 0; c < k; c++) assert(Math.abs(result.perClass[c] - perClass[c]) < 1e-12, `class ${c}`);
  assert(Math.abs(result.auroc - perClass.reduce((a, b) => a + b, 0) / k) < 1e-12);
  assertEquals(result.undefinedClasses, []);

  const binaryLabels = [0, 1, 1, 0, 1];
  const p1 = [0.2, 0.7, 0.4, 0.4, 0.9];
  const binary = auroc(p1.flatMap((p) => [1 - p, p]), binaryLabels, 2);
  assert(Math.abs(binary.auroc - pairAuroc(p1, binaryLabels.map((l) => l === 1))) < 1e-12);

  // a class absent from the reference is left out of the macro mean and reported
  const missing = auroc([0.7, 0.2, 0.1, 0.1, 0.8, 0.1, 0.3, 0.3, 0.4], [0, 1, 1], 3);
  assertEquals(missing.undefinedClasses, [2]);
  assert(Math.abs(missing.auroc - (missing.perClass[0] + missing.perClass[1]) / 2) < 1e-15);
  assertThrows(() => auroc([0.1, 0.9], [0, 1], 2), RangeError, "2 scores for 2 cases × 2 classes");
});
