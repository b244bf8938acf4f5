/**
 * Reference scaled-dot-product attention in float64 with the softmax materialised: the oracle of the
 * fused kernels (values, log-sum-exp, and the analytic backward, itself checked by finite differences).
 * Operands are [..., L, Dh] with identical leading (batch, head) dimensions.
 *
 * Masking: key j is excluded from query i's softmax when the causal mask hides it (j > i), when the key
 * mask is 0 for it, or when its score scale·q_i·k_j + bias_ij is −∞. A query that sees no key at all
 * gets output 0, log-sum-exp −∞ and no gradient.
 */
import { broadcastStrides, numel } from "../shape.ts";
import type { RefTensor } from "./ops.ts";

/** Options shared with the GPU op. */
export interface AttentionRefOptions {
  /** Multiplier of q·k; default 1/√Dh. */
  scale?: number;
  /** Top-left causal mask (query i sees keys j ≤ i), as PyTorch's `is_causal`. */
  causal?: boolean;
  /**
   * Additive bias on the scaled scores, [..., Lq, Lk] with q's rank, every leading dimension equal to
   * q's or 1 (broadcast). −∞ entries mask their key.
   */
  bias?: RefTensor;
  /** Key-padding mask, [Lk] or [B, Lk] (B = q's first dimension, or 1): 0 excludes the key. */
  keyMask?: RefTensor;
}

interface Dims {
  heads: number;
  lq: number;
  lk: number;
  dh: number;
  scale: number;
  causal: boolean;
  /** Element offset of head h's [Lq, Lk] bias slice (broadcast heads share one), or undefined. */
  biasBase?: (h: number) => number;
  /** Whether head h's key j is kept by the key mask. */
  keyKept: (h: number, j: number) => boolean;
}

function dims(q: RefTensor, k: RefTensor, options: AttentionRefOptions): Dims {
  const r = q.shape.length;
  const dh = q.shape[r - 1];
  const lead = q.shape.slice(0, -2);
  const lq = q.shape[r - 2];
  const lk = k.shape[r - 2];
  const heads = numel(lead);
  let biasBase: ((h: number) => number) | undefined;
  const bias = options.bias;
  if (bias) {
    const expected = [...lead.map((d, i) => (bias.shape[i] === 1 ? 1 : d)), lq, lk];
    if (bias.shape.length !== r || bias.shape.some((d, i) => d !== expected[i])) {
      throw new RangeError(`attention reference: bias [${bias.shape}] for q [${q.shape}], k [${k.shape}]`);
    }
    // strides of the bias's leading dimensions read at q's leading shape (0 where broadcast)
    const strides = broadcastStrides(bias.shape.slice(0, -2), lead);
    biasBase = (h: number) => {
      let offset = 0;
      for (let d = lead.length - 1, rest = h; d >= 0; d--) {
        offset += (rest % lead[d]) * strides[d];
        rest = Math.floor(rest / lead[d]);
      }
      return offset * lq * lk;
    };
  }
  let keyKept = (_h: number, _j: number) => true;
  const mask = options.keyMask;
  if (mask) {
    const rows = mask.shape.length === 2 ? mask.shape[0] : 1;
    if (
      mask.shape.length > 2 || mask.shape[mask.shape.length - 1] !== lk || (rows !== 1 && rows !== lead[0])
    ) {
      throw new RangeError(`attention reference: keyMask [${mask.shape}] for q [${q.shape}], k [${k.shape}]`);
    }
    const headsPerRow = rows === 1 ? heads : heads / rows;
    keyKept = (h, j) => mask.data[Math.floor(h / headsPerRow) * lk + j] !== 0;
  }
  return {
    heads,
    lq,
    lk,
    dh,
    scale: options.scale ?? 1 / Math.sqrt(dh),
    causal: options.causal ?? false,
    biasBase,
    keyKept,
  };
}

/** Softmax probabilities [heads, lq, lk] (masked entries 0) and the log-sum-exp per query. */
function probabilities(q: RefTensor, k: RefTensor, bias: RefTensor | undefined, d: Dims) {
  const { heads, lq, lk, dh, scale, causal } = d;
  const probs = new Float64Array(heads * lq * lk);
  const lse = new Float64Array(heads * lq);
  const scores = new Float64Array(lk);
  for (let h = 0; h < heads; h++) {
    const b0 = d.biasBase?.(h) ?? 0;
    for (let i = 0; i < lq; i++) {
      let m = -Infinity;
      for (let j = 0; j < lk; j++) {
        if ((causal && j > i) || !d.keyKept(h, j)) {
          scores[j] = -Infinity;
          continue;
        }
        let s = 0;
        for (let c = 0; c < dh; c++) s += q.data[(h * lq + i) * dh + c] * k.data[(h * lk + j) * dh + c];
        scores[j] = s * scale + (bias ? bias.data[b0 + i * lk + j] : 0);
        m = Math.max(m, scores[j]);
      }
      if (m === -Infinity) {
        // no key left: output 0, lse −∞, probabilities 0
        lse[h * lq + i] = -Infinity;
        continue;
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

/**
 * out = softmax(scale·q·kᵀ + bias (masked)) · v, and lse [..., Lq] = log Σ_j exp(scale·q·k_j + bias_ij)
 * over the keys not masked (−∞ for a query with none; its output row is 0).
 */
export function attentionForwardRef(
  q: RefTensor,
  k: RefTensor,
  v: RefTensor,
  options: AttentionRefOptions = {},
): { out: RefTensor; lse: RefTensor } {
  const d = dims(q, k, options);
  const { heads, lq, lk, dh } = d;
  const { probs, lse } = probabilities(q, k, options.bias, d);
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
 * dV = Pᵀ·g, dP = g·Vᵀ, dS = P ∘ (dP − rowsum(dP ∘ P)), dQ = scale·dS·K, dK = scale·dSᵀ·Q, and with a
 * bias dBias = dS summed over the bias's broadcast dimensions (shaped like the bias).
 */
export function attentionBackwardRef(
  q: RefTensor,
  k: RefTensor,
  v: RefTensor,
  g: RefTensor,
  options: AttentionRefOptions = {},
): { dq: RefTensor; dk: RefTensor; dv: RefTensor; dbias?: RefTensor } {
  const d = dims(q, k, options);
  const { heads, lq, lk, dh, scale } = d;
  const { probs } = probabilities(q, k, options.bias, d);
  const dq = new Float64Array(q.data.length);
  const dk = new Float64Array(k.data.length);
  const dv = new Float64Array(v.data.length);
  const dbias = options.bias ? new Float64Array(options.bias.data.length) : undefined;
  const dp = new Float64Array(lk);
  for (let h = 0; h < heads; h++) {
    const b0 = d.biasBase?.(h) ?? 0;
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
        const dsij = pij * (dp[j] - rowSum);
        if (dbias) dbias[b0 + i * lk + j] += dsij;
        const ds = dsij * scale;
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
    ...(dbias ? { dbias: { shape: [...options.bias!.shape], data: dbias } } : {}),
  };
}
