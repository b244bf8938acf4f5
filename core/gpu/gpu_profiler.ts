/**
 * The GPU side of the profiler: kernel count, bytes bound, CPU encode time and GPU time per op family
 * (core/gpu/op_family.ts) for the work recorded between `begin()` and `collect()`.
 *
 * GPU time comes from timestamp queries when the device has "timestamp-query": the recording is cut into
 * one compute pass per run of dispatches of one family, and each pass writes a timestamp at its start and
 * end. Without the feature there is no GPU time per family: a step is recorded synchronously, so
 * `queue.onSubmittedWorkDone` promises can only resolve after the whole step is recorded, all at once, and
 * say nothing about when each family's work finished (measured on lavapipe: every millisecond landed on the
 * last family). The profile then gives the step's total only: the wall clock from its first submit to
 * `onSubmittedWorkDone`, host time included where the GPU waited for commands. `source` says which one a
 * report used.
 *
 * Cutting the work into more passes and submits costs a little; the profiler is for profiling runs, not
 * for every step.
 */
import type { Binding, DispatchObserver, Gpu, Kernel } from "./device.ts";
import { currentOpFamily, OP_FAMILIES, type OpFamily } from "./op_family.ts";

/** How GPU time was measured: per family from timestamp queries, or the step's total by wall clock. */
export type GpuTimeSource = "timestamp-query" | "submit-wall-clock";

/** The figures of one op family. */
export interface FamilyFigures {
  /** Kernel dispatches recorded. */
  kernels: number;
  /** Bytes of every binding of every dispatch (each bound range once per dispatch: the ideal traffic). */
  bytesBound: number;
  /** GPU milliseconds from timestamp queries (0 where the device has none: see the report's `source`). */
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
  /** Compute passes the recording was cut into (timestamp queries; 0 otherwise). */
  segments: number;
  /**
   * GPU milliseconds of the whole recording: the families' sum with timestamp queries, otherwise the wall
   * clock from the first submit to the end of the GPU work.
   */
  totalMs: number;
}

interface Segment {
  family: OpFamily;
  /** Index of the begin query in its set. */
  query?: { set: number; index: number };
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
  #firstSubmit: number | undefined;

  /** `forceFallback` times by submits even where timestamp queries exist (to test that path). */
  constructor(gpu: Gpu, options: { forceFallback?: boolean } = {}) {
    this.#gpu = gpu;
    this.source = gpu.hasTimestamps && !options.forceFallback ? "timestamp-query" : "submit-wall-clock";
  }

  /** Starts observing the device's dispatches (from a clean slate). */
  begin(): void {
    this.#families = emptyFamilies();
    this.#segments = [];
    this.#firstSubmit = undefined;
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
    const end = performance.now();
    if (this.source === "timestamp-query") await this.#readTimestamps();
    const families = this.#families;
    const totalMs = this.source === "timestamp-query"
      ? OP_FAMILIES.reduce((a, f) => a + families[f].gpuMs, 0)
      : this.#firstSubmit === undefined
      ? 0
      : end - this.#firstSubmit;
    return { source: this.source, families, segments: this.#segments.length, totalMs };
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
    if (this.source !== "timestamp-query") return false; // counts only: the recording stays as it is
    if (this.#open?.family === family && passOpen) return false;
    this.#open = { family };
    this.#segments.push(this.#open);
    return passOpen; // the new run gets a pass of its own (beginPass gives it its queries)
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
    // the next dispatch starts a new pass, even of the same family: each pass is timed alone
    this.#open = undefined;
    this.#firstSubmit ??= performance.now();
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
}
