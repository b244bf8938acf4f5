/**
 * AUROC on bootstrap resamples: the weighted one-pass AUROC against pair counting over the drawn case list
 * (repeats as separate cases, ties ½) on random scores with ties, binary and multi-class, and against
 * metrics.ts's `auroc` at unit weights; the stratified crossed bootstrap's draws (every class keeps its
 * count and draws only from itself; one stratum draws as the plain crossed bootstrap).
 */
import { assert, assertEquals, assertThrows } from "../../../assert.ts";
import {
  aurocInterval,
  crossedBootstrapStatistic,
  resampledAuroc,
  stratifiedCrossedBootstrapStatistic,
  weightedAuroc,
} from "../../../../core/eval/benchmark/mod.ts";
import { auroc } from "../../../../core/eval/classification/metrics.ts";
import { seededRandom } from "../../../helpers.ts";

/** AUROC of scores [case][class] over a list of case indices by counting every (positive, negative) pair. */
function pairCountAuroc(scores: number[][], labels: number[], classes: number, list: number[]): number {
  const per = (k: number) => {
    let wins = 0;
    let pairs = 0;
    for (const i of list) {
      for (const j of list) {
        if (labels[i] !== k || labels[j] === k) continue;
        wins += scores[i][k] > scores[j][k] ? 1 : scores[i][k] === scores[j][k] ? 0.5 : 0;
        pairs++;
      }
    }
    return pairs === 0 ? NaN : wins / pairs;
  };
  if (classes === 2) return per(1);
  const defined = Array.from({ length: classes }, (_, k) => per(k)).filter((a) => !Number.isNaN(a));
  return defined.reduce((a, b) => a + b, 0) / defined.length;
}

Deno.test("weighted AUROC of a resample equals pair counting over the drawn cases (ties, repeats, 2 and 4 classes)", () => {
  const rand = seededRandom(11);
  for (const classes of [2, 4]) {
    const n = 13;
    // scores on a coarse grid so ties happen; class 3 absent when 4 classes (left out of the macro mean)
    const labels = Array.from({ length: n }, (_, i) => i % (classes === 4 ? 3 : 2));
    const probabilities = [0, 1, 2].map(() =>
      labels.map(() => Array.from({ length: classes }, () => Math.round(rand() * 5) / 5))
    );
    const of = weightedAuroc(probabilities, labels, classes);
    for (let seed = 0; seed < 3; seed++) {
      const all = labels.map((_, i) => i);
      const unit = resampledAuroc(of, n, [seed], all);
      const ref = pairCountAuroc(probabilities[seed], labels, classes, all);
      assert(Math.abs(unit - ref) < 1e-12, `${classes} classes, seed ${seed}: ${unit} vs ${ref}`);
      const metrics = auroc(probabilities[seed].flat(), labels, classes).auroc;
      assert(Math.abs(unit - metrics) < 1e-12, `metrics.ts: ${metrics}`);
    }
    for (let trial = 0; trial < 20; trial++) {
      const rows = [0, 1, 2].map(() => Math.floor(rand() * 3));
      const columns = labels.map(() => Math.floor(rand() * n));
      if (new Set(columns.map((j) => labels[j])).size < (classes === 4 ? 3 : 2)) continue;
      const ref = rows.reduce((s, r) => s + pairCountAuroc(probabilities[r], labels, classes, columns), 0) /
        3;
      const got = resampledAuroc(of, n, rows, columns);
      assert(Math.abs(got - ref) < 1e-12, `${classes} classes, trial ${trial}: ${got} vs ${ref}`);
    }
  }
});

Deno.test("stratified crossed bootstrap: every class keeps its count and its own cases; one stratum as the plain one", () => {
  const options = { confidence: 0.95, replicates: 200, seed: 3 };
  const strata = [2, 0, 0, 2, 1, 0, 2, 2];
  stratifiedCrossedBootstrapStatistic(3, strata, (rows, columns) => {
    assertEquals(rows.length, 3);
    assert(rows.every((r) => r >= 0 && r < 3));
    // stratum after stratum in order of first appearance: 2 (4 cases), 0 (3), 1 (1)
    assertEquals(Array.from(columns, (j) => strata[j]), [2, 2, 2, 2, 0, 0, 0, 1]);
    return 0;
  }, options);
  const sum = (rows: Int32Array, columns: Int32Array) =>
    rows.reduce((a, r) => a + r, 0) * 100 + columns.reduce((a, c, i) => a + c * (i + 1), 0);
  const plain = crossedBootstrapStatistic(3, 5, sum, options);
  const one = stratifiedCrossedBootstrapStatistic(3, [7, 7, 7, 7, 7], sum, options);
  assertEquals(Array.from(one), Array.from(plain));
  assertThrows(() => stratifiedCrossedBootstrapStatistic(0, strata, () => 0, options), Error, "empty");
});

Deno.test("AUROC interval: null with one class among the test cases; brackets the estimate otherwise", () => {
  const options = { confidence: 0.9, replicates: 500, seed: 1 };
  const probabilities = [[[0.8, 0.2], [0.6, 0.4], [0.7, 0.3]]];
  assertEquals(aurocInterval(probabilities, [0, 0, 0], 2, options), null);
  const rand = seededRandom(4);
  const labels = [0, 1, 0, 1, 1, 0, 0, 1];
  const scores = [0, 1].map(() => labels.map((l) => [0.5 + 0.3 * rand() - 0.2 * l]).map(([p]) => [p, 1 - p]));
  const interval = aurocInterval(scores, labels, 2, options)!;
  assert(interval.lower <= interval.mean && interval.mean <= interval.upper, JSON.stringify(interval));
  assert(interval.lower < interval.upper, "resamples vary");
});
