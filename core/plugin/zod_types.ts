/**
 * Names for zod's types in voxssl's signatures. zod's own declarations are outside voxssl's documented
 * API (`deno doc` would list zod's thousands of symbols), so public signatures refer to these aliases.
 *
 * @module
 */
import type { z } from "zod";

/** @internal A zod schema that parses to `O` from `I`. */
export type ZodSchema<O = unknown, I = unknown> = z.ZodType<O, I>;
/** @internal The type a schema parses to. */
export type ZodOutput<T extends ZodSchema> = z.output<T>;
/** @internal The type a schema accepts. */
export type ZodInput<T extends ZodSchema> = z.input<T>;
