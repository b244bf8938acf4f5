/**
 * Reference scaled-dot-product attention in float64 with the softmax materialised: the oracle of the
 * fused kernels (values, log-sum-exp, and the analytic backward, itself checked by finite differences).
 * Operands are [..., L, Dh] with identical leading (batch, head) dimensions.
 */
import { numel } from "../shape.ts";
import type { RefTensor } from "./ops.ts";

/** Options shared with the GPU op. */
export interface AttentionRefOptions {
  /** Multiplier of q·k; default 1/√Dh. */
  scale?: number;
  /** Top-left causal mask (query i sees keys j ≤ i), as PyTorch's `is_causal`. */
  causal?: boolean;
}

interface Dims {
  heads: number;
  lq: number;
  lk: number;
  dh: number;
  scale: number;
  causal: boolean;
}

function dims(q: RefTensor, k: RefTensor, options: AttentionRefOptions): Dims {
  const r = q.shape.length;
  const dh = q.shape[r - 1];
  return {
    heads: numel(q.shape.slice(0, -2)),
    lq: q.shape[r - 2],
    lk: k.shape[r - 2],
    dh,
    scale: options.scale ?? 1 / Math.sqrt(dh),
    causal: options.causal ?? false,
  };
}

/** Softmax probabilities [heads, lq, lk] (masked entries 0) and the log-sum-exp per query. */
function probabilities(q: RefTensor, k: RefTensor, d: Dims): { probs: Float64Array; lse: Float64Array } {
  const { heads, lq, lk, dh, scale, causal } = d;
  const probs = new Float64Array(heads * lq * lk);
  const lse = new Float64Array(heads * lq);
  const scores = new Float64Array(lk);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < lq; i++) {
      let m = -Infinity;
      for (let j = 0; j < lk; j++) {
        if (causal && j > i) {
          scores[j] = -Infinity;
          continue;
        }
        let s = 0;
        for (let c = 0; c < dh; c++) s += q.data[(h * lq + i) * dh + c] * k.data[(h * lk + j) * dh + c];
        scores[j] = s * scale;
        m = Math.max(m, scores[j]);
      }
      let sum = 0;
      for (let j = 0; j < lk; j++) sum += scores[j] === -Infinity ? 0 : Math.exp(scores[j] - m);
      for (let j = 0; j < lk; j++) {
        probs[(h * lq + i) * lk + j] = scores[j] === -Infinity ? 0 : Math.exp(scores[j] - m) / sum;
      }
      lse[h * lq + i] = m + Math.log(sum);
    }
  }
  return { probs, lse };
}

/** out = softmax(scale·q·kᵀ (masked)) · v, and lse [..., Lq] = log Σ_j exp(scale·q·k_j). */
export function attentionForwardRef(
  q: RefTensor,
  k: RefTensor,
  v: RefTensor,
  options: AttentionRefOptions = {},
): { out: RefTensor; lse: RefTensor } {
  const d = dims(q, k, options);
  const { heads, lq, lk, dh } = d;
  const { probs, lse } = probabilities(q, k, d);
  const out = new Float64Array(heads * lq * dh);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < lq; i++) {
      for (let j = 0; j < lk; j++) {
        const pij = probs[(h * lq + i) * lk + j];
        if (pij === 0) continue;
        for (let c = 0; c < dh; c++) out[(h * lq + i) * dh + c] += pij * v.data[(h * lk + j) * dh + c];
      }
    }
  }
  return { out: { shape: [...q.shape], data: out }, lse: { shape: q.shape.slice(0, -1), data: lse } };
}

/** The attention output alone (for the op table). */
export function attentionRef(
  q: RefTensor,
  k: RefTensor,
  v: RefTensor,
  options: AttentionRefOptions = {},
): RefTensor {
  return attentionForwardRef(q, k, v, options).out;
}

/**
 * Analytic gradients of attention for an output gradient `g`:
 * dV = Pᵀ·g, dP = g·Vᵀ, dS = P ∘ (dP − rowsum(dP ∘ P)), dQ = scale·dS·K, dK = scale·dSᵀ·Q.
 */
export function attentionBackwardRef(
  q: RefTensor,
  k: RefTensor,
  v: RefTensor,
  g: RefTensor,
  options: AttentionRefOptions = {},
): { dq: RefTensor; dk: RefTensor; dv: RefTensor } {
  const d = dims(q, k, options);
  const { heads, lq, lk, dh, scale } = d;
  const { probs } = probabilities(q, k, d);
  const dq = new Float64Array(q.data.length);
  const dk = new Float64Array(k.data.length);
  const dv = new Float64Array(v.data.length);
  const dp = new Float64Array(lk);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < lq; i++) {
      const gi = (h * lq + i) * dh;
      let rowSum = 0;
      for (let j = 0; j < lk; j++) {
        let s = 0;
        for (let c = 0; c < dh; c++) s += g.data[gi + c] * v.data[(h * lk + j) * dh + c];
        dp[j] = s;
        rowSum += s * probs[(h * lq + i) * lk + j];
      }
      for (let j = 0; j < lk; j++) {
        const pij = probs[(h * lq + i) * lk + j];
        const ds = pij * (dp[j] - rowSum) * scale;
        const kj = (h * lk + j) * dh;
        for (let c = 0; c < dh; c++) {
          dv[kj + c] += pij * g.data[gi + c];
          dq[gi + c] += ds * k.data[kj + c];
          dk[kj + c] += ds * q.data[gi + c];
        }
      }
    }
  }
  return {
    dq: { shape: [...q.shape], data: dq },
    dk: { shape: [...k.shape], data: dk },
    dv: { shape: [...v.shape], data: dv },
  };
}
