/**
 * Helpers shared by the normalization, activation, pooling, resampling and loss ops (not exported from
 * the ops barrel): scratch buffers from the pool and input validation with messages that name the op.
 */
import { type DType, isFloat } from "../dtype.ts";
import { sameShape, type Shape } from "../shape.ts";
import type { Tensor } from "../tensor.ts";

export { poolScratch } from "../../../kernels/mod.ts";

/** Throws unless `t` is an f32 or f16 tensor. */
export function checkFloatTensor(op: string, what: string, t: Tensor): void {
  if (!isFloat(t.dtype)) throw new TypeError(`${op}(): ${what} must be f32 or f16, got ${t}`);
}

/** Throws unless `t` has exactly `shape`. */
export function checkShapeIs(op: string, what: string, t: Tensor, shape: Shape): void {
  if (!sameShape(t.shape, shape)) {
    throw new RangeError(`${op}(): ${what} has shape [${t.shape}], expected [${shape}]`);
  }
}

/** Throws unless every tensor lives on `x`'s device. */
export function checkDevice(op: string, x: Tensor, others: readonly (Tensor | undefined)[]): void {
  for (const t of others) {
    if (t && t.gpu !== x.gpu) throw new Error(`${op}(): tensors live on different devices`);
  }
}

/** Throws unless `t` has `x`'s dtype. */
export function checkSameDtype(op: string, what: string, x: Tensor, t: Tensor): void {
  if (t.dtype !== x.dtype) throw new TypeError(`${op}(): ${what} is ${t.dtype}, the input is ${x.dtype}`);
}

/**
 * `t.dtype`, narrowed to the dtypes kernels index element by element; a u8 tensor (packed 4 per word)
 * is refused with a TypeError that says what u8 tensors can do.
 */
export function unpackedDtype(op: string, t: Tensor): Exclude<DType, "u8"> {
  if (t.dtype === "u8") {
    throw new TypeError(
      `${op}() does not take u8 tensors (${t}): u8 tensors can be created from host data, reshaped, cast to ` +
        `another dtype with cast() and read back (also compared, and used as where() conditions)`,
    );
  }
  return t.dtype;
}
