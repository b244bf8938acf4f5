/**
 * Models Genesis' non-linear intensity transform, as nnssl runs it: a cubic Bézier curve with control
 * points (0, 0), (a, b), (c, d), (1, 1), a…d ~ U(0, 1), sampled at 100 000 values of t with the Bernstein
 * polynomials' t and 1 − t swapped (nnssl's `bernstein_poly` is C(n, i)·t^(n−i)·(1 − t)^i, so the samples
 * run from (1, 1) at t = 0 to (0, 0) at t = 1). Then, with probability 0.5, only the x-values are sorted
 * (x ascending, y still descending: a decreasing, i.e. inverting, curve), otherwise both are sorted (an
 * increasing curve). Each voxel v becomes `np.interp(v, xs, ys)`: linear interpolation between the
 * samples, values below 0 or above 1 clamped to the curve's end values.
 *
 * The lookup: the exact `np.interp` of the 100 000 sorted samples is evaluated at 2¹⁶ + 1 evenly spaced
 * points of [0, 1], and each voxel interpolates linearly in that table (3–4× faster than a binary
 * search per voxel over the samples, which misses the cache on every voxel at 160³). The curve is monotone,
 * so the error is bounded by the table's step at the voxel's value (below float32 resolution for most
 * curves; {@link applyIntensityCurve}).
 *
 * @module
 */
import type { Rng } from "@voxssl/core";

/** A sampled intensity curve: `xs` ascending, `ys` the values at `xs`. */
export interface IntensityCurve {
  /** Sample abscissae, ascending (from 0 to 1). */
  xs: Float64Array;
  /** Sample values. */
  ys: Float64Array;
  /** Whether the curve decreases (only the x-values were sorted: dark becomes bright). */
  inverting: boolean;
}

/** Options of {@link drawIntensityCurve}. */
export interface CurveOptions {
  /** Samples of the curve (nnssl: 100 000). */
  samples?: number;
  /** Probability of the inverting curve (nnssl: 0.5). */
  invertRate?: number;
}

/**
 * nnssl's `bezier_curve(points, nTimes)`: the x- and y-values of the curve at t = linspace(0, 1, n), with
 * t and 1 − t swapped in the Bernstein polynomials (so index 0 is the last control point).
 */
export function bezierSamples(
  points: readonly (readonly [number, number])[],
  n: number,
): { xs: Float64Array; ys: Float64Array } {
  const order = points.length - 1;
  const binomial = Array.from({ length: order + 1 }, (_, i) => {
    let c = 1;
    for (let k = 1; k <= i; k++) c = (c * (order - i + k)) / k;
    return c;
  });
  const px = Float64Array.from(points, (p) => p[0]);
  const py = Float64Array.from(points, (p) => p[1]);
  const xs = new Float64Array(n);
  const ys = new Float64Array(n);
  const tp = new Float64Array(order + 1); // t^i
  const up = new Float64Array(order + 1); // (1 − t)^i
  tp[0] = up[0] = 1;
  const step = n > 1 ? 1 / (n - 1) : 0;
  for (let k = 0; k < n; k++) {
    const t = k === n - 1 ? 1 : k * step; // numpy's linspace
    for (let i = 1; i <= order; i++) {
      tp[i] = tp[i - 1] * t;
      up[i] = up[i - 1] * (1 - t);
    }
    let x = 0, y = 0;
    for (let i = 0; i <= order; i++) {
      const b = binomial[i] * tp[order - i] * up[i];
      x += px[i] * b;
      y += py[i] * b;
    }
    xs[k] = x;
    ys[k] = y;
  }
  return { xs, ys };
}

/**
 * Draws a curve as nnssl: a, b, c, d (control points (a, b) and (c, d)), the samples, then with
 * probability `invertRate` sorts the x-values only (inverting), else both.
 */
export function drawIntensityCurve(rng: Rng, options: CurveOptions = {}): IntensityCurve {
  const a = rng.next(), b = rng.next(), c = rng.next(), d = rng.next();
  const { xs, ys } = bezierSamples([[0, 0], [a, b], [c, d], [1, 1]], options.samples ?? 100_000);
  const inverting = rng.next() < (options.invertRate ?? 0.5);
  sortAscending(xs);
  if (!inverting) sortAscending(ys);
  return { xs, ys, inverting };
}

/**
 * Sorts in place, ascending. The samples of a curve come out descending (both coordinates are monotone
 * in t, rounding aside), so they are reversed first and sorted only if that left them out of order.
 */
function sortAscending(v: Float64Array): void {
  v.reverse();
  for (let i = 1; i < v.length; i++) {
    if (v[i] < v[i - 1]) {
      v.sort();
      return;
    }
  }
}

/**
 * `np.interp(v, xs, ys)` for one value: ys[0] below xs[0], ys[last] at and above xs[last], otherwise linear
 * between xs[j] ≤ v < xs[j + 1] (binary search). NaN gives NaN. The exact rule; {@link applyIntensityCurve}
 * uses it through a table.
 */
export function interpolateCurve(v: number, xs: Float64Array, ys: Float64Array): number {
  const n = xs.length;
  if (Number.isNaN(v)) return NaN;
  if (v < xs[0]) return ys[0];
  if (v >= xs[n - 1]) return ys[n - 1];
  let a = 0, b = n - 1; // xs[a] ≤ v < xs[b]
  while (b - a > 1) {
    const m = (a + b) >>> 1;
    if (xs[m] <= v) a = m;
    else b = m;
  }
  return ys[a] + ((v - xs[a]) * (ys[a + 1] - ys[a])) / (xs[a + 1] - xs[a]);
}

/** Cells of the uniform table over [0, 1] that {@link applyIntensityCurve} interpolates in. */
export const CURVE_TABLE_CELLS = 1 << 16;

/**
 * The curve resampled at v = k / cells, k = 0 … cells (exact `np.interp` at each point), plus one repeat of
 * the last value.
 */
export function curveTable(curve: IntensityCurve, cells = CURVE_TABLE_CELLS): Float64Array {
  const { xs, ys } = curve;
  const n = xs.length;
  const table = new Float64Array(cells + 2);
  // one pass: the points k / cells ascend, so the segment index j only moves forward
  for (let k = 0, j = 0; k <= cells; k++) {
    const v = k / cells;
    if (v < xs[0]) table[k] = ys[0];
    else if (v >= xs[n - 1]) table[k] = ys[n - 1];
    else {
      while (xs[j + 1] <= v) j++;
      table[k] = ys[j] + ((v - xs[j]) * (ys[j + 1] - ys[j])) / (xs[j + 1] - xs[j]);
    }
  }
  table[cells + 1] = table[cells];
  return table;
}

/**
 * Maps every voxel of `data` through the curve in place: v < 0 → the curve's value at 0, v > 1 → its value
 * at 1 (np.interp's clamping; nnssl's curves run from x = 0 to x = 1), otherwise linear interpolation in the
 * uniform table of {@link curveTable}. The curve is monotone, so the result differs from np.interp on the
 * 100 000 samples by at most the table's step at v (`table[k + 1] − table[k]`), under 10⁻⁶ for most curves.
 * NaN stays NaN.
 */
export function applyIntensityCurve(
  data: Float32Array,
  curve: IntensityCurve,
  table = curveTable(curve),
): void {
  const cells = table.length - 2;
  const first = table[0], last = table[cells];
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v > 0 && v < 1) {
      const f = v * cells;
      const k = Math.floor(f);
      const y0 = table[k];
      data[i] = y0 + (f - k) * (table[k + 1] - y0);
    } else if (v <= 0) {
      data[i] = first;
    } else if (v >= 1) {
      data[i] = last;
    } // NaN stays NaN
  }
}

/** The non-linear intensity transform of one sample with a freshly drawn curve (in place); returns the curve. */
export function nonlinearIntensity(data: Float32Array, rng: Rng, options: CurveOptions = {}): IntensityCurve {
  const curve = drawIntensityCurve(rng, options);
  applyIntensityCurve(data, curve);
  return curve;
}
