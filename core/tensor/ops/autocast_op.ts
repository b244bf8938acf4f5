/**
 * The op side of autocast (core/tensor/autocast.ts, whose module comment states the rules), not exported
 * from the ops barrel: the compute ops' f16 casts ({@link autocastOp}), one dtype for operands that mix
 * f16 and f32 ({@link autocastCommon}), and the f32 ops' casts at their input ({@link autocastF32}).
 */
import { autocast, autocastDtype, isAutocastEnabled } from "../autocast.ts";
import { keep } from "../scope.ts";
import type { Tensor } from "../tensor.ts";
import { cast } from "./elementwise.ts";

/**
 * Rule 1 (matmul, conv3d, convTranspose3d, scaledDotProductAttention): under autocast on a device with
 * shader-f16, when some operand is f32, runs `compute` on the operands with every f32 one cast to f16
 * (differentiably), with autocast off inside, and returns its f16 result. Otherwise returns undefined
 * and the op runs as called. The f16 copies are released here (taken out of the enclosing scope first,
 * so that it does not release them a second time); the autograd nodes that need them hold their own
 * references.
 */
export function autocastOp(
  operands: readonly (Tensor | undefined)[],
  compute: (operands: (Tensor | undefined)[]) => Tensor,
): Tensor | undefined {
  const first = operands.find((t) => t !== undefined);
  if (!first || autocastDtype(first.gpu) !== "f16") return undefined;
  if (!operands.some((t) => t?.dtype === "f32")) return undefined;
  const half = operands.map((t) => (t?.dtype === "f32" ? cast(t, "f16") : t));
  try {
    return autocast(() => compute(half), { enabled: false });
  } finally {
    half.forEach((t, i) => {
      if (t && t !== operands[i]) keep(t).dispose();
    });
  }
}

/** A master weight: an f32 leaf (made by no op) that requires grad, i.e. a parameter. */
function isMasterWeight(t: Tensor): boolean {
  return t.dtype === "f32" && t.requiresGrad && t.node === undefined;
}

/**
 * Rule 3: under autocast, float operands of one op that mix f16 and f32 are brought to one dtype: f16
 * when every f32 operand is a master weight (a bias, a layer scale, a position embedding meeting an f16
 * activation: cast like the compute ops cast their weights), else f32 (data, targets and tensors
 * computed in f32 win, as PyTorch's type promotion). Returns the operands unchanged otherwise (outside
 * autocast mixed dtypes stay an error of the op). Non-float and undefined operands pass through.
 */
export function autocastCommon<T extends readonly (Tensor | undefined)[]>(operands: T): T {
  if (!isAutocastEnabled()) return operands;
  const present = operands.filter((t): t is Tensor => t?.dtype === "f32" || t?.dtype === "f16");
  if (!present.some((t) => t.dtype === "f16") || !present.some((t) => t.dtype === "f32")) return operands;
  const to = present.every((t) => t.dtype === "f16" || isMasterWeight(t)) ? "f16" : "f32";
  return operands.map((
    t,
  ) => (t && (t.dtype === "f32" || t.dtype === "f16") ? cast(t, to) : t)) as unknown as T;
}

/**
 * Rule 4 (losses, softmax, log-sum-exp, exp/log/pow/sqrt/rsqrt, l2 normalization, cosine similarity):
 * under autocast, f16 operands are cast to f32 at the op's input; the op computes and returns f32.
 */
export function autocastF32<T extends readonly (Tensor | undefined)[]>(operands: T): T {
  if (!isAutocastEnabled() || !operands.some((t) => t?.dtype === "f16")) return operands;
  return operands.map((t) => (t?.dtype === "f16" ? cast(t, "f32") : t)) as unknown as T;
}
