/** Element types of tensors. f16 is storage (and arithmetic where kernels allow) on devices with shader-f16. */
export type DType = "f32" | "f16" | "i32" | "u32";

/** Bytes per element. */
export const DTYPE_BYTES: Record<DType, number> = { f32: 4, f16: 2, i32: 4, u32: 4 };

/** Host arrays by dtype (f16 arrives and leaves as Float16Array). */
export type HostArray = Float32Array | Float16Array | Int32Array | Uint32Array;

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
  }
}

/** Converts any numeric array to the host array of `dtype` (rounding to f16 where needed). */
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
  }
}
