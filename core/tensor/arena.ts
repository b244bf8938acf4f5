/**
 * Arenas: many tensors in one GPU buffer, each at an offset aligned for binding. Parameters, their
 * gradients and optimizer state live in arenas with one layout, so a fused optimizer updates a whole
 * parameter group in one dispatch (per binding-sized chunk) instead of one per tensor.
 */
import type { Gpu } from "../gpu/mod.ts";
import { runFill } from "../../kernels/mod.ts";
import { type DType, DTYPE_BYTES } from "./dtype.ts";
import { numel, type Shape } from "./shape.ts";
import { Storage, Tensor } from "./tensor.ts";

/** Where each part sits inside an arena, in elements (shared by arenas of the same layout). */
export interface ArenaLayout {
  /** Shape of each part, in order. */
  shapes: Shape[];
  /** Element offset of each part. */
  offsets: number[];
  /** Elements in the arena, alignment padding included. */
  length: number;
}

/** Plans a layout: each part starts at a multiple of `alignBytes`. */
export function planArena(shapes: readonly Shape[], dtype: DType, alignBytes: number): ArenaLayout {
  const align = Math.max(1, alignBytes / DTYPE_BYTES[dtype]);
  const offsets: number[] = [];
  let at = 0;
  for (const shape of shapes) {
    offsets.push(at);
    at += Math.ceil(numel(shape) / align) * align;
  }
  return { shapes: [...shapes], offsets, length: Math.max(at, align) };
}

/** An arena: the flat whole and one tensor per part, all sharing one buffer (zero-filled). */
export interface Arena {
  /** Where each part sits. */
  layout: ArenaLayout;
  /** Element type of every part. */
  dtype: DType;
  /** A flat view over the whole arena, padding included. */
  whole: Tensor;
  /** One tensor per part, shaped as planned. */
  parts: Tensor[];
}

/** Allocates a zero-filled arena. Dispose `whole` and every part to free it. */
export function createArena(gpu: Gpu, layout: ArenaLayout, dtype: DType): Arena {
  const bytes = layout.length * DTYPE_BYTES[dtype];
  const storage = new Storage(gpu, gpu.pool.acquire(bytes));
  storage.refs = layout.shapes.length + 1;
  runFill(gpu, { buffer: storage.buffer, size: bytes }, Math.ceil(bytes / 4), 0);
  const whole = new Tensor(gpu, storage, [layout.length], dtype, 0);
  const parts = layout.shapes.map((shape, i) =>
    new Tensor(gpu, storage, shape, dtype, layout.offsets[i] * DTYPE_BYTES[dtype])
  );
  return { layout, dtype, whole, parts };
}
