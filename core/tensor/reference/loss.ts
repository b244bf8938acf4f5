/**
 * Float64 CPU reference of the losses (core/tensor/ops/loss.ts) and of NT-Xent composed from them.
 */
import { normalizeAxis, numel } from "../shape.ts";
import type { RefTensor } from "./ops.ts";

/** The weight of every element of `shape` [N, C, ...] from a mask of the same shape or per voxel. */
function maskWeights(shape: readonly number[], mask?: RefTensor): Float64Array {
  const n = numel(shape);
  if (!mask) return new Float64Array(n).fill(1);
  if (mask.data.length === n) return Float64Array.from(mask.data);
  const c = shape[1];
  const s = numel(shape.slice(2));
  return Float64Array.from({ length: n }, (_, g) => mask.data[Math.floor(g / (c * s)) * s + (g % s)]);
}

function maskedReduce(
  pred: RefTensor,
  target: RefTensor,
  f: (d: number) => number,
  mask?: RefTensor,
  reduction: "mean" | "sum" = "mean",
): RefTensor {
  const w = maskWeights(pred.shape, mask);
  let num = 0;
  let den = 0;
  pred.data.forEach((p, i) => {
    num += w[i] * f(p - target.data[i]);
    den += w[i];
  });
  const q = reduction === "mean" ? den : 1;
  return { shape: [], data: Float64Array.of(q === 0 ? 0 : num / q) };
}

/** Reference masked MSE. */
export function mseLossRef(
  pred: RefTensor,
  target: RefTensor,
  mask?: RefTensor,
  reduction?: "mean" | "sum",
): RefTensor {
  return maskedReduce(pred, target, (d) => d * d, mask, reduction);
}

/** Reference masked L1. */
export function l1LossRef(
  pred: RefTensor,
  target: RefTensor,
  mask?: RefTensor,
  reduction?: "mean" | "sum",
): RefTensor {
  return maskedReduce(pred, target, Math.abs, mask, reduction);
}

/** Reference voxel-wise cross-entropy (mean over counted voxels, PyTorch semantics). */
export function crossEntropyRef(
  logits: RefTensor,
  labels: ArrayLike<number>,
  options: { ignoreIndex?: number; mask?: RefTensor } = {},
): RefTensor {
  const [n, c] = logits.shape;
  const s = numel(logits.shape.slice(2));
  const ignore = options.ignoreIndex ?? -100;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    for (let v = 0; v < s; v++) {
      const label = labels[i * s + v];
      if (label === ignore) continue;
      const w = options.mask ? options.mask.data[i * s + v] : 1;
      const xs = Array.from({ length: c }, (_, k) => logits.data[(i * c + k) * s + v]);
      const m = Math.max(...xs);
      const lse = m + Math.log(xs.reduce((acc, x) => acc + Math.exp(x - m), 0));
      num += w * (lse - xs[label]);
      den += w;
    }
  }
  return { shape: [], data: Float64Array.of(den === 0 ? 0 : num / den) };
}

/** Reference soft Dice loss (nnU-Net SoftDiceLoss): −mean over terms of (2I + smooth)/max(U + smooth, 1e-8). */
export function softDiceRef(
  probs: RefTensor,
  target: { labels: ArrayLike<number> } | { dense: RefTensor },
  options: { smooth?: number; batchDice?: boolean; includeBackground?: boolean; mask?: RefTensor } = {},
): RefTensor {
  const [n, c] = probs.shape;
  const s = numel(probs.shape.slice(2));
  const w = maskWeights(probs.shape, options.mask);
  const smooth = options.smooth ?? 1e-5;
  const inter = new Float64Array(n * c);
  const union = new Float64Array(n * c);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < c; k++) {
      for (let v = 0; v < s; v++) {
        const g = (i * c + k) * s + v;
        const y = "labels" in target ? (target.labels[i * s + v] === k ? 1 : 0) : target.dense.data[g];
        inter[i * c + k] += w[g] * probs.data[g] * y;
        union[i * c + k] += w[g] * (probs.data[g] + y);
      }
    }
  }
  const dcs: number[] = [];
  const first = options.includeBackground ? 0 : 1;
  for (let k = first; k < c; k++) {
    if (options.batchDice) {
      let sumI = 0;
      let sumU = 0;
      for (let i = 0; i < n; i++) {
        sumI += inter[i * c + k];
        sumU += union[i * c + k];
      }
      dcs.push((2 * sumI + smooth) / Math.max(sumU + smooth, 1e-8));
    } else {
      for (let i = 0; i < n; i++) {
        dcs.push((2 * inter[i * c + k] + smooth) / Math.max(union[i * c + k] + smooth, 1e-8));
      }
    }
  }
  const mean = dcs.length === 0 ? 0 : dcs.reduce((a, b) => a + b, 0) / dcs.length;
  return { shape: [], data: Float64Array.of(-mean) };
}

/** Visits every (outer, inner) column of `dim`, with the flat indices of its elements. */
function columns(shape: readonly number[], dim: number, fn: (idx: number[], col: number) => void): void {
  const axis = normalizeAxis(dim, shape.length);
  const outer = numel(shape.slice(0, axis));
  const r = shape[axis];
  const inner = numel(shape.slice(axis + 1));
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < inner; j++) {
      fn(Array.from({ length: r }, (_, k) => (o * r + k) * inner + j), o * inner + j);
    }
  }
}

function dropDim(shape: readonly number[], dim: number, keep = false): number[] {
  const axis = normalizeAxis(dim, shape.length);
  return shape.flatMap((d, i) => (i !== axis ? [d] : keep ? [1] : []));
}

/** Reference cosine similarity along `dim`: a·b / (max(‖a‖, eps)·max(‖b‖, eps)). */
export function cosineSimilarityRef(a: RefTensor, b: RefTensor, dim = -1, eps = 1e-8): RefTensor {
  const shape = dropDim(a.shape, dim);
  const data = new Float64Array(numel(shape));
  columns(a.shape, dim, (idx, col) => {
    let dot = 0;
    let na = 0;
    let nb = 0;
    for (const i of idx) {
      dot += a.data[i] * b.data[i];
      na += a.data[i] ** 2;
      nb += b.data[i] ** 2;
    }
    data[col] = dot / (Math.max(Math.sqrt(na), eps) * Math.max(Math.sqrt(nb), eps));
  });
  return { shape, data };
}

/** Reference `F.normalize(x, p=2, dim, eps)`. */
export function l2NormalizeRef(x: RefTensor, dim = -1, eps = 1e-12): RefTensor {
  const data = new Float64Array(x.data.length);
  columns(x.shape, dim, (idx) => {
    const norm = Math.max(Math.sqrt(idx.reduce((s, i) => s + x.data[i] ** 2, 0)), eps);
    for (const i of idx) data[i] = x.data[i] / norm;
  });
  return { shape: [...x.shape], data };
}

/** Reference log Σ exp along `dim`. */
export function logSumExpRef(x: RefTensor, dim = -1, keepDims = false): RefTensor {
  const shape = dropDim(x.shape, dim, keepDims);
  const data = new Float64Array(numel(shape));
  columns(x.shape, dim, (idx, col) => {
    const m = Math.max(...idx.map((i) => x.data[i]));
    data[col] = m + Math.log(idx.reduce((s, i) => s + Math.exp(x.data[i] - m), 0));
  });
  return { shape, data };
}

/**
 * Reference NT-Xent (SimCLR) of z [2B, D], rows i and i ± B are the positive pairs: mean over rows of
 * −log(exp(sim(i, pos)/τ) / Σ_{k≠i} exp(sim(i, k)/τ)) with cosine similarities.
 */
export function ntXentRef(z: RefTensor, tau: number): RefTensor {
  const [rows, d] = z.shape;
  const half = rows / 2;
  const zn = l2NormalizeRef(z, 1);
  const sim = (i: number, k: number) => {
    let s = 0;
    for (let j = 0; j < d; j++) s += zn.data[i * d + j] * zn.data[k * d + j];
    return s / tau;
  };
  let total = 0;
  for (let i = 0; i < rows; i++) {
    const pos = (i + half) % rows;
    const others = Array.from({ length: rows }, (_, k) => k).filter((k) => k !== i).map((k) => sim(i, k));
    const m = Math.max(...others);
    const lse = m + Math.log(others.reduce((s, v) => s + Math.exp(v - m), 0));
    total += lse - sim(i, pos);
  }
  return { shape: [], data: Float64Array.of(total / rows) };
}
