/**
 * Reference row gather / scatter by per-sample index in float64 (see core/tensor/ops/gather.ts), with
 * their gradients written out directly (the tests check them against finite differences too). Indices
 * are a RefTensor [B, K] of integers; an index outside [0, N) is skipped exactly as the kernels do: a
 * zero row in the gather, no write in the scatter, no gradient.
 */
import type { RefTensor } from "./ops.ts";

function inRange(v: number, n: number): boolean {
  return Number.isInteger(v) && v >= 0 && v < n;
}

/** out[b, k, :] = x[bx, index[b, k], :], bx = b (or 0 when x has one sample). */
export function gatherRowsRef(x: RefTensor, index: RefTensor): RefTensor {
  const [bx, n, c] = x.shape;
  const [b, k] = index.shape;
  if (x.shape.length !== 3 || index.shape.length !== 2 || (bx !== b && bx !== 1)) {
    throw new RangeError(`gatherRowsRef(): x [${x.shape}], index [${index.shape}]`);
  }
  const data = new Float64Array(b * k * c);
  for (let i = 0; i < b; i++) {
    for (let j = 0; j < k; j++) {
      const v = index.data[i * k + j];
      if (!inRange(v, n)) continue;
      const from = ((bx === 1 ? 0 : i) * n + v) * c;
      for (let e = 0; e < c; e++) data[(i * k + j) * c + e] = x.data[from + e];
    }
  }
  return { shape: [b, k, c], data };
}

/** Gradient of {@link gatherRowsRef} w.r.t. x [Bx, N, C]: scatter-add of g [B, K, C] (sum over b if Bx = 1). */
export function gatherRowsGradRef(g: RefTensor, index: RefTensor, xShape: readonly number[]): RefTensor {
  const [bx, n, c] = xShape;
  const [b, k] = index.shape;
  const data = new Float64Array(bx * n * c);
  for (let i = 0; i < b; i++) {
    for (let j = 0; j < k; j++) {
      const v = index.data[i * k + j];
      if (!inRange(v, n)) continue;
      const to = ((bx === 1 ? 0 : i) * n + v) * c;
      for (let e = 0; e < c; e++) data[to + e] += g.data[(i * k + j) * c + e];
    }
  }
  return { shape: [...xShape], data };
}

/** base [B, N, C] with out[b, index[b, k], :] = src[b, k, :] (distinct indices per sample). */
export function scatterRowsRef(base: RefTensor, index: RefTensor, src: RefTensor): RefTensor {
  const [b, n, c] = base.shape;
  const k = index.shape[1];
  if (index.shape[0] !== b || src.shape.join() !== [b, k, c].join()) {
    throw new RangeError(
      `scatterRowsRef(): base [${base.shape}], index [${index.shape}], src [${src.shape}]`,
    );
  }
  const data = Float64Array.from(base.data);
  for (let i = 0; i < b; i++) {
    for (let j = 0; j < k; j++) {
      const v = index.data[i * k + j];
      if (!inRange(v, n)) continue;
      for (let e = 0; e < c; e++) data[(i * n + v) * c + e] = src.data[(i * k + j) * c + e];
    }
  }
  return { shape: [b, n, c], data };
}

/** Gradients of {@link scatterRowsRef}: base gets g with the indexed rows zeroed, src the indexed rows. */
export function scatterRowsGradRef(g: RefTensor, index: RefTensor): { base: RefTensor; src: RefTensor } {
  const [b, n, c] = g.shape;
  const k = index.shape[1];
  const base = Float64Array.from(g.data);
  for (let i = 0; i < b; i++) {
    for (let j = 0; j < k; j++) {
      const v = index.data[i * k + j];
      if (inRange(v, n)) base.fill(0, (i * n + v) * c, (i * n + v + 1) * c);
    }
  }
  return { base: { shape: [b, n, c], data: base }, src: gatherRowsRef(g, index) };
}
