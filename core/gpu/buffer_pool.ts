/**
 * Buffer pool keyed by size class. Buffers are recycled, never freed per step: in steady state a training
 * step allocates nothing. Size classes step by quarters of an octave (256 B, then 2^k·{1, 1.25, 1.5, 1.75}),
 * so a request wastes at most 20% of its class.
 *
 * Counters (`stats()`) let tests prove that a loop of steps returns to the same bytes in use.
 */

/** A pooled GPU buffer. `id` is stable for the life of the buffer (bind-group caches key on it). */
export interface GpuBuffer {
  readonly id: number;
  readonly buffer: GPUBuffer;
  /** Bytes the buffer really holds (its size class). */
  readonly size: number;
}

/** Memory counters of a {@link BufferPool}. */
export interface PoolStats {
  /** Bytes of buffers currently handed out (class sizes). */
  bytesInUse: number;
  /** Highest `bytesInUse` since creation or the last `resetPeak()`. */
  peakBytesInUse: number;
  /** Bytes held from the device: in use plus cached free buffers. */
  bytesReserved: number;
  /** Buffers currently handed out. */
  buffersInUse: number;
  /** `createBuffer` calls since creation: flat in steady state. */
  allocations: number;
  /** Requests served from the free lists. */
  reuses: number;
}

import { MemoryRecorder, type MemoryTimeline } from "./memory_timeline.ts";

const USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
const MIN_CLASS = 256;

/** Rounds a byte count up to its size class. */
export function sizeClass(bytes: number): number {
  if (bytes <= MIN_CLASS) return MIN_CLASS;
  const octave = 2 ** Math.floor(Math.log2(bytes));
  const quarter = octave / 4;
  return Math.ceil(bytes / quarter) * quarter;
}

let nextBufferId = 1;

/** Hands out storage buffers by size class and takes them back for reuse. */
export class BufferPool {
  #free = new Map<number, GpuBuffer[]>();
  #inUse = new Set<GpuBuffer>();
  #recorder: MemoryRecorder | undefined;
  #stats: PoolStats = {
    bytesInUse: 0,
    peakBytesInUse: 0,
    bytesReserved: 0,
    buffersInUse: 0,
    allocations: 0,
    reuses: 0,
  };

  constructor(private readonly device: GPUDevice, private readonly maxBufferSize: number) {}

  /** Returns a buffer of at least `bytes` bytes (contents undefined). */
  acquire(bytes: number): GpuBuffer {
    if (!Number.isFinite(bytes) || bytes < 0) throw new RangeError(`buffer size must be >= 0, got ${bytes}`);
    if (bytes > this.maxBufferSize) {
      throw new RangeError(
        `a buffer of ${bytes} bytes exceeds the device's maxBufferSize (${this.maxBufferSize} bytes)`,
      );
    }
    const cappedSize = Math.min(sizeClass(bytes), this.maxBufferSize);
    let buffer = this.#free.get(cappedSize)?.pop();
    if (buffer) {
      this.#stats.reuses++;
    } else {
      buffer = {
        id: nextBufferId++,
        buffer: this.device.createBuffer({ size: cappedSize, usage: USAGE, label: `pool:${cappedSize}` }),
        size: cappedSize,
      };
      this.#stats.allocations++;
      this.#stats.bytesReserved += cappedSize;
    }
    this.#inUse.add(buffer);
    this.#stats.bytesInUse += buffer.size;
    this.#stats.buffersInUse++;
    this.#stats.peakBytesInUse = Math.max(this.#stats.peakBytesInUse, this.#stats.bytesInUse);
    this.#recorder?.acquired(buffer, buffer.size);
    return buffer;
  }

  /** Gives a buffer back. Pending GPU work that reads it still sees its old contents (queue order). */
  release(buffer: GpuBuffer): void {
    if (!this.#inUse.delete(buffer)) {
      throw new Error(`buffer ${buffer.id} released twice or not from this pool`);
    }
    this.#stats.bytesInUse -= buffer.size;
    this.#stats.buffersInUse--;
    this.#recorder?.released(buffer, buffer.size);
    let list = this.#free.get(buffer.size);
    if (!list) this.#free.set(buffer.size, list = []);
    list.push(buffer);
  }

  /** Destroys every cached free buffer (returns memory to the device). Returns the bytes freed. */
  trim(): number {
    let freed = 0;
    for (const list of this.#free.values()) {
      for (const b of list) {
        b.buffer.destroy();
        freed += b.size;
      }
    }
    this.#free.clear();
    this.#stats.bytesReserved -= freed;
    return freed;
  }

  /** A snapshot of the counters. */
  stats(): PoolStats {
    return { ...this.#stats };
  }

  /** Starts a new peak measurement from the current bytes in use. */
  resetPeak(): void {
    this.#stats.peakBytesInUse = this.#stats.bytesInUse;
  }

  /**
   * Starts recording the memory timeline (core/gpu/memory_timeline.ts): every buffer handed out or given
   * back from now on, attributed to the op family recording it. Restarts a recording already running.
   */
  startTimeline(): void {
    this.#recorder = new MemoryRecorder(this.#stats.bytesInUse);
  }

  /** Stops recording and returns the timeline (undefined when none was recording). */
  stopTimeline(): MemoryTimeline | undefined {
    const timeline = this.#recorder?.timeline();
    this.#recorder = undefined;
    return timeline;
  }

  /** Destroys every buffer, in use or free. */
  destroy(): void {
    this.trim();
    for (const b of this.#inUse) b.buffer.destroy();
    this.#inUse.clear();
  }
}
