/**
 * Automatic mixed precision, as PyTorch's `torch.autocast`: inside `autocast(fn)` the compute-heavy ops
 * (`matmul`, `conv3d`, `convTranspose3d`, `scaledDotProductAttention`) cast their f32 operands to f16,
 * run their f16 kernels (f16 storage, f32 arithmetic and accumulation) and return f32.
 *
 * Rules:
 * - Only those four ops change precision, at the op level (so every caller, layer or functional code in
 *   a plugin, gets the same behaviour). Every other op (norms, activations, losses, reductions,
 *   elementwise arithmetic) runs in the dtype of its inputs, which stays f32 because the autocast ops
 *   return f32: nothing else ever sees an f16 tensor it did not ask for.
 * - The casts are ordinary differentiable `cast` ops: gradients flow back through them in f16 inside the
 *   op and arrive in f32 at f32 leaves (master weights stay f32, and so do their gradients).
 * - Operands that are already f16 are used as they are; an op whose operands are all f16 computes and
 *   returns f16 as it does outside autocast. Integer operands are left to the op's own checks.
 * - Devices without shader-f16: autocast is a no-op (the ops compute in f32). `autocastDtype(gpu)` says
 *   which precision the ops will use on a device.
 * - Nesting: `autocast(fn, { enabled: false })` turns it off inside `fn`, an inner `autocast(fn)` back on;
 *   the previous state returns when `fn` returns or throws.
 * - Independent of `noGrad()` (evaluation may run under autocast too). `backward()` runs every backward
 *   rule with autocast off: a rule follows the dtypes its op recorded in the forward pass, so the
 *   backward of an f32 op stays f32 even when `backward()` is called inside an autocast block.
 *
 * Cost: each autocast op adds a cast of every f32 operand and of its result (memory-bound elementwise
 * passes); the saved f16 operands take half the memory of f32 copies.
 */
import type { Gpu } from "../gpu/mod.ts";

/** Options of {@link autocast}. */
export interface AutocastOptions {
  /** false turns autocast off inside the block (default true). */
  enabled?: boolean;
}

let enabled = false;

/** Whether an autocast block is active (regardless of the device; see {@link autocastDtype}). */
export function isAutocastEnabled(): boolean {
  return enabled;
}

/**
 * The dtype the autocast ops compute in on `gpu` right now: "f16" inside an autocast block on a device
 * with shader-f16, undefined otherwise (the ops run in their operands' dtype).
 */
export function autocastDtype(gpu: Gpu): "f16" | undefined {
  return enabled && gpu.hasF16 ? "f16" : undefined;
}

/**
 * Runs `fn` with automatic mixed precision on (or off with `{ enabled: false }`); see the module
 * comment for the rules. `fn` must be synchronous (like `scope()`): an `await` inside would leak the
 * state to unrelated work.
 * @example
 * const loss = autocast(() => mseLoss(net.forward(x), target)); // convs and matmuls in f16, loss in f32
 * backward(loss);
 */
export function autocast<T>(fn: () => T, options: AutocastOptions = {}): T {
  const previous = enabled;
  enabled = options.enabled ?? true;
  try {
    const result = fn();
    if (result instanceof Promise) {
      throw new Error("autocast() callbacks must be synchronous; await outside the block");
    }
    return result;
  } finally {
    enabled = previous;
  }
}
