/** Tensor factories: from host data, constants, and allocation helpers for ops. */
import { getGpu, type Gpu } from "../../gpu/mod.ts";
import { runFill } from "../../../kernels/mod.ts";
import { type DType, toHostArray } from "../dtype.ts";
import { checkShape, numel, type Shape } from "../shape.ts";
import { Tensor } from "../tensor.ts";

/** Options shared by factories. */
export interface CreateOptions {
  /** Element type; default "f32". */
  dtype?: DType;
  /** Device; default the process default (`initGpu()`). */
  gpu?: Gpu;
  /** Mark the new tensor as a leaf that receives gradients. */
  requiresGrad?: boolean;
}

function finish(t: Tensor, options: CreateOptions): Tensor {
  if (options.requiresGrad) t.requiresGrad = true;
  return t;
}

/**
 * A tensor from host values (row-major), converted to `options.dtype` (default f32 whatever the array
 * type: the dtype is never inferred). A mask travels at 1 byte per element as
 * `tensor(uint8Array, shape, { dtype: "u8" })` (u8 values must be integers in 0..255).
 * @example
 * const x = tensor([1, 2, 3, 4, 5, 6], [2, 3]);
 */
export function tensor(values: ArrayLike<number>, shape: Shape, options: CreateOptions = {}): Tensor {
  checkShape(shape);
  if (values.length !== numel(shape)) {
    throw new RangeError(`tensor(): ${values.length} values do not fill shape [${shape}] (${numel(shape)})`);
  }
  const dtype = options.dtype ?? "f32";
  const gpu = options.gpu ?? getGpu();
  const t = Tensor.empty(gpu, shape, dtype);
  if (values.length > 0) gpu.write(t.buffer, toHostArray(dtype, values), t.byteOffset);
  return finish(t, options);
}

/** An uninitialised tensor; contents are undefined until written. */
export function empty(shape: Shape, options: CreateOptions = {}): Tensor {
  checkShape(shape);
  return finish(Tensor.empty(options.gpu ?? getGpu(), shape, options.dtype ?? "f32"), options);
}

/** The 32-bit fill pattern of `value` in `dtype` (f16 values are packed twice, u8 values 4 times). */
function fillPattern(value: number, dtype: DType): number {
  const view = new DataView(new ArrayBuffer(4));
  switch (dtype) {
    case "f32":
      view.setFloat32(0, value, true);
      break;
    case "f16":
      view.setFloat16(0, value, true);
      view.setFloat16(2, value, true);
      break;
    case "i32":
      view.setInt32(0, value, true);
      break;
    case "u32":
      view.setUint32(0, value, true);
      break;
    case "u8":
      view.setUint32(0, toHostArray("u8", [value])[0] * 0x01010101, true);
      break;
  }
  return view.getUint32(0, true);
}

/** Writes `value` into every element of `t` (an op's output buffer, not a graph operation). */
export function fillInPlace(t: Tensor, value: number): void {
  runFill(t.gpu, t.binding, Math.ceil(t.byteLength / 4), fillPattern(value, t.dtype));
}

/** A tensor with every element equal to `value`. */
export function full(shape: Shape, value: number, options: CreateOptions = {}): Tensor {
  const t = empty(shape, options);
  fillInPlace(t, value);
  return t;
}

/** Zeros. */
export function zeros(shape: Shape, options: CreateOptions = {}): Tensor {
  return full(shape, 0, options);
}

/** Ones. */
export function ones(shape: Shape, options: CreateOptions = {}): Tensor {
  return full(shape, 1, options);
}

/** Zeros shaped like `t` (same dtype and device). */
export function zerosLike(t: Tensor): Tensor {
  return full(t.shape, 0, { dtype: t.dtype, gpu: t.gpu });
}

/** Ones shaped like `t`. */
export function onesLike(t: Tensor): Tensor {
  return full(t.shape, 1, { dtype: t.dtype, gpu: t.gpu });
}

/** An uninitialised tensor on `like`'s device. @internal for ops. */
export function emptyOn(like: Tensor, shape: Shape, dtype: DType = like.dtype): Tensor {
  return Tensor.empty(like.gpu, shape, dtype);
}
