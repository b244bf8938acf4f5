/**
 * The benchmark harness: warm-up, repeats, median, ceilings, and one row format for every suite.
 * GPU times come from timestamp queries around the recorded dispatches when the adapter has them
 * (wall clock around a sync otherwise); peers that cannot be timed that way are measured by wall clock,
 * and then voxssl is measured the same way in the same row.
 */
import type { Gpu } from "../core/gpu/mod.ts";

/** Shape presets: "lavapipe" keeps the whole run short on a CPU adapter; "gpu" uses real layer shapes. */
export type BenchPreset = "lavapipe" | "gpu";

/** Throughput ceilings measured on the adapter (bench/ceilings.ts). */
export interface Ceilings {
  fmaF32Gflops: number;
  fmaF16Gflops?: number;
  copyGBps: number;
}

/** One result line. */
export interface BenchRow {
  suite: string;
  name: string;
  shape: string;
  medianMs: number;
  gflops?: number;
  gbps?: number;
  /** gflops / FMA ceiling or gbps / copy ceiling. */
  fractionOfCeiling?: number;
  /** The same work on a peer (e.g. TF.js WebGPU), timed the same way. */
  peer?: { name: string; medianMs: number };
  note?: string;
  /** Structured figures beyond the row (e.g. the e2e suite's profile), kept in the JSON output only. */
  details?: Record<string, unknown>;
}

/** What a suite gets. */
export interface BenchContext {
  gpu: Gpu;
  preset: BenchPreset;
  ceilings: Ceilings;
  report(row: BenchRow): void;
  log(line: string): void;
}

/** A named group of benchmarks. */
export interface BenchSuite {
  name: string;
  /**
   * Seconds scripts/gpu_check.ts gives the suite at the GPU preset (it reads them from bench/suites.ts);
   * absent for a suite it runs its own way (e2e).
   */
  gpuSeconds?: number;
  run(ctx: BenchContext): Promise<void>;
}

/** Options of {@link measure}. */
export interface MeasureOptions {
  warmup?: number;
  repeats?: number;
}

/** Result of {@link measure}. */
export interface Measurement {
  medianMs: number;
  msList: number[];
  source: "timestamp-query" | "wall-clock";
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Times `record` (which only records dispatches: no reads, no writes) on the GPU: `warmup` untimed runs,
 * then the median of `repeats` timed runs.
 */
export async function measure(
  gpu: Gpu,
  record: () => void,
  options: MeasureOptions = {},
): Promise<Measurement> {
  const { warmup = 2, repeats = 5 } = options;
  for (let i = 0; i < warmup; i++) record();
  await gpu.sync();
  const msList: number[] = [];
  let source: Measurement["source"] = "wall-clock";
  for (let i = 0; i < repeats; i++) {
    const t = await gpu.time(record);
    msList.push(t.ms);
    source = t.source;
  }
  return { medianMs: median(msList), msList, source };
}

/**
 * Wall-clock time per iteration of `run` (async: it must finish its GPU work, e.g. by a readback),
 * median over `repeats` batches of `inner` iterations after `warmup` iterations.
 */
export async function measureWall(
  run: (iterations: number) => Promise<void>,
  { warmup = 1, repeats = 3, inner = 3 }: MeasureOptions & { inner?: number } = {},
): Promise<Measurement> {
  await run(warmup);
  const msList: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t0 = performance.now();
    await run(inner);
    msList.push((performance.now() - t0) / inner);
  }
  return { medianMs: median(msList), msList, source: "wall-clock" };
}

/** Formats a row for the console. */
export function formatRow(row: BenchRow): string {
  const parts = [
    `${row.suite}/${row.name}`.padEnd(34),
    row.shape.padEnd(30),
    `${row.medianMs.toFixed(3)} ms`,
  ];
  if (row.gflops !== undefined) parts.push(`${row.gflops.toFixed(1)} GFLOP/s`);
  if (row.gbps !== undefined) parts.push(`${row.gbps.toFixed(1)} GB/s`);
  if (row.fractionOfCeiling !== undefined) {
    parts.push(`${(100 * row.fractionOfCeiling).toFixed(1)}% of ceiling`);
  }
  if (row.peer) {
    parts.push(
      `${row.peer.name} ${row.peer.medianMs.toFixed(3)} ms (×${
        (row.peer.medianMs / row.medianMs).toFixed(2)
      })`,
    );
  }
  if (row.note) parts.push(`[${row.note}]`);
  return parts.join("  ");
}
