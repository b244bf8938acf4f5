/**
 * Fused scaled-dot-product attention (kernels/attention.ts): flash-style forward that saves the
 * log-sum-exp, backward by recomputation. The unfused composition matmul → scale → softmax → matmul is
 * its test oracle (tests/core/tensor/attention_test.ts).
 */
import {
  type AttentionKernelOptions,
  runAttentionBackward,
  runAttentionForward,
} from "../../../kernels/mod.ts";
import { noGrad, record } from "../autograd.ts";
import { keep } from "../scope.ts";
import { numel } from "../shape.ts";
import type { Tensor } from "../tensor.ts";
import { autocastOp } from "./autocast_op.ts";
import { emptyOn } from "./create.ts";
import { cast } from "./elementwise.ts";

/** Options of {@link scaledDotProductAttention}. */
export interface AttentionOptions {
  /** Multiplier of q·kᵀ; default 1/√Dh. */
  scale?: number;
  /**
   * Causal mask, top-left aligned as PyTorch's `is_causal`: query i attends to keys j ≤ i (also when
   * Lq ≠ Lk). Default false.
   */
  causal?: boolean;
}

interface Checked {
  heads: number;
  lq: number;
  lk: number;
  headDim: number;
  scale: number;
  causal: boolean;
}

function check(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions): Checked {
  const name = "scaledDotProductAttention()";
  if (q.rank < 2 || k.rank !== q.rank || v.rank !== q.rank) {
    throw new RangeError(`${name}: q, k, v need the same rank >= 2 ([B, H, L, Dh]), got ${q}, ${k}, ${v}`);
  }
  if (q.dtype !== k.dtype || q.dtype !== v.dtype || (q.dtype !== "f32" && q.dtype !== "f16")) {
    throw new TypeError(`${name}: q, k, v must all be f32 or all f16, got ${q}, ${k}, ${v}`);
  }
  const lead = q.shape.slice(0, -2).join(",");
  if (k.shape.slice(0, -2).join(",") !== lead || v.shape.slice(0, -2).join(",") !== lead) {
    throw new RangeError(
      `${name}: batch/head dimensions differ: q [${q.shape}], k [${k.shape}], v [${v.shape}]`,
    );
  }
  const headDim = q.shape[q.rank - 1];
  const lq = q.shape[q.rank - 2];
  const lk = k.shape[k.rank - 2];
  if (k.shape[k.rank - 1] !== headDim || v.shape[v.rank - 1] !== headDim) {
    throw new RangeError(`${name}: head dims differ: q [${q.shape}], k [${k.shape}], v [${v.shape}]`);
  }
  if (v.shape[v.rank - 2] !== lk) {
    throw new RangeError(`${name}: k and v need the same length: k [${k.shape}], v [${v.shape}]`);
  }
  if (headDim === 0) throw new RangeError(`${name}: head dim must be >= 1, got q [${q.shape}]`);
  if (lq > 0 && lk === 0) throw new RangeError(`${name}: ${lq} queries but no keys (k [${k.shape}])`);
  const scale = options.scale ?? 1 / Math.sqrt(headDim);
  if (!Number.isFinite(scale)) throw new RangeError(`${name}: scale must be finite, got ${scale}`);
  return { heads: numel(q.shape.slice(0, -2)), lq, lk, headDim, scale, causal: options.causal ?? false };
}

/**
 * The forward pass alone (not recorded): `out` shaped like q, and `lse` [..., Lq] in f32, the natural
 * log of Σ_j exp(scale·q_i·k_j) over the unmasked keys. Used by the op and by benchmarks.
 */
export function attentionForward(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionOptions = {},
  kernelOptions: AttentionKernelOptions = {},
): { out: Tensor; lse: Tensor } {
  const s = check(q, k, v, options);
  const out = emptyOn(q, q.shape);
  const lse = emptyOn(q, q.shape.slice(0, -1), "f32");
  runAttentionForward(
    q.gpu,
    q.dtype as "f32" | "f16",
    q.binding,
    k.binding,
    v.binding,
    out.binding,
    lse.binding,
    s,
    kernelOptions,
  );
  return { out, lse };
}

/**
 * The backward pass alone (not recorded): gradients of q, k, v from the forward's inputs, its `out`
 * and `lse`, and the output gradient (cast to the operands' dtype when it differs).
 */
export function attentionBackward(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  out: Tensor,
  lse: Tensor,
  gradOut: Tensor,
  options: AttentionOptions = {},
  kernelOptions: AttentionKernelOptions = {},
): [Tensor, Tensor, Tensor] {
  const s = check(q, k, v, options);
  if (out.shape.join() !== q.shape.join() || gradOut.shape.join() !== q.shape.join()) {
    throw new RangeError(`attentionBackward(): out ${out} and gradOut ${gradOut} must be shaped like q ${q}`);
  }
  if (lse.dtype !== "f32" || lse.size !== s.heads * s.lq) {
    throw new RangeError(`attentionBackward(): lse ${lse} must be f32 [..., ${s.lq}]`);
  }
  const g = gradOut.dtype === q.dtype ? gradOut : noGrad(() => cast(gradOut, q.dtype));
  const dq = emptyOn(q, q.shape);
  const dk = emptyOn(k, k.shape);
  const dv = emptyOn(v, v.shape);
  const dsum = emptyOn(q, [s.heads * s.lq], "f32");
  runAttentionBackward(
    q.gpu,
    q.dtype as "f32" | "f16",
    {
      q: q.binding,
      k: k.binding,
      v: v.binding,
      out: out.binding,
      gradOut: g.binding,
      lse: lse.binding,
      dsum: dsum.binding,
      dq: dq.binding,
      dk: dk.binding,
      dv: dv.binding,
    },
    s,
    kernelOptions,
  );
  dsum.dispose();
  if (g !== gradOut) g.dispose();
  return [dq, dk, dv];
}

/**
 * softmax(scale·q·kᵀ [+ causal mask]) · v, fused: the Lq×Lk score matrix is never stored.
 *
 * q [..., Lq, Dh], k and v [..., Lk, Dh] with the same leading dimensions (typically [B, H, L, Dh]),
 * contiguous, all f32 or all f16 (f16 storage, f32 arithmetic and accumulation; f16 needs the device's
 * shader-f16); under `autocast()` f32 operands compute in f16 and the output is f32. Any head dim and
 * length (Lq may differ from Lk). Differentiable in q, k and v; the
 * backward recomputes the probabilities from the saved per-query log-sum-exp.
 * @example
 * const y = scaledDotProductAttention(q, k, v, { causal: true }); // [B, H, L, Dh]
 */
export function scaledDotProductAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionOptions = {},
): Tensor {
  return autocastOp([q, k, v], ([q16, k16, v16]) => scaledDotProductAttention(q16!, k16!, v16!, options)) ??
    attentionAsCalled(q, k, v, options);
}

function attentionAsCalled(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions): Tensor {
  const { out, lse } = attentionForward(q, k, v, options);
  const result = record(
    "scaledDotProductAttention",
    [q, k, v],
    out,
    [q, k, v, out, lse],
    (g) => attentionBackward(q, k, v, out, lse, g, options),
  );
  // Give up this op's reference now (the node holds its own while a backward may still need it). keep()
  // first: otherwise the enclosing scope would drop a second reference when it ends, the node's, and a
  // backward after a nested scope would read freed memory.
  keep(lse).dispose();
  return result;
}
