/**
 * The op side of autocast (core/tensor/autocast.ts), shared by matmul, conv3d, convTranspose3d and
 * scaledDotProductAttention (not exported from the ops barrel).
 */
import { autocast, autocastDtype } from "../autocast.ts";
import { keep } from "../scope.ts";
import type { Tensor } from "../tensor.ts";
import { cast } from "./elementwise.ts";

/**
 * Under autocast on a device with shader-f16, when some operand is f32: runs `compute` on the operands
 * with every f32 one cast to f16 (differentiably), with autocast off inside, and returns its result cast
 * back to f32. Otherwise returns undefined and the op runs as called. The f16 temporaries are released
 * here (taken out of the enclosing scope first, so that it does not release them a second time); the
 * autograd nodes that need them hold their own references.
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
    const y = autocast(() => compute(half), { enabled: false });
    if (y.dtype !== "f16") return y;
    const out = cast(y, "f32");
    keep(y).dispose();
    return out;
  } finally {
    half.forEach((t, i) => {
      if (t && t !== operands[i]) keep(t).dispose();
    });
  }
}
