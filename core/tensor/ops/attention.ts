/**
 * Fused scaled-dot-product attention (kernels/attention.ts): flash-style forward that saves the
 * log-sum-exp, backward by recomputation. The unfused composition matmul → scale → softmax → matmul is
 * its test oracle (tests/core/tensor/attention_test.ts).
 */
import {
  attentionBackwardPlan,
  type AttentionBiasLayout,
  type AttentionKernelOptions,
  type AttentionMasks,
  type AttentionShape,
  attentionStatsSize,
  runAttentionBackward,
  runAttentionForward,
  spanLimitBytes,
} from "../../../kernels/mod.ts";
import { noGrad, record } from "../autograd.ts";
import { keep } from "../scope.ts";
import { numel, sameShape } from "../shape.ts";
import type { Tensor } from "../tensor.ts";
import { autocastOp } from "./autocast_op.ts";
import { emptyOn } from "./create.ts";
import { cast } from "./elementwise.ts";
import { opFamily } from "../../gpu/op_family.ts";

/** Options of {@link scaledDotProductAttention}. */
export interface AttentionOptions {
  /** Multiplier of q·kᵀ; default 1/√Dh. */
  scale?: number;
  /**
   * Causal mask, top-left aligned as PyTorch's `is_causal`: query i attends to keys j ≤ i (also when
   * Lq ≠ Lk). Default false.
   */
  causal?: boolean;
  /**
   * Additive bias on the scaled scores: scores = scale·q·kᵀ + bias (a relative-position bias, an
   * additive mask). Shape [..., Lq, Lk] with q's rank, each leading dimension equal to q's or 1
   * (broadcast), e.g. [1, H, Lq, Lk] shared over the batch or [B, 1, Lq, Lk] shared over the heads;
   * contiguous; f32, or f16 when q is f16 (under `autocast()` an f32 bias stays f32).
   *
   * −Infinity masks its key; so does any finite value ≤ −1e30, and scores below about −3e29 weigh
   * exactly 0. A query whose keys are all masked (by the bias, `keyMask` or both) gets output 0,
   * log-sum-exp −∞ and no gradient (PyTorch gives NaN there).
   *
   * When `bias.requiresGrad`, backward gives it dBias = dS = P∘(dP − rowsum(dO∘O)) (the gradient of the
   * scores), summed over the broadcast dimensions. A broadcast bias's dS is first written per head (f32
   * scratch of B·H·Lq·Lk floats during the backward); a bias that needs no gradient costs no extra
   * work or memory in the backward.
   */
  bias?: Tensor;
  /**
   * Key-padding mask: nonzero keeps a key, 0 excludes it (as the causal mask excludes keys). Shape
   * [B, Lk] with B = q's first dimension (one row per batch element, shared by its heads: q [B, H, L, Dh]
   * or [B, L, Dh]), or [1, Lk] or [Lk] shared by all. u32 or f32 (±0.0 excludes). No gradient.
   */
  keyMask?: Tensor;
}

interface Checked extends AttentionShape {
  /** q's leading (batch, head) dimensions. */
  lead: number[];
}

function check(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions): Checked {
  const name = "scaledDotProductAttention()";
  if (q.rank < 2 || k.rank !== q.rank || v.rank !== q.rank) {
    throw new RangeError(`${name}: q, k, v need the same rank >= 2 ([B, H, L, Dh]), got ${q}, ${k}, ${v}`);
  }
  if (q.dtype !== k.dtype || q.dtype !== v.dtype || (q.dtype !== "f32" && q.dtype !== "f16")) {
    throw new TypeError(`${name}: q, k, v must all be f32 or all f16, got ${q}, ${k}, ${v}`);
  }
  const lead = q.shape.slice(0, -2);
  if (
    k.shape.slice(0, -2).join(",") !== lead.join(",") || v.shape.slice(0, -2).join(",") !== lead.join(",")
  ) {
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
  const { bias, keyMask } = options;
  if (bias) {
    const expected = `[${[...lead.map((d) => (d === 1 ? "1" : `${d} or 1`)), lq, lk].join(", ")}]`;
    if (bias.rank !== q.rank) {
      throw new RangeError(
        `${name}: options.bias must have q's rank ${q.rank} (${expected} for q [${q.shape}], k [${k.shape}]), ` +
          `got [${bias.shape}]`,
      );
    }
    const bad = bias.shape.some((d, i) =>
      i < lead.length ? d !== lead[i] && d !== 1 : d !== (i === lead.length ? lq : lk)
    );
    if (bad) {
      throw new RangeError(
        `${name}: options.bias [${bias.shape}] does not broadcast to the scores [${[...lead, lq, lk]}] ` +
          `(expected ${expected})`,
      );
    }
    if (bias.dtype !== "f32" && !(bias.dtype === "f16" && q.dtype === "f16")) {
      throw new TypeError(
        `${name}: options.bias must be f32 (or f16 when q is f16), got ${bias.dtype} [${bias.shape}] with q ${q.dtype}`,
      );
    }
    if (bias.gpu !== q.gpu) throw new Error(`${name}: options.bias lives on another device than q`);
  }
  if (keyMask) {
    const rows = keyMask.rank === 2 ? keyMask.shape[0] : 1;
    const batch = q.rank >= 3 ? lead[0] : 1;
    if (
      keyMask.rank < 1 || keyMask.rank > 2 || keyMask.shape[keyMask.rank - 1] !== lk ||
      (rows !== 1 && rows !== batch)
    ) {
      const shapes = `${batch === 1 ? "" : `[${batch}, ${lk}], `}[1, ${lk}] or [${lk}]`;
      throw new RangeError(
        `${name}: options.keyMask must be ${shapes} ([B, Lk] for q [${q.shape}], k [${k.shape}]), ` +
          `got [${keyMask.shape}]`,
      );
    }
    if (keyMask.dtype !== "u32" && keyMask.dtype !== "f32") {
      throw new TypeError(
        `${name}: options.keyMask must be u32 or f32 (1 keeps a key, 0 drops it), got ${keyMask}`,
      );
    }
    if (keyMask.gpu !== q.gpu) throw new Error(`${name}: options.keyMask lives on another device than q`);
  }
  return { heads: numel(lead), lq, lk, headDim, scale, causal: options.causal ?? false, lead };
}

/**
 * How heads read a bias whose leading dimensions are `biasLead` (each equal to q's `lead` or 1):
 * undefined when it has one slice per head; else the dimensions of q's leading shape with size-1 ones
 * dropped and runs of per-head or of shared dimensions merged, and each one's slice stride (0: shared).
 */
function biasLayout(lead: readonly number[], biasLead: readonly number[]): AttentionBiasLayout | undefined {
  if (sameShape(lead, biasLead)) return undefined;
  const runs: { size: number; shared: boolean }[] = [];
  lead.forEach((d, i) => {
    if (d === 1) return;
    const shared = biasLead[i] === 1;
    const last = runs.at(-1);
    if (last && last.shared === shared) last.size *= d;
    else runs.push({ size: d, shared });
  });
  if (runs.length === 0) runs.push({ size: 1, shared: true });
  // a run's slice stride: the product of the sizes of the later runs the bias has
  const strides = runs.map((r, i) =>
    r.shared ? 0 : runs.slice(i + 1).reduce((n, later) => (later.shared ? n : n * later.size), 1)
  );
  return { dims: runs.map((r) => r.size), strides, slices: numel(biasLead) };
}

/** The kernels' view of the bias and key mask. */
function kernelMasks(q: Tensor, s: Checked, options: AttentionOptions): AttentionMasks {
  const masks: AttentionMasks = {};
  const { bias, keyMask } = options;
  if (bias) {
    const shared = biasLayout(s.lead, bias.shape.slice(0, -2));
    // a shared bias (and its f32 gradient) is bound whole
    const limit = spanLimitBytes(q.gpu.limits, 4);
    if (shared && bias.size * 4 > limit) {
      throw new RangeError(
        `scaledDotProductAttention(): options.bias [${bias.shape}] is shared by several heads and must fit ` +
          `one storage binding as f32 (${bias.size * 4} > ${limit} bytes); expand() it to ` +
          `[${[...s.lead, s.lq, s.lk]}] to split it over heads`,
      );
    }
    masks.bias = { range: bias.binding, type: bias.dtype as "f32" | "f16", shared };
  }
  if (keyMask) {
    const rows = keyMask.rank === 2 ? keyMask.shape[0] : 1;
    masks.keyMask = {
      range: keyMask.binding,
      type: keyMask.dtype as "u32" | "f32",
      rows,
      headsPerRow: rows > 1 ? s.heads / rows : Math.max(1, s.heads),
    };
  }
  return masks;
}

/**
 * The forward pass alone (not recorded): `out` shaped like q, and `lse` [..., Lq] in f32, the natural
 * log of Σ_j exp(scale·q_i·k_j + bias_ij) over the unmasked keys (−∞ for a query without any). Used by
 * the op and by benchmarks.
 */
export function attentionForward(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionOptions = {},
  kernelOptions: AttentionKernelOptions = {},
): { out: Tensor; lse: Tensor } {
  using _family = opFamily("attention");
  const s = check(q, k, v, options);
  const masks = kernelMasks(q, s, options);
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
    masks,
  );
  return { out, lse };
}

/**
 * The backward pass alone (not recorded): gradients of q, k, v from the forward's inputs, its `out`
 * and `lse`, and the output gradient (cast to the operands' dtype when it differs); with a bias that
 * requires grad, its gradient (shaped and typed like the bias) as a fourth element.
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
): [Tensor, Tensor, Tensor] | [Tensor, Tensor, Tensor, Tensor] {
  using _family = opFamily("attention");
  const s = check(q, k, v, options);
  if (out.shape.join() !== q.shape.join() || gradOut.shape.join() !== q.shape.join()) {
    throw new RangeError(`attentionBackward(): out ${out} and gradOut ${gradOut} must be shaped like q ${q}`);
  }
  if (lse.dtype !== "f32" || lse.size !== s.heads * s.lq) {
    throw new RangeError(`attentionBackward(): lse ${lse} must be f32 [..., ${s.lq}]`);
  }
  const masks = kernelMasks(q, s, options);
  const g = gradOut.dtype === q.dtype ? gradOut : noGrad(() => cast(gradOut, q.dtype));
  const dq = emptyOn(q, q.shape);
  const dk = emptyOn(k, k.shape);
  const dv = emptyOn(v, v.shape);
  const stats = emptyOn(q, [attentionStatsSize(s, masks.keyMask !== undefined)], "f32");
  const bias = options.bias?.requiresGrad ? options.bias : undefined;
  // dBias: written directly when the bias has one slice per head; a shared bias's is summed in f32 from
  // dS per head (scratch) and rounded to its dtype after
  const shared = masks.bias?.shared !== undefined;
  const dbias = bias && emptyOn(q, bias.shape, shared ? "f32" : bias.dtype);
  const scratch = bias && shared ? emptyOn(q, [s.heads * s.lq * s.lk], "f32") : undefined;
  // dQ partial sums (slabs of key blocks) for the fused backward (q·k computed once: 5 passes, not 7)
  const plan = attentionBackwardPlan(
    q.gpu,
    s,
    kernelOptions,
    masks,
    bias !== undefined,
    q.dtype as "f32" | "f16",
  );
  const dqPartials = plan.fused ? emptyOn(q, [plan.dqPartials], "f32") : undefined;
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
      stats: stats.binding,
      dq: dq.binding,
      dk: dk.binding,
      dv: dv.binding,
      dbias: dbias && { range: dbias.binding, type: dbias.dtype as "f32" | "f16" },
      dsScratch: scratch?.binding,
      dqPartials: dqPartials?.binding,
    },
    s,
    kernelOptions,
    masks,
  );
  stats.dispose();
  scratch?.dispose();
  dqPartials?.dispose();
  if (g !== gradOut) g.dispose();
  if (!dbias) return [dq, dk, dv];
  if (dbias.dtype === bias!.dtype) return [dq, dk, dv, dbias];
  const rounded = noGrad(() => cast(dbias, bias!.dtype));
  dbias.dispose();
  return [dq, dk, dv, rounded];
}

/**
 * softmax(scale·q·kᵀ [+ bias] [+ causal and key masks]) · v, fused: the Lq×Lk score matrix is never
 * stored.
 *
 * q [..., Lq, Dh], k and v [..., Lk, Dh] with the same leading dimensions (typically [B, H, L, Dh]),
 * contiguous, all f32 or all f16 (f16 storage, f32 arithmetic and accumulation; f16 needs the device's
 * shader-f16); under `autocast()` f32 operands compute in f16 and the output is f16. Any head dim and
 * length (Lq may differ from Lk). Differentiable in q, k, v and the bias; the backward recomputes the
 * probabilities from the saved per-query log-sum-exp.
 * @example
 * const y = scaledDotProductAttention(q, k, v, { causal: true }); // [B, H, L, Dh]
 */
export function scaledDotProductAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionOptions = {},
): Tensor {
  using _family = opFamily("attention");
  return autocastOp([q, k, v], ([q16, k16, v16]) => scaledDotProductAttention(q16!, k16!, v16!, options)) ??
    attentionAsCalled(q, k, v, options);
}

function attentionAsCalled(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions): Tensor {
  const { out, lse } = attentionForward(q, k, v, options);
  const { bias, keyMask } = options;
  const result = record(
    "scaledDotProductAttention",
    bias?.requiresGrad ? [q, k, v, bias] : [q, k, v],
    out,
    [q, k, v, out, lse, ...(bias ? [bias] : []), ...(keyMask ? [keyMask] : [])],
    (g) => attentionBackward(q, k, v, out, lse, g, options),
  );
  // Give up this op's reference now (the node holds its own while a backward may still need it). keep()
  // first: otherwise the enclosing scope would drop a second reference when it ends, the node's, and a
  // backward after a nested scope would read freed memory.
  keep(lse).dispose();
  return result;
}
