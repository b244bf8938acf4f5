/**
 * Splitting per-head work into dispatches whose bindings fit `maxStorageBufferBindingSize`.
 *
 * Attention-style kernels read several tensors laid out as [batch·heads, ...]: every head is a contiguous
 * block of `perHead` elements in each binding. When a binding is larger than the device allows, the heads
 * are processed in chunks; each chunk binds a sub-range of every buffer that starts at the aligned offset
 * at or before its first head (`minStorageBufferOffsetAlignment`) and passes the remaining distance as an
 * element offset to the kernel. One chunk covering everything (offsets 0) is the common case. The
 * splitting itself is the launch planner's (launch_plan.ts).
 */
import type { BufferRange, Gpu } from "../core/gpu/mod.ts";
import { planWindows } from "./launch_plan.ts";

/** One binding of per-head data: its range, elements per head and bytes per element. */
export interface HeadBinding {
  /** The whole tensor's range. */
  range: BufferRange;
  /** Elements per head. */
  perHead: number;
  /** Bytes per element (2 or 4). */
  elementBytes: number;
}

/** One dispatch's share of the heads. */
export interface HeadChunk {
  /** First head of the chunk. */
  head0: number;
  /** Heads in the chunk. */
  heads: number;
  /** One sub-range per binding, in the order given. */
  ranges: BufferRange[];
  /** Element offset of the chunk's first head inside each sub-range. */
  offsets: number[];
}

/**
 * Splits `heads` heads into chunks whose sub-ranges all fit one binding (the launch planner, one head per
 * item).
 * @throws BindingTooLargeError when a single head of some binding is larger than a binding can be.
 */
export function headChunks(gpu: Gpu, bindings: readonly HeadBinding[], heads: number): HeadChunk[] {
  const operands = bindings.map((b) => ({
    range: b.range,
    elementBytes: b.elementBytes,
    itemStride: b.perHead,
    itemExtent: b.perHead,
  }));
  return planWindows(gpu.limits, operands, heads, { label: "per-head kernel" }).map((w) => ({
    head0: w.item0,
    heads: w.items,
    ranges: w.ranges,
    offsets: w.bases,
  }));
}
