/**
 * The crossed bootstrap against its exact distribution: for a small seeds × cases matrix every ordered
 * resample (S^S row draws × C^C column draws, equally likely) is enumerated in float64, independently of
 * the sampler, and the Monte Carlo replicates and interval are checked against that exact distribution.
 */
import { assert, assertEquals, assertThrows } from "../../../assert.ts";
import {
  bootstrapReplicates,
  crossedBootstrap,
  quantileSorted,
} from "../../../../core/eval/benchmark/bootstrap.ts";

/** mulberry32: test data only (not the generator under test). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Every ordered tuple of `n` indices in [0, n). */
function tuples(n: number): number[][] {
  let out: number[][] = [[]];
  for (let k = 0; k < n; k++) out = out.flatMap((t) => Array.from({ length: n }, (_, i) => [...t, i]));
  return out;
}

/** The exact crossed-bootstrap distribution of the mean (all draws equally likely), sorted. */
function exactDistribution(values: number[][]): number[] {
  const s = values.length;
  const c = values[0].length;
  const out: number[] = [];
  for (const rows of tuples(s)) {
    for (const cols of tuples(c)) {
      let sum = 0;
      for (const r of rows) for (const k of cols) sum += values[r][k];
      out.push(sum / (s * c));
    }
  }
  return out.sort((a, b) => a - b);
}

Deno.test("quantileSorted interpolates like numpy's default (type 7)", () => {
  // numpy.quantile([1, 2, 3, 4], 0.25) = 1.75; numpy.quantile(range(10), 0.975) = 8.775
  assertEquals(quantileSorted([1, 2, 3, 4], 0.25), 1.75);
  assert(Math.abs(quantileSorted([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 0.975) - 8.775) < 1e-12);
  assertEquals(quantileSorted([5], 0.3), 5);
});

Deno.test("crossed bootstrap matches its exact enumerated distribution (2 seeds × 4 cases)", () => {
  const rand = mulberry32(7);
  const values = [0, 1].map(() => [0, 1, 2, 3].map(() => 0.5 + 0.45 * rand()));
  const exact = exactDistribution(values); // 4 × 256 equally likely resamples
  const exactMean = exact.reduce((a, b) => a + b, 0) / exact.length;
  const exactVar = exact.reduce((a, b) => a + (b - exactMean) ** 2, 0) / exact.length;
  const B = 20000;
  const options = { confidence: 0.9, replicates: B, seed: 3 };
  const reps = bootstrapReplicates(values, options);
  const mean = reps.reduce((a, b) => a + b, 0) / B;
  const variance = reps.reduce((a, b) => a + (b - mean) ** 2, 0) / (B - 1);
  assert(Math.abs(mean - exactMean) < 4 * Math.sqrt(exactVar / B), `mean ${mean} vs exact ${exactMean}`);
  assert(Math.abs(variance / exactVar - 1) < 0.06, `variance ${variance} vs exact ${exactVar}`);

  const interval = crossedBootstrap(values, options);
  const grand = values.flat().reduce((a, b) => a + b, 0) / 8;
  assert(Math.abs(interval.mean - grand) < 1e-15, "the point estimate is the plain mean");
  const cdfBelow = (x: number) => exact.filter((v) => v < x).length / exact.length;
  const cdfAt = (x: number) => exact.filter((v) => v <= x).length / exact.length;
  for (const [bound, p] of [[interval.lower, 0.05], [interval.upper, 0.95]] as const) {
    const tol = 4 * Math.sqrt(p * (1 - p) / B);
    assert(
      cdfBelow(bound) <= p + tol && cdfAt(bound) >= p - tol,
      `bound ${bound}: exact CDF ${cdfBelow(bound)}..${cdfAt(bound)} vs ${p}`,
    );
  }
});

Deno.test("crossed bootstrap: one seed is the case bootstrap, exact for 5 cases", () => {
  const rand = mulberry32(11);
  const values = [[0, 1, 2, 3, 4].map(() => rand())];
  const exact = exactDistribution(values); // 5^5 resamples
  const B = 20000;
  const interval = crossedBootstrap(values, { confidence: 0.95, replicates: B, seed: 1 });
  for (const [bound, p] of [[interval.lower, 0.025], [interval.upper, 0.975]] as const) {
    const tol = 4 * Math.sqrt(p * (1 - p) / B);
    const below = exact.filter((v) => v < bound).length / exact.length;
    const at = exact.filter((v) => v <= bound).length / exact.length;
    assert(below <= p + tol && at >= p - tol, `bound ${bound}: exact CDF ${below}..${at} vs ${p}`);
  }
});

Deno.test("crossed bootstrap is reproducible, collapses on one value, refuses ragged or NaN input", () => {
  const values = [[0.1, 0.7, 0.4], [0.3, 0.9, 0.2]];
  const options = { confidence: 0.95, replicates: 500, seed: 9 };
  assertEquals(crossedBootstrap(values, options), crossedBootstrap(values, options));
  const other = crossedBootstrap(values, { ...options, seed: 10 });
  assert(
    other.lower !== crossedBootstrap(values, options).lower ||
      other.upper !== crossedBootstrap(values, options).upper,
  );
  assertEquals(crossedBootstrap([[0.8]], options), { mean: 0.8, lower: 0.8, upper: 0.8 });
  assertThrows(() => crossedBootstrap([[0.1, 0.2], [0.3]], options), Error, "same cases");
  assertThrows(() => crossedBootstrap([[0.1, NaN]], options), Error, "not finite");
});
