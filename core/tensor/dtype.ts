/**
 * Element types of tensors. f16 is storage (and arithmetic where kernels allow) on devices with shader-f16.
 * u8 is compact storage for masks and small label maps: 1 byte per element, packed 4 per 32-bit word on
 * the GPU (element i is byte i % 4, little-endian, of word i / 4). A u8 tensor can be created from host
 * data (or filled), reshaped, cast to and from other dtypes, compared, used as a `where()` condition and
 * read back; other ops refuse it with a TypeError (cast it first).
 */
export type DType = "f32" | "f16" | "i32" | "u32" | "u8";

/** Bytes per element. */
export const DTYPE_BYTES: Record<DType, number> = { f32: 4, f16: 2, i32: 4, u32: 4, u8: 1 };

/** Host arrays by dtype (f16 arrives and leaves as Float16Array, u8 as Uint8Array). */
export type HostArray = Float32Array | Float16Array | Int32Array | Uint32Array | Uint8Array;

/** Whether a dtype is floating point. */
export function isFloat(dtype: DType): boolean {
  return dtype === "f32" || dtype === "f16";
}

/** Builds the host array of a dtype over `buffer`. */
export function hostArray(dtype: DType, buffer: ArrayBuffer, length: number): HostArray {
  switch (dtype) {
    case "f32":
      return new Float32Array(buffer, 0, length);
    case "f16":
      return new Float16Array(buffer, 0, length);
    case "i32":
      return new Int32Array(buffer, 0, length);
    case "u32":
      return new Uint32Array(buffer, 0, length);
    case "u8":
      return new Uint8Array(buffer, 0, length);
  }
}

/**
 * Converts any numeric array to the host array of `dtype` (rounding to f16 where needed). For u8 every
 * value must be an integer in 0..255 (a RangeError names the first that is not: masks must not wrap
 * silently); a Uint8Array or Uint8ClampedArray is taken as is.
 */
export function toHostArray(dtype: DType, values: ArrayLike<number>): HostArray {
  switch (dtype) {
    case "f32":
      return values instanceof Float32Array ? values : Float32Array.from(values);
    case "f16":
      return values instanceof Float16Array ? values : Float16Array.from(values);
    case "i32":
      return values instanceof Int32Array ? values : Int32Array.from(values);
    case "u32":
      return values instanceof Uint32Array ? values : Uint32Array.from(values);
    case "u8":
      return toUint8(values);
  }
}

function toUint8(values: ArrayLike<number>): Uint8Array {
  if (values instanceof Uint8Array) return values;
  if (values instanceof Uint8ClampedArray) {
    return new Uint8Array(values.buffer, values.byteOffset, values.length);
  }
  const out = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isInteger(v) || v < 0 || v > 255) {
      throw new RangeError(`u8 values must be integers in 0..255; value ${i} is ${v}`);
    }
    out[i] = v;
  }
  return out;
}
