/**
 * Automatic mixed precision: inside `autocast(fn)`, on a device with shader-f16, activations are stored
 * in f16 from the first compute op on, and stay f16 between the ops that accept f16 (convolutions,
 * matmuls, attention, norms, activations, residual adds, pooling, shape ops); master weights, reductions
 * (norm statistics, sums, losses) and accumulators stay f32. Every f16 kernel reads and writes f16
 * storage and computes in f32.
 *
 * Rules, applied at the op level (every caller, layer or functional code in a plugin, gets the same):
 * 1. Compute ops — `matmul`, `conv3d`, `convTranspose3d`, `scaledDotProductAttention`: f32 operands are
 *    cast to f16 (weights: a cast of the weight per call; activations arrive in f16 already) and the
 *    result is f16. An attention bias stays f32.
 * 2. Ops that accept f16 run in their input's dtype and return it: instance/group/layer norms and the
 *    fused norm + residual + LeakyReLU (f16 x, y, residual; f32 weight, bias and statistics),
 *    activations, dropout and drop path, SwiGLU, rotary embedding (f32 table), pooling, interpolation,
 *    shape ops, row gather/scatter, max/min, and the unary elementwise ops not listed in rule 4.
 * 3. Operands that mix f16 and f32 in one op (binary elementwise ops such as the residual `add`,
 *    `where`, `lerp`, `concat`, `scatterRows`, `swiglu`, a norm's residual) are brought to one dtype: f16 when
 *    every f32 operand is a master weight (an f32 leaf that requires grad: a bias, a layer scale, a
 *    position embedding), else f32 (data, targets and tensors computed in f32 win, as in PyTorch's type
 *    promotion). Outside autocast mixed dtypes stay an error.
 * 4. f32 ops: f16 inputs are cast to f32 at the op's input and the op returns f32 — the losses
 *    (`mseLoss`, `l1Loss`, `crossEntropy`, `softDiceLoss`, `cosineSimilarity`), `softmax`,
 *    `logSoftmax`, `logSumExp`, `l2Normalize`, and `exp`, `log`, `sqrt`, `rsqrt`, `pow`/`powScalar`
 *    (range and precision). `sum` and `mean` read f16 directly (their accumulation is f32 anyway) and
 *    return f32, without a cast pass. No kernel refuses f16 outright; these ops cast because their results
 *    feed the loss or need the range.
 * - Every cast is an ordinary differentiable `cast` op, and a gradient always has its tensor's dtype
 *   (autograd converts one that arrives in the other float dtype), so master weights and their
 *   gradients stay f32 while activation gradients flow in f16.
 * - Devices without shader-f16: autocast is a no-op (every op computes in f32). `autocastDtype(gpu)`
 *   says which precision the compute ops use on a device.
 * - Nesting: `autocast(fn, { enabled: false })` turns it off inside `fn` (f16 tensors that reach an op
 *   there run in f16 as outside autocast; mixed operands are an error), an inner `autocast(fn)` back on;
 *   the previous state returns when `fn` returns or throws.
 * - Independent of `noGrad()` (evaluation may run under autocast too). `backward()` runs every backward
 *   rule with autocast off: a rule follows the dtypes its op recorded in the forward pass, so the
 *   backward of an f32 op stays f32 even when `backward()` is called inside an autocast block.
 *
 * Cost: the casts left are one per weight per compute op (small), one per f32 input of the network's
 * first op, and one at the loss input; the saved activations take half the memory of f32 ones
 * (BENCHMARKS.md, "f16 activations").
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
 * const loss = autocast(() => mseLoss(net.forward(x), target)); // activations in f16, the loss in f32
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
