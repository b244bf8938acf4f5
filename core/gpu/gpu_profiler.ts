/**
 * The GPU side of the profiler: kernel count, bytes bound, CPU encode time and GPU time per op family
 * (core/gpu/op_family.ts) for the work recorded between `begin()` and `collect()`.
 *
 * GPU time comes from timestamp queries when the device has "timestamp-query": the recording is cut into
 * one compute pass per run of dispatches of one family, and each pass writes a timestamp at its start and
 * end. Without the feature, each run is submitted alone and timed on the host from the submit to
 * `queue.onSubmittedWorkDone` (a wall-clock estimate: it includes the driver's latency, and a run that
 * waits for the previous one is counted from that one's end). `source` says which one a report used.
 *
 * Cutting the work into more passes and submits costs a little; the profiler is for profiling runs, not
 * for every step.
 */
import type { Binding, DispatchObserver, Gpu, Kernel } from "./device.ts";
import { currentOpFamily, OP_FAMILIES, type OpFamily } from "./op_family.ts";

/** How GPU time was measured. */
export type GpuTimeSource = "timestamp-query" | "submit-wall-clock";

/** The figures of one op family. */
export interface FamilyFigures {
  /** Kernel dispatches recorded. */
  kernels: number;
  /** Bytes of every binding of every dispatch (each bound range once per dispatch: the ideal traffic). */
  bytesBound: number;
  /** GPU milliseconds (see the report's `source`). */
  gpuMs: number;
  /** Host milliseconds spent recording this family's work (the time before each of its dispatches). */
  encodeMs: number;
  /** Kernel names and dispatches of each (for the details of a family). */
  byKernel: Record<string, number>;
}

/** What {@link GpuProfiler.collect} returns. */
export interface GpuProfile {
  /** How GPU time was measured. */
  source: GpuTimeSource;
  /** Figures per family (every family, zeros included). */
  families: Record<OpFamily, FamilyFigures>;
  /** Segments the recording was cut into (passes or submits). */
  segments: number;
}

interface Segment {
  family: OpFamily;
  /** Timestamp mode: index of the begin query in its set. */
  query?: { set: number; index: number };
  /** Fallback mode: submit time and completion time (ms, performance.now()). */
  submittedAt?: number;
  doneAt?: Promise<number>;
}

const QUERIES_PER_SET = 2048;

function emptyFamilies(): Record<OpFamily, FamilyFigures> {
  return Object.fromEntries(
    OP_FAMILIES.map((f) => [f, { kernels: 0, bytesBound: 0, gpuMs: 0, encodeMs: 0, byKernel: {} }]),
  ) as Record<OpFamily, FamilyFigures>;
}

/** Profiles the dispatches of a device; attach with `begin()`, read with `collect()`. */
export class GpuProfiler implements DispatchObserver {
  /** How GPU time is measured on this device. */
  readonly source: GpuTimeSource;
  readonly #gpu: Gpu;
  #families = emptyFamilies();
  #segments: Segment[] = [];
  #open: Segment | undefined;
  #sets: GPUQuerySet[] = [];
  #nextQuery = 0;
  #lastDispatch = 0;
  #unsubmitted: Segment[] = [];

  /** `forceFallback` times by submits even where timestamp queries exist (to test that path). */
  constructor(gpu: Gpu, options: { forceFallback?: boolean } = {}) {
    this.#gpu = gpu;
    this.source = gpu.hasTimestamps && !options.forceFallback ? "timestamp-query" : "submit-wall-clock";
  }

  /** Starts observing the device's dispatches (from a clean slate). */
  begin(): void {
    this.#families = emptyFamilies();
    this.#segments = [];
    this.#unsubmitted = [];
    this.#open = undefined;
    this.#nextQuery = 0;
    this.#lastDispatch = performance.now();
    this.#gpu.observeDispatches(this);
  }

  /**
   * Stops observing, waits for the GPU and returns the figures since `begin()`.
   */
  async collect(): Promise<GpuProfile> {
    await this.#gpu.sync();
    this.#gpu.observeDispatches(undefined);
    if (this.source === "timestamp-query") await this.#readTimestamps();
    else await this.#readSubmitTimes();
    const families = this.#families;
    return { source: this.source, families, segments: this.#segments.length };
  }

  /** Frees the query sets. */
  dispose(): void {
    for (const set of this.#sets) set.destroy();
    this.#sets = [];
  }

  /** @internal DispatchObserver. */
  beforeDispatch(kernel: Kernel, bindings: readonly Binding[], passOpen: boolean): boolean {
    const now = performance.now();
    const family = currentOpFamily() ?? "other";
    const figures = this.#families[family];
    figures.kernels++;
    figures.encodeMs += now - this.#lastDispatch;
    this.#lastDispatch = now;
    figures.byKernel[kernel.name] = (figures.byKernel[kernel.name] ?? 0) + 1;
    for (const b of bindings) figures.bytesBound += b.size;
    if (this.#open?.family === family && (passOpen || this.source !== "timestamp-query")) return false;
    this.#open = undefined;
    // without timestamps, each family's run is submitted alone: the previous one goes now
    if (this.source !== "timestamp-query" && this.#unsubmitted.length > 0) this.#gpu.flush();
    this.#open = { family };
    this.#segments.push(this.#open);
    if (this.source !== "timestamp-query") this.#unsubmitted.push(this.#open);
    return passOpen; // timestamps: the new run gets a pass of its own (beginPass gives it its queries)
  }

  /** @internal DispatchObserver. */
  beginPass(): GPUComputePassDescriptor | undefined {
    if (this.source !== "timestamp-query" || !this.#open || this.#open.query) return undefined;
    if (this.#nextQuery === this.#sets.length * QUERIES_PER_SET) {
      this.#sets.push(this.#gpu.device.createQuerySet({ type: "timestamp", count: QUERIES_PER_SET }));
    }
    const set = Math.floor(this.#nextQuery / QUERIES_PER_SET);
    const index = this.#nextQuery % QUERIES_PER_SET;
    this.#nextQuery += 2;
    this.#open.query = { set, index };
    return {
      timestampWrites: {
        querySet: this.#sets[set],
        beginningOfPassWriteIndex: index,
        endOfPassWriteIndex: index + 1,
      },
    };
  }

  /** @internal DispatchObserver. */
  submitted(): void {
    // the next dispatch starts a new segment, even of the same family: each pass or submit is timed alone
    this.#open = undefined;
    if (this.source === "timestamp-query") return;
    const now = performance.now();
    const queue = this.#gpu.device.queue;
    for (const segment of this.#unsubmitted.splice(0)) {
      segment.submittedAt = now;
      segment.doneAt = queue.onSubmittedWorkDone().then(() => performance.now());
    }
  }

  async #readTimestamps(): Promise<void> {
    const timed = this.#segments.filter((s) => s.query);
    if (timed.length === 0) return;
    const device = this.#gpu.device;
    const bytes = this.#sets.length * QUERIES_PER_SET * 8;
    const resolve = device.createBuffer({
      size: bytes,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    const readback = device.createBuffer({
      size: bytes,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const encoder = device.createCommandEncoder();
    const used = this.#nextQuery;
    this.#sets.forEach((set, i) => {
      const count = Math.min(QUERIES_PER_SET, used - i * QUERIES_PER_SET);
      if (count > 0) encoder.resolveQuerySet(set, 0, count, resolve, i * QUERIES_PER_SET * 8);
    });
    encoder.copyBufferToBuffer(resolve, 0, readback, 0, bytes);
    device.queue.submit([encoder.finish()]);
    await readback.mapAsync(GPUMapMode.READ);
    const stamps = new BigUint64Array(readback.getMappedRange().slice(0));
    readback.unmap();
    readback.destroy();
    resolve.destroy();
    for (const s of timed) {
      const at = s.query!.set * QUERIES_PER_SET + s.query!.index;
      const ns = Number(stamps[at + 1] - stamps[at]);
      // a driver may write 0 for a pass it merged away; never negative time
      if (stamps[at + 1] >= stamps[at]) this.#families[s.family].gpuMs += ns / 1e6;
    }
    this.#gpu.throwPendingErrors();
  }

  async #readSubmitTimes(): Promise<void> {
    let previousDone = 0;
    for (const s of this.#segments) {
      if (!s.doneAt || s.submittedAt === undefined) continue;
      const done = await s.doneAt;
      this.#families[s.family].gpuMs += Math.max(0, done - Math.max(previousDone, s.submittedAt));
      previousDone = Math.max(previousDone, done);
    }
  }
}
