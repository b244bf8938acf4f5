/**
 * Small helpers shared by kernel generators: dtype names, `{{KEY}}` specialisation of .wgsl sources,
 * and the linear-index preamble used with split dispatch grids.
 */
import { WGSL_LINEAR_WORKGROUP } from "../core/gpu/mod.ts";

/** Storage element types the kernels index directly (each is a WGSL array element type). */
export type ElementType = "f32" | "f16" | "i32" | "u32";

/**
 * Element types of the elementwise kernels: the above plus u8, which WGSL cannot store: it lives packed 4
 * per `u32` word (element i is byte i % 4, little-endian, of word i / 4). Other kernels take ElementType,
 * so a u8 operand cannot reach them by accident.
 */
export type ElementwiseType = ElementType | "u8";

/** Bytes per element type. */
export const ELEMENT_BYTES: Record<ElementwiseType, number> = { f32: 4, f16: 2, i32: 4, u32: 4, u8: 1 };

/**
 * Replaces every `{{KEY}}` in `source` by `values[KEY]`. Throws on a placeholder without a value, so a
 * template and its caller cannot drift apart silently. Adds `enable f16;` when `f16` is used.
 */
export function specialize(source: string, values: Record<string, string | number>): string {
  const code = source.replace(/\{\{(\w+)\}\}/g, (_, key: string) => {
    if (!(key in values)) throw new Error(`WGSL template needs a value for {{${key}}}`);
    return String(values[key]);
  });
  return /\bf16\b/.test(code) && !/enable f16;/.test(code) ? `enable f16;\n${code}` : code;
}

/** Preamble for 1D kernels: `linear_workgroup()` for grids split over x/y/z. */
export const LINEAR_INDEX = WGSL_LINEAR_WORKGROUP;

/** Workgroup size of the elementwise-style kernels. */
export const ELEMENTWISE_WORKGROUP = 256;

/** Splits a dimension list into `vec4<u32>` slots: `array<vec4<u32>, 2>` holds up to 8 dims. */
export const MAX_RANK = 8;
