/**
 * The memory timeline of the buffer pool: while it records, every buffer handed out or given back is one
 * event, attributed to the op family that was recording at the time of the allocation (core/gpu/op_family.ts;
 * a buffer given back counts against the family that allocated it). Buffers in use when recording starts
 * (parameters, gradients, optimizer state, the batch of a previous step) are "resident".
 *
 * From the events: the peak of the bytes in use, which families held how much at that moment, and the
 * bytes per family over the step (for the profiler's chart). Byte counts are the pool's size classes (what
 * the device really holds).
 */
import { currentOpFamily, OP_FAMILIES, type OpFamily } from "./op_family.ts";

/** A family, or the buffers already in use when recording started. */
export type MemoryOwner = OpFamily | "resident";

/** Every owner, in table order (resident first). */
export const MEMORY_OWNERS: readonly MemoryOwner[] = ["resident", ...OP_FAMILIES];

/** What a recording found. */
export interface MemoryTimeline {
  /** Bytes in use when recording started. */
  startBytes: number;
  /** Highest bytes in use while recording (resident included). */
  peakBytes: number;
  /** Index of the event after which the peak was reached (-1: at the start). */
  peakEvent: number;
  /** Bytes each owner held at the peak; they sum to `peakBytes`. */
  atPeak: Record<MemoryOwner, number>;
  /** Bytes each owner held when recording stopped. */
  atEnd: Record<MemoryOwner, number>;
  /** Events in order: who, and the signed change of bytes (+ handed out, - given back). */
  events: { owner: MemoryOwner; bytes: number }[];
  /** Buffers handed out while recording. */
  allocations: number;
}

function zeros(): Record<MemoryOwner, number> {
  return Object.fromEntries(MEMORY_OWNERS.map((o) => [o, 0])) as Record<MemoryOwner, number>;
}

/** Records pool events; created by `BufferPool.startTimeline`. */
export class MemoryRecorder {
  readonly #owners = new Map<object, MemoryOwner>();
  readonly #held = zeros();
  readonly #startBytes: number;
  #total: number;
  #peak: number;
  #peakEvent = -1;
  #atPeak: Record<MemoryOwner, number>;
  #allocations = 0;
  readonly #events: { owner: MemoryOwner; bytes: number }[] = [];

  /** @param bytesInUse the pool's bytes in use now (all resident). */
  constructor(bytesInUse: number) {
    this.#startBytes = this.#total = this.#peak = bytesInUse;
    this.#held.resident = bytesInUse;
    this.#atPeak = { ...this.#held };
  }

  /** A buffer was handed out. */
  acquired(buffer: object, bytes: number): void {
    const owner = currentOpFamily() ?? "other";
    this.#owners.set(buffer, owner);
    this.#allocations++;
    this.#change(owner, bytes);
  }

  /** A buffer was given back. */
  released(buffer: object, bytes: number): void {
    const owner = this.#owners.get(buffer) ?? "resident";
    this.#owners.delete(buffer);
    this.#change(owner, -bytes);
  }

  /** The timeline so far. */
  timeline(): MemoryTimeline {
    return {
      startBytes: this.#startBytes,
      peakBytes: this.#peak,
      peakEvent: this.#peakEvent,
      atPeak: { ...this.#atPeak },
      atEnd: { ...this.#held },
      events: [...this.#events],
      allocations: this.#allocations,
    };
  }

  #change(owner: MemoryOwner, bytes: number): void {
    this.#held[owner] += bytes;
    this.#total += bytes;
    this.#events.push({ owner, bytes });
    if (this.#total > this.#peak) {
      this.#peak = this.#total;
      this.#peakEvent = this.#events.length - 1;
      this.#atPeak = { ...this.#held };
    }
  }
}

/**
 * Bytes per owner after each event, sampled to at most `points` points (the peak is always one of them):
 * the series of a stacked chart.
 */
export function sampleTimeline(
  timeline: MemoryTimeline,
  points = 400,
): { event: number; held: Record<MemoryOwner, number> }[] {
  const held = zeros();
  held.resident = timeline.startBytes;
  const n = timeline.events.length;
  const stride = Math.max(1, Math.ceil(n / points));
  const out = [{ event: -1, held: { ...held } }];
  timeline.events.forEach((e, i) => {
    held[e.owner] += e.bytes;
    if ((i + 1) % stride === 0 || i === n - 1 || i === timeline.peakEvent) {
      out.push({ event: i, held: { ...held } });
    }
  });
  return out;
}
