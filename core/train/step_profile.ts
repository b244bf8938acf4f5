/**
 * Profiles training steps: for each step, the GPU profile (core/gpu/gpu_profiler.ts: GPU time, kernel
 * count, bytes bound and encode time per op family), the memory timeline of the buffer pool
 * (core/gpu/memory_timeline.ts), the host time spent recording the step and the time it waited for its
 * batch. {@link StepProfiler.report} averages the steps per step; core/train/profile_report.ts prints
 * and draws the result.
 *
 * @module
 */
import {
  type FamilyFigures,
  type Gpu,
  GpuProfiler,
  type GpuTimeSource,
  type MemoryTimeline,
  OP_FAMILIES,
  type OpFamily,
} from "../gpu/mod.ts";

/** One family's figures per step (means over the profiled steps). */
export interface FamilyRow extends Omit<FamilyFigures, "byKernel"> {
  /** The family. */
  family: OpFamily;
  /** Share of the step's GPU time (0 without timestamp queries: no GPU time per family then). */
  gpuShare: number;
  /** Bytes this family's allocations held at the step's memory peak. */
  bytesAtPeak: number;
  /** Kernel names and dispatches per step, most dispatched first. */
  byKernel: Record<string, number>;
}

/** What a profile found, per step (means over the profiled steps). */
export interface ProfileReport {
  /** What was profiled (architecture, method, batch, patch, precision; free text). */
  subject: string;
  /** The adapter's name. */
  adapter: string;
  /** Steps profiled. */
  steps: number;
  /** How GPU time was measured. */
  source: GpuTimeSource;
  /** Families with any work, most GPU time first (most kernels first without timestamp queries). */
  families: FamilyRow[];
  /** Per-step totals. */
  total: {
    kernels: number;
    bytesBound: number;
    /** GPU time of the step: the families' sum, or the wall clock without timestamp queries (`source`). */
    gpuMs: number;
    /** Host time recording the step (forward, backward, optimizer), without waiting for the GPU. */
    encodeMs: number;
    /** Host time the step waited for its batch. */
    dataWaitMs: number;
    /** Wall time from the start of recording to the end of the GPU work (profiling overhead included). */
    wallMs: number;
  };
  /** The memory of the step with the highest peak. */
  memory: MemoryTimeline;
}

interface StepRecord {
  families: Record<OpFamily, FamilyFigures>;
  gpuMs: number;
  source: GpuTimeSource;
  encodeMs: number;
  wallMs: number;
  dataWaitMs: number;
  memory: MemoryTimeline;
}

/** Profiles steps one at a time; see the module comment. */
export class StepProfiler {
  readonly #gpu: Gpu;
  readonly #profiler: GpuProfiler;
  readonly #steps: StepRecord[] = [];

  /** `forceFallback`: time by submits even where the device has timestamp queries (tests that path). */
  constructor(gpu: Gpu, options: { forceFallback?: boolean } = {}) {
    this.#gpu = gpu;
    this.#profiler = new GpuProfiler(gpu, options);
  }

  /** How GPU time is measured on this device. */
  get source(): GpuTimeSource {
    return this.#profiler.source;
  }

  /** Steps profiled so far. */
  get steps(): number {
    return this.#steps.length;
  }

  /**
   * Profiles one step: waits for earlier work, then runs `record` (which records the step's GPU work and
   * may await, e.g. a gradient hook) and waits for the GPU. `dataWaitMs` is the time the step waited for
   * its batch, measured by the caller.
   */
  async step(record: () => Promise<void>, dataWaitMs = 0): Promise<void> {
    await this.#gpu.sync();
    this.#gpu.pool.startTimeline();
    this.#profiler.begin();
    const start = performance.now();
    try {
      await record();
    } catch (error) {
      this.#gpu.observeDispatches(undefined);
      this.#gpu.pool.stopTimeline();
      throw error;
    }
    const encodeMs = performance.now() - start;
    const profile = await this.#profiler.collect();
    const wallMs = performance.now() - start;
    const memory = this.#gpu.pool.stopTimeline()!;
    this.#steps.push({
      families: profile.families,
      gpuMs: profile.totalMs,
      source: profile.source,
      encodeMs,
      wallMs,
      dataWaitMs,
      memory,
    });
  }

  /** The per-step means of the steps profiled so far. */
  report(subject: string): ProfileReport {
    if (this.#steps.length === 0) throw new Error("no step was profiled");
    const n = this.#steps.length;
    const memory = this.#steps.reduce((a, b) => (b.memory.peakBytes > a.memory.peakBytes ? b : a)).memory;
    const rows: FamilyRow[] = OP_FAMILIES.map((family) => {
      const row: FamilyRow = {
        family,
        kernels: 0,
        bytesBound: 0,
        gpuMs: 0,
        encodeMs: 0,
        gpuShare: 0,
        bytesAtPeak: memory.atPeak[family],
        byKernel: {},
      };
      for (const s of this.#steps) {
        const f = s.families[family];
        row.kernels += f.kernels / n;
        row.bytesBound += f.bytesBound / n;
        row.gpuMs += f.gpuMs / n;
        row.encodeMs += f.encodeMs / n;
        for (const [k, c] of Object.entries(f.byKernel)) row.byKernel[k] = (row.byKernel[k] ?? 0) + c / n;
      }
      row.byKernel = Object.fromEntries(Object.entries(row.byKernel).sort((a, b) => b[1] - a[1]));
      return row;
    });
    const mean = (f: (s: StepRecord) => number) => this.#steps.reduce((a, s) => a + f(s), 0) / n;
    const familiesMs = rows.reduce((a, r) => a + r.gpuMs, 0);
    for (const r of rows) r.gpuShare = familiesMs > 0 ? r.gpuMs / familiesMs : 0;
    const info = this.#gpu.adapterInfo;
    return {
      subject,
      adapter: info.description || `${info.vendor} ${info.device}`,
      steps: n,
      source: this.#steps[0].source,
      families: rows.filter((r) => r.kernels > 0 || r.bytesAtPeak > 0)
        .sort((a, b) => b.gpuMs - a.gpuMs || b.kernels - a.kernels),
      total: {
        kernels: rows.reduce((a, r) => a + r.kernels, 0),
        bytesBound: rows.reduce((a, r) => a + r.bytesBound, 0),
        gpuMs: mean((s) => s.gpuMs),
        encodeMs: mean((s) => s.encodeMs),
        dataWaitMs: mean((s) => s.dataWaitMs),
        wallMs: mean((s) => s.wallMs),
      },
      memory,
    };
  }

  /** Frees the profiler's query sets. */
  dispose(): void {
    this.#profiler.dispose();
  }
}
