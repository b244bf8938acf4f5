/**
 * Confidence intervals of a mean Dice over seeds and cases: a percentile bootstrap over the crossed design.
 * The scores form a matrix (one row per fine-tuning seed, one column per test case; every seed is evaluated
 * on the same test cases). Each replicate draws S rows and C columns with replacement, independently, and
 * takes the mean of the S × C sub-matrix, so both sources of variation (training randomness and the
 * finite test set) widen the interval. The bootstrap's random stream has a fixed seed: the same scores
 * always give the same interval. Quantiles interpolate linearly between order statistics (numpy's default,
 * Hyndman–Fan type 7).
 *
 * @module
 */
import { createRng } from "../../data/rng.ts";

/** Bootstrap settings. */
export interface BootstrapOptions {
  /** Confidence level, e.g. 0.95. */
  confidence: number;
  /** Number of replicates. */
  replicates: number;
  /** Seed of the resampling stream. */
  seed: number;
}

/** A mean with its confidence interval. */
export interface Interval {
  mean: number;
  lower: number;
  upper: number;
}

/** The type-7 quantile of sorted values (linear interpolation between order statistics). */
export function quantileSorted(sorted: ArrayLike<number>, p: number): number {
  const n = sorted.length;
  if (n === 0) throw new Error("quantile of no values");
  const h = (n - 1) * p;
  const lo = Math.floor(h);
  const hi = Math.min(lo + 1, n - 1);
  return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo]);
}

function checkMatrix(values: number[][]): void {
  if (values.length === 0 || values[0].length === 0) throw new Error("bootstrap of an empty score matrix");
  const c = values[0].length;
  for (const row of values) {
    if (row.length !== c) throw new Error("bootstrap: every seed needs scores for the same cases");
    for (const v of row) if (!Number.isFinite(v)) throw new Error(`bootstrap: score ${v} is not finite`);
  }
}

/** The mean of a seeds × cases matrix. */
export function matrixMean(values: number[][]): number {
  let sum = 0;
  let n = 0;
  for (const row of values) {
    for (const v of row) {
      sum += v;
      n++;
    }
  }
  return sum / n;
}

/**
 * The replicate means of the crossed bootstrap of `values` (seeds × cases), in draw order. Exposed for
 * tests and for custom statistics; {@link crossedBootstrap} sorts them into an interval.
 */
export function bootstrapReplicates(values: number[][], options: BootstrapOptions): Float64Array {
  checkMatrix(values);
  const s = values.length;
  const c = values[0].length;
  const rng = createRng(options.seed, "crossed-bootstrap");
  const out = new Float64Array(options.replicates);
  const rows = new Int32Array(s);
  const columns = new Int32Array(c);
  for (let b = 0; b < options.replicates; b++) {
    for (let i = 0; i < s; i++) rows[i] = rng.int(s);
    for (let j = 0; j < c; j++) columns[j] = rng.int(c);
    let sum = 0;
    for (let i = 0; i < s; i++) {
      const row = values[rows[i]];
      for (let j = 0; j < c; j++) sum += row[columns[j]];
    }
    out[b] = sum / (s * c);
  }
  return out;
}

/** The mean of `values` (seeds × cases) and its percentile-bootstrap confidence interval. */
export function crossedBootstrap(values: number[][], options: BootstrapOptions): Interval {
  const replicates = bootstrapReplicates(values, options).sort();
  const alpha = 1 - options.confidence;
  return {
    mean: matrixMean(values),
    lower: quantileSorted(replicates, alpha / 2),
    upper: quantileSorted(replicates, 1 - alpha / 2),
  };
}

/**
 * The crossed bootstrap of any statistic of a seeds × cases design, for statistics that are not a mean of
 * per-(seed, case) values (balanced accuracy: per-class recalls of the resampled cases). Each replicate
 * draws `seeds` row indices and `cases` column indices with replacement, exactly as
 * {@link bootstrapReplicates} does (same stream, same order: for a mean the replicates are the same), and
 * `statistic` recomputes the score on that resample.
 */
export function crossedBootstrapStatistic(
  seeds: number,
  cases: number,
  statistic: (rows: Int32Array, columns: Int32Array) => number,
  options: BootstrapOptions,
): Float64Array {
  if (seeds === 0 || cases === 0) throw new Error("bootstrap of an empty design");
  const rng = createRng(options.seed, "crossed-bootstrap");
  const out = new Float64Array(options.replicates);
  const rows = new Int32Array(seeds);
  const columns = new Int32Array(cases);
  for (let b = 0; b < options.replicates; b++) {
    for (let i = 0; i < seeds; i++) rows[i] = rng.int(seeds);
    for (let j = 0; j < cases; j++) columns[j] = rng.int(cases);
    const v = statistic(rows, columns);
    if (!Number.isFinite(v)) throw new Error(`bootstrap: statistic ${v} is not finite`);
    out[b] = v;
  }
  return out;
}

/**
 * The crossed bootstrap with the cases stratified: each replicate draws `seeds` row indices with
 * replacement, as {@link crossedBootstrapStatistic} does, and then, stratum by stratum (in order of
 * first appearance in `strata`), as many cases of that stratum as it has, with replacement, from that
 * stratum only; so every stratum keeps its count in every resample. For a statistic that needs every
 * class present (AUROC: a resample without a class's positives has none) this is the bootstrap that
 * keeps it defined. `columns` lists the drawn cases stratum after stratum. With a single stratum the
 * draws are exactly {@link crossedBootstrapStatistic}'s (same stream, same order).
 */
export function stratifiedCrossedBootstrapStatistic(
  seeds: number,
  strata: ArrayLike<number>,
  statistic: (rows: Int32Array, columns: Int32Array) => number,
  options: BootstrapOptions,
): Float64Array {
  if (seeds === 0 || strata.length === 0) throw new Error("bootstrap of an empty design");
  const members = new Map<number, number[]>();
  for (let j = 0; j < strata.length; j++) {
    const list = members.get(strata[j]);
    if (list) list.push(j);
    else members.set(strata[j], [j]);
  }
  const groups = [...members.values()];
  const rng = createRng(options.seed, "crossed-bootstrap");
  const out = new Float64Array(options.replicates);
  const rows = new Int32Array(seeds);
  const columns = new Int32Array(strata.length);
  for (let b = 0; b < options.replicates; b++) {
    for (let i = 0; i < seeds; i++) rows[i] = rng.int(seeds);
    let j = 0;
    for (const group of groups) {
      for (let n = 0; n < group.length; n++) columns[j++] = group[rng.int(group.length)];
    }
    const v = statistic(rows, columns);
    if (!Number.isFinite(v)) throw new Error(`bootstrap: statistic ${v} is not finite`);
    out[b] = v;
  }
  return out;
}

/** The percentile interval of `replicates` around `estimate` (the statistic on the full design). */
export function percentileInterval(
  estimate: number,
  replicates: Float64Array,
  confidence: number,
): Interval {
  const sorted = replicates.slice().sort();
  const alpha = 1 - confidence;
  return {
    mean: estimate,
    lower: quantileSorted(sorted, alpha / 2),
    upper: quantileSorted(sorted, 1 - alpha / 2),
  };
}
