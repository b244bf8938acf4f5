/**
 * Splitting per-head work into dispatches whose bindings fit `maxStorageBufferBindingSize`.
 *
 * Attention-style kernels read several tensors laid out as [batch·heads, ...]: every head is a contiguous
 * block of `perHead` elements in each binding. When a binding is larger than the device allows, the heads
 * are processed in chunks; each chunk binds a sub-range of every buffer that starts at the aligned offset
 * at or before its first head (`minStorageBufferOffsetAlignment`) and passes the remaining distance as an
 * element offset to the kernel. One chunk covering everything (offsets 0) is the common case.
 */
import type { BufferRange, Gpu } from "../core/gpu/mod.ts";
import { align4 } from "../core/gpu/mod.ts";

/** One binding of per-head data: its range, elements per head and bytes per element. */
export interface HeadBinding {
  range: BufferRange;
  perHead: number;
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
 * Splits `heads` heads into chunks whose sub-ranges all fit one binding.
 * @throws RangeError when a single head of some binding is larger than a binding can be.
 */
export function headChunks(gpu: Gpu, bindings: readonly HeadBinding[], heads: number): HeadChunk[] {
  const limit = gpu.limits.maxStorageBufferBindingSize;
  const align = gpu.limits.minStorageBufferOffsetAlignment;
  if (bindings.every((b) => align4(b.range.size) <= limit)) {
    return [{ head0: 0, heads, ranges: [...bindings.map((b) => b.range)], offsets: bindings.map(() => 0) }];
  }
  let perChunk = heads;
  for (const b of bindings) {
    const bytes = b.perHead * b.elementBytes;
    if (bytes === 0) continue;
    const fit = Math.floor((limit - align - 4) / bytes);
    if (fit < 1) {
      throw new RangeError(
        `one head of ${b.perHead} elements (${bytes} bytes) does not fit a storage binding of ${limit} bytes`,
      );
    }
    perChunk = Math.min(perChunk, fit);
  }
  const chunks: HeadChunk[] = [];
  for (let head0 = 0; head0 < heads; head0 += perChunk) {
    const n = Math.min(perChunk, heads - head0);
    const ranges: BufferRange[] = [];
    const offsets: number[] = [];
    for (const b of bindings) {
      const base = b.range.offset ?? 0;
      const start = base + head0 * b.perHead * b.elementBytes;
      const end = Math.min(base + b.range.size, start + n * b.perHead * b.elementBytes);
      const aligned = Math.floor(start / align) * align;
      const size = Math.min(b.range.buffer.size - aligned, Math.max(16, align4(end - aligned)));
      ranges.push({ buffer: b.range.buffer, offset: aligned, size });
      offsets.push((start - aligned) / b.elementBytes);
    }
    chunks.push({ head0, heads: n, ranges, offsets });
  }
  return chunks;
}
