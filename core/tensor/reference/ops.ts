/**
 * The CPU reference backend: every op of core/tensor in plain TypeScript over float64, written for
 * clarity, not speed. It is the oracle of the tests (values, and gradients by finite differences); it is
 * not a user-facing backend.
 */
import { BINARY, type BinaryName, UNARY, type UnaryName } from "../ops/elementwise.ts";
import {
  broadcastShapes,
  broadcastStrides,
  contiguousStrides,
  normalizeAxes,
  normalizeAxis,
  numel,
  reducedShape,
  type Shape,
} from "../shape.ts";

/** A float64 tensor on the host. */
export interface RefTensor {
  /** Size of each dimension, outermost first. */
  shape: number[];
  /** The values, row-major. */
  data: Float64Array;
}

/** Builds a RefTensor (copies `data`). */
export function ref(data: ArrayLike<number>, shape: Shape): RefTensor {
  if (data.length !== numel(shape)) throw new RangeError(`ref(): ${data.length} values for [${shape}]`);
  return { shape: [...shape], data: Float64Array.from(data) };
}

/** Visits every coordinate of `shape` in row-major order. */
function forEachIndex(shape: Shape, fn: (coords: number[], linear: number) => void): void {
  const n = numel(shape);
  const coords = new Array<number>(shape.length).fill(0);
  for (let i = 0; i < n; i++) {
    fn(coords, i);
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++coords[d] < shape[d]) break;
      coords[d] = 0;
    }
  }
}

function dot(coords: readonly number[], strides: readonly number[]): number {
  let o = 0;
  for (let d = 0; d < coords.length; d++) o += coords[d] * strides[d];
  return o;
}

/** Reference of a unary table entry. */
export function unaryRef(name: UnaryName, x: RefTensor, s0 = 0, s1 = 0): RefTensor {
  const f = UNARY[name].ref as (x: number, s0: number, s1: number) => number;
  return { shape: [...x.shape], data: x.data.map((v) => f(v, s0, s1)) };
}

/** Reference of a binary table entry with broadcasting. */
export function binaryRef(name: BinaryName, a: RefTensor, b: RefTensor): RefTensor {
  const f = BINARY[name].ref as (a: number, b: number) => number;
  const shape = broadcastShapes(a.shape, b.shape);
  const sa = broadcastStrides(a.shape, shape);
  const sb = broadcastStrides(b.shape, shape);
  const data = new Float64Array(numel(shape));
  forEachIndex(shape, (c, i) => (data[i] = f(a.data[dot(c, sa)], b.data[dot(c, sb)])));
  return { shape, data };
}

/** Reference of `where(cond, a, b)`. */
export function whereRef(cond: RefTensor, a: RefTensor, b: RefTensor): RefTensor {
  const shape = broadcastShapes(broadcastShapes(cond.shape, a.shape), b.shape);
  const [sc, sa, sb] = [cond, a, b].map((t) => broadcastStrides(t.shape, shape));
  const data = new Float64Array(numel(shape));
  forEachIndex(
    shape,
    (c, i) => (data[i] = cond.data[dot(c, sc)] !== 0 ? a.data[dot(c, sa)] : b.data[dot(c, sb)]),
  );
  return { shape, data };
}

/** Reference of `lerp(start, end, weight)`: start + weight · (end − start), with broadcasting. */
export function lerpRef(start: RefTensor, end: RefTensor, weight: RefTensor): RefTensor {
  const shape = broadcastShapes(broadcastShapes(start.shape, end.shape), weight.shape);
  const [sa, sb, sw] = [start, end, weight].map((t) => broadcastStrides(t.shape, shape));
  const data = new Float64Array(numel(shape));
  forEachIndex(shape, (c, i) => {
    const a = start.data[dot(c, sa)];
    data[i] = a + weight.data[dot(c, sw)] * (end.data[dot(c, sb)] - a);
  });
  return { shape, data };
}

function reduceRef(
  x: RefTensor,
  axesArg: number | readonly number[] | undefined,
  keepDims: boolean,
  init: number,
  combine: (acc: number, v: number) => number,
): RefTensor {
  const axes = normalizeAxes(axesArg, x.shape.length);
  const kept = reducedShape(x.shape, axes, true);
  const keptStrides = contiguousStrides(kept);
  const data = new Float64Array(numel(kept)).fill(init);
  forEachIndex(x.shape, (c, i) => {
    const o = dot(c.map((v, d) => (axes.includes(d) ? 0 : v)), keptStrides);
    data[o] = combine(data[o], x.data[i]);
  });
  return { shape: reducedShape(x.shape, axes, keepDims), data };
}

/** Reference sum. */
export function sumRef(x: RefTensor, axes?: number | readonly number[], keepDims = false): RefTensor {
  return reduceRef(x, axes, keepDims, 0, (a, v) => a + v);
}

/** Reference mean. */
export function meanRef(x: RefTensor, axes?: number | readonly number[], keepDims = false): RefTensor {
  const s = sumRef(x, axes, keepDims);
  const count = numel(x.shape) / Math.max(numel(s.shape), 1);
  return { shape: s.shape, data: s.data.map((v) => v / count) };
}

/** Reference max. */
export function maxRef(x: RefTensor, axes?: number | readonly number[], keepDims = false): RefTensor {
  return reduceRef(x, axes, keepDims, -Infinity, Math.max);
}

/** Reference min. */
export function minRef(x: RefTensor, axes?: number | readonly number[], keepDims = false): RefTensor {
  return reduceRef(x, axes, keepDims, Infinity, Math.min);
}

/** Reference argmax/argmin (first index among ties). */
export function argRef(op: "argmax" | "argmin", x: RefTensor, axis: number, keepDims = false): RefTensor {
  const a = normalizeAxis(axis, x.shape.length);
  const kept = reducedShape(x.shape, [a], true);
  const keptStrides = contiguousStrides(kept);
  const best = new Float64Array(numel(kept)).fill(NaN);
  const index = new Float64Array(numel(kept));
  forEachIndex(x.shape, (c, i) => {
    const o = dot(c.map((v, d) => (d === a ? 0 : v)), keptStrides);
    const v = x.data[i];
    const better = op === "argmax" ? v > best[o] : v < best[o];
    if (Number.isNaN(best[o]) || better) {
      best[o] = v;
      index[o] = c[a];
    }
  });
  return { shape: reducedShape(x.shape, [a], keepDims), data: index };
}

/** Reference permute. */
export function permuteRef(x: RefTensor, perm: readonly number[]): RefTensor {
  const strides = contiguousStrides(x.shape);
  const shape = perm.map((d) => x.shape[d]);
  const data = new Float64Array(numel(shape));
  forEachIndex(shape, (c, i) => (data[i] = x.data[dot(c, perm.map((d) => strides[d]))]));
  return { shape, data };
}

/** Reference slice with clamped, possibly negative bounds. */
export function sliceRef(x: RefTensor, starts: readonly number[], ends: readonly number[]): RefTensor {
  const clampIndex = (i: number, n: number) => Math.min(Math.max(i < 0 ? i + n : i, 0), n);
  const begin = x.shape.map((n, d) => clampIndex(starts[d] ?? 0, n));
  const end = x.shape.map((n, d) => clampIndex(ends[d] ?? n, n));
  const shape = begin.map((b, d) => Math.max(0, end[d] - b));
  const strides = contiguousStrides(x.shape);
  const data = new Float64Array(numel(shape));
  forEachIndex(shape, (c, i) => (data[i] = x.data[dot(c.map((v, d) => v + begin[d]), strides)]));
  return { shape, data };
}

/** Reference constant padding. */
export function padRef(x: RefTensor, padding: readonly (readonly [number, number])[], value = 0): RefTensor {
  const before = x.shape.map((_, d) => padding[d]?.[0] ?? 0);
  const shape = x.shape.map((n, d) => n + before[d] + (padding[d]?.[1] ?? 0));
  const outStrides = contiguousStrides(shape);
  const data = new Float64Array(numel(shape)).fill(value);
  forEachIndex(x.shape, (c, i) => (data[dot(c.map((v, d) => v + before[d]), outStrides)] = x.data[i]));
  return { shape, data };
}

/** Reference broadcast materialisation. */
export function expandRef(x: RefTensor, shape: Shape): RefTensor {
  const s = broadcastStrides(x.shape, shape);
  const data = new Float64Array(numel(shape));
  forEachIndex(shape, (c, i) => (data[i] = x.data[dot(c, s)]));
  return { shape: [...shape], data };
}

/** Reference concatenation. */
export function concatRef(xs: readonly RefTensor[], axis: number): RefTensor {
  const a = normalizeAxis(axis, xs[0].shape.length);
  const shape = [...xs[0].shape];
  shape[a] = xs.reduce((s, x) => s + x.shape[a], 0);
  const outStrides = contiguousStrides(shape);
  const data = new Float64Array(numel(shape));
  let start = 0;
  for (const x of xs) {
    forEachIndex(x.shape, (c, i) => {
      data[dot(c.map((v, d) => (d === a ? v + start : v)), outStrides)] = x.data[i];
    });
    start += x.shape[a];
  }
  return { shape, data };
}

/** Reference softmax / log-softmax along `axis`. */
export function softmaxRef(x: RefTensor, axis = -1, log = false): RefTensor {
  const a = normalizeAxis(axis, x.shape.length);
  const m = maxRef(x, a, true);
  const shifted = binaryRef("sub", x, m);
  const e = unaryRef("exp", shifted);
  const s = sumRef(e, a, true);
  return log ? binaryRef("sub", shifted, unaryRef("log", s)) : binaryRef("div", e, s);
}

/** Reference batched matmul with broadcasting and optional transposed operands. */
export function matmulRef(a: RefTensor, b: RefTensor, transposeA = false, transposeB = false): RefTensor {
  const ra = a.shape.length;
  const rb = b.shape.length;
  const A = transposeA ? permuteRef(a, [...Array(ra - 2).keys(), ra - 1, ra - 2]) : a;
  const B = transposeB ? permuteRef(b, [...Array(rb - 2).keys(), rb - 1, rb - 2]) : b;
  const [m, k] = A.shape.slice(-2);
  const n = B.shape[B.shape.length - 1];
  const batch = broadcastShapes(A.shape.slice(0, -2), B.shape.slice(0, -2));
  const Ae = expandRef(A, [...batch, m, k]);
  const Be = expandRef(B, [...batch, k, n]);
  const nb = numel(batch);
  const data = new Float64Array(nb * m * n);
  for (let t = 0; t < nb; t++) {
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) s += Ae.data[t * m * k + i * k + p] * Be.data[t * k * n + p * n + j];
        data[t * m * n + i * n + j] = s;
      }
    }
  }
  return { shape: [...batch, m, n], data };
}
