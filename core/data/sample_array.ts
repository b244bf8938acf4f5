/**
 * Arrays a method's data hook returns for one sample: a typed array with its declared element type and
 * shape. The loader stacks the arrays of a batch along a new leading axis (`[B, ...shape]`) and they
 * reach the GPU in that dtype and shape: a `u8` mask stays one byte per voxel all the way.
 *
 * @module
 */

/** Element types a sample array may have (the GPU tensor dtypes, plus compact `u8`). */
export type SampleDType = "f32" | "f16" | "i32" | "u32" | "u8";

/** The typed arrays behind each {@link SampleDType}. */
export type SampleData = Float32Array | Float16Array | Int32Array | Uint32Array | Uint8Array;

/** One array of a sample: values, element type and shape (row-major). */
export interface SampleArray {
  /** Element type, as it will be on the GPU. */
  readonly dtype: SampleDType;
  /** Shape of this sample's array (without the batch axis). */
  readonly shape: readonly number[];
  /** The values, `prod(shape)` of them. */
  readonly data: SampleData;
}

/** What a data hook returns: named arrays; every sample of a batch must return the same names, dtypes and shapes. */
export type SampleOutput = Record<string, SampleArray>;

/** The dtype of a typed array, or undefined when it is not one the GPU takes. */
export function dtypeOfData(data: unknown): SampleDType | undefined {
  if (data instanceof Float32Array) return "f32";
  if (data instanceof Float16Array) return "f16";
  if (data instanceof Int32Array) return "i32";
  if (data instanceof Uint32Array) return "u32";
  if (data instanceof Uint8Array && !(data instanceof Uint8ClampedArray)) return "u8";
  return undefined;
}

/**
 * Declares a sample array: `data` holds `prod(shape)` values; the dtype follows the typed array
 * (Float32Array → f32, Float16Array → f16, Int32Array → i32, Uint32Array → u32, Uint8Array → u8).
 *
 * @example
 * ```ts
 * import { sampleArray } from "./sample_array.ts";
 * const mask = sampleArray(new Uint8Array(8).fill(1), [2, 2, 2]);
 * console.log(mask.dtype, mask.shape); // "u8" [2, 2, 2]
 * ```
 */
export function sampleArray(data: SampleData, shape: readonly number[]): SampleArray {
  const dtype = dtypeOfData(data);
  if (!dtype) {
    throw new TypeError(
      `sampleArray(): ${
        (data as object)?.constructor?.name ?? typeof data
      } is not a GPU element type; use Float32Array, Float16Array, Int32Array, Uint32Array or Uint8Array`,
    );
  }
  if (!shape.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new RangeError(`sampleArray(): shape must be non-negative integers, got [${shape}]`);
  }
  const n = shape.reduce((a, b) => a * b, 1);
  if (n !== data.length) {
    throw new RangeError(`sampleArray(): shape [${shape}] holds ${n} values, the array has ${data.length}`);
  }
  return { dtype, shape: [...shape], data };
}

/**
 * Checks what a data hook returned, naming the hook (`where`) and the offending key: a plain object of
 * {@link SampleArray}s whose data, dtype and shape agree.
 */
export function checkSampleOutput(output: unknown, where: string): SampleOutput {
  if (output === null || typeof output !== "object" || Array.isArray(output)) {
    throw new TypeError(
      `${where} must return an object of named arrays (sampleArray(data, shape)), got ${
        output === null ? "null" : Array.isArray(output) ? "an array" : typeof output
      }`,
    );
  }
  const entries = Object.entries(output as Record<string, unknown>);
  if (entries.length === 0) throw new TypeError(`${where} returned no arrays`);
  for (const [key, value] of entries) {
    const a = value as Partial<SampleArray> | null;
    if (!a || typeof a !== "object" || !("data" in a) || !Array.isArray(a.shape)) {
      throw new TypeError(
        `${where}: "${key}" must be a sample array made with sampleArray(data, shape), got ${
          dtypeOfData(a) ? "a bare typed array (its shape is unknown)" : typeof a
        }`,
      );
    }
    let checked: SampleArray;
    try {
      checked = sampleArray(a.data as SampleData, a.shape);
    } catch (error) {
      throw new TypeError(
        `${where}: "${key}": ${(error as Error).message.replace(/^sampleArray\(\): /, "")}`,
      );
    }
    if (a.dtype !== checked.dtype) {
      throw new TypeError(`${where}: "${key}" declares dtype ${a.dtype} but holds ${checked.dtype} data`);
    }
  }
  return output as SampleOutput;
}
