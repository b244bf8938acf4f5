/**
 * The benchmark loop. It owns the grid, the results folder and the reports, and nothing of how a cell is
 * computed: a {@link BenchmarkRunner} (fine-tune → predict → evaluate, and pretraining for method plugins)
 * is injected, so the loop is tested with a fake runner and the CLI plugs in the real one.
 *
 * Resumable: finished pretrainings and cells are records in the results folder (written atomically) and
 * are never recomputed; a cell that failed or was interrupted is run again next time, in the same work
 * folder, so a runner whose stages resume (fine-tuning checkpoints) loses little. The reports
 * (`leaderboard.md`, `results.csv`, `results.json`, the SVG plots) are rewritten after every finished cell,
 * so they are current even when the run is killed.
 *
 * @module
 */
import { join } from "node:path";
import type { BootstrapOptions } from "./bootstrap.ts";
import { type Cell, expandGrid, type Grid, type PretrainJob } from "./grid.ts";
import { buildLeaderboard, leaderboardMarkdown } from "./leaderboard.ts";
import { diceBarsSvg, diceVsFractionSvg } from "./plots.ts";
import {
  type CellResult,
  type PretrainRecord,
  type PretrainResult,
  ResultsStore,
  writeJsonAtomic,
  writeTextAtomic,
} from "./results_store.ts";
import { classificationResultsCsv, resultsCsv, resultsDocument } from "./results_tables.ts";
import type { BenchmarkSpec } from "./spec.ts";

/** What a runner's stage gets besides its job or cell. */
export interface StageContext {
  /** A folder of its own, the same on every run of the benchmark (so the stage can resume). */
  workDir: string;
  /** Aborted when the benchmark is asked to stop; the stage should stop soon and throw. */
  signal: AbortSignal;
  log: (line: string) => void;
}

/** Computes the grid's work. The orchestrator calls it only for work not yet recorded as finished. */
export interface BenchmarkRunner {
  /** Pretrains a method plugin on an architecture; returns the checkpoint its cells fine-tune. */
  pretrain(job: PretrainJob, context: StageContext): Promise<PretrainResult>;
  /**
   * Fine-tunes, predicts and evaluates one cell. `checkpoint` is the encoder to start from (undefined
   * for scratch).
   */
  runCell(cell: Cell, checkpoint: string | undefined, context: StageContext): Promise<CellResult>;
}

/** Options of {@link runBenchmark}. */
export interface RunBenchmarkOptions {
  spec: BenchmarkSpec;
  /** The results folder. */
  out: string;
  runner: BenchmarkRunner;
  /** Stops the benchmark after the current stage (which also sees the signal). */
  signal?: AbortSignal;
  log?: (line: string) => void;
  /** The process writing the reports (core version, git commit). */
  writer: { core: string; commit?: string };
  /** Keep going after a failed cell (default true); the failure is reported and the cell retried next run. */
  continueOnError?: boolean;
  /** Told after each cell this run finishes or gives up on: cells settled so far (reused ones included). */
  onCell?: (settled: number, total: number, what: string) => void;
}

/** A failed stage. */
export interface BenchmarkFailure {
  /** The cell's or pretraining job's key. */
  key: string;
  /** What it was, in words. */
  what: string;
  error: string;
}

/** What a benchmark run did. */
export interface BenchmarkSummary {
  out: string;
  /** Cells in the grid. */
  cells: number;
  /** Cells computed by this run. */
  computed: number;
  /** Cells found finished in the results folder. */
  reused: number;
  /** Pretraining runs computed by this run. */
  pretrained: number;
  failures: BenchmarkFailure[];
  /** True if the run stopped on its signal before the grid was done. */
  stopped: boolean;
  /** The report files. */
  reports: string[];
}

/** Describes a cell in words, for logs and errors. */
export function describeCell(cell: Cell): string {
  return `${cell.method} · ${cell.arch} on ${cell.dataset.name}, ${+(cell.labelFraction * 100).toFixed(
    2,
  )}% labels, seed ${cell.seed}`;
}

/** Rewrites every report from the finished records. Returns the files written. */
export async function writeReports(
  spec: BenchmarkSpec,
  grid: Grid,
  store: ResultsStore,
  writer: { core: string; commit?: string },
): Promise<string[]> {
  const records = await store.cells();
  const pretraining = [...(await store.pretrainings()).values()];
  const statistics: BootstrapOptions = spec.statistics;
  const board = buildLeaderboard(grid.cells, records, statistics);
  const files: [string, string][] = [
    ["leaderboard.md", leaderboardMarkdown(board, spec.name, grid.cells.length)],
    ["results.csv", resultsCsv(grid.cells, records)],
  ];
  if (board.classification) {
    files.push(["results_classification.csv", classificationResultsCsv(grid.cells, records)]);
  }
  if (board.entries.length > 0) {
    const largest = Math.max(...board.entries.map((e) => e.labelFraction));
    files.push(
      [
        "dice_per_dataset.svg",
        diceBarsSvg(
          board.entries,
          largest,
          `${spec.name}: mean Dice, ${+(largest * 100).toFixed(2)}% labels`,
        ),
      ],
      [
        "dice_vs_label_fraction.svg",
        diceVsFractionSvg(board.entries, `${spec.name}: mean Dice by label fraction`),
      ],
    );
  }
  await Deno.mkdir(store.dir, { recursive: true });
  const written: string[] = [];
  for (const [name, text] of files) {
    await writeTextAtomic(join(store.dir, name), text);
    written.push(join(store.dir, name));
  }
  const json = join(store.dir, "results.json");
  await writeJsonAtomic(
    json,
    resultsDocument({ spec, cells: grid.cells, records, pretraining, leaderboard: board, writer }),
  );
  written.push(json);
  return written;
}

/** Runs (or continues) a benchmark: every unfinished cell of the grid, then the reports. */
export async function runBenchmark(options: RunBenchmarkOptions): Promise<BenchmarkSummary> {
  const { spec, runner, writer } = options;
  const log = options.log ?? (() => {});
  const signal = options.signal ?? new AbortController().signal;
  const continueOnError = options.continueOnError ?? true;
  const store = new ResultsStore(options.out);
  const grid = await expandGrid(spec);
  await Deno.mkdir(options.out, { recursive: true });
  await writeJsonAtomic(join(options.out, "spec.json"), spec);

  const finished = await store.cells();
  const pretrained = await store.pretrainings();
  const jobs = new Map(grid.jobs.map((j) => [j.key, j]));
  const failedJobs = new Map<string, string>();
  const summary: BenchmarkSummary = {
    out: options.out,
    cells: grid.cells.length,
    computed: 0,
    reused: grid.cells.filter((c) => finished.has(c.key)).length,
    pretrained: 0,
    failures: [],
    stopped: false,
    reports: [],
  };
  log(
    `benchmark ${spec.name}: ${grid.cells.length} cells (${summary.reused} already finished), ` +
      `${grid.jobs.length} pretraining runs (${
        grid.jobs.filter((j) => pretrained.has(j.key)).length
      } finished)`,
  );
  const context = (key: string): StageContext => ({ workDir: store.workDir(key), signal, log });

  const checkpointOf = async (cell: Cell): Promise<string | undefined> => {
    const encoder = cell.encoder;
    if (encoder.kind === "scratch") return undefined;
    if (encoder.kind === "checkpoint") return encoder.checkpoint;
    const done = pretrained.get(encoder.job);
    if (done) return done.result.checkpoint;
    const failed = failedJobs.get(encoder.job);
    if (failed) throw new Error(`its pretraining failed: ${failed}`);
    const job = jobs.get(encoder.job)!;
    log(`pretraining ${job.name} (${job.method}) on ${job.arch}`);
    try {
      const result = await runner.pretrain(job, context(job.key));
      const record: PretrainRecord = { key: job.key, job, result, finishedAt: new Date().toISOString() };
      await store.savePretraining(record);
      pretrained.set(job.key, record);
      summary.pretrained++;
      return result.checkpoint;
    } catch (error) {
      const message = (error as Error).message;
      if (!signal.aborted) {
        failedJobs.set(job.key, message);
        summary.failures.push({
          key: job.key,
          what: `pretraining ${job.name} on ${job.arch}`,
          error: message,
        });
      }
      throw error;
    }
  };

  let settled = summary.reused;
  for (const cell of grid.cells) {
    if (signal.aborted) break;
    if (finished.has(cell.key)) continue;
    const what = describeCell(cell);
    const settle = () => options.onCell?.(++settled, grid.cells.length, what);
    try {
      const checkpoint = await checkpointOf(cell);
      log(`cell ${what}`);
      const result = await runner.runCell(cell, checkpoint, context(cell.key));
      if (result.cases.length === 0) throw new Error("the runner returned no evaluated test cases");
      await store.saveCell({ key: cell.key, cell, result, finishedAt: new Date().toISOString() });
      finished.set(cell.key, { key: cell.key, cell, result, finishedAt: "" });
      summary.computed++;
      summary.reports = await writeReports(spec, grid, store, writer);
      settle();
    } catch (error) {
      if (signal.aborted) break;
      const message = (error as Error).message;
      if (!summary.failures.some((f) => f.key === cell.key)) {
        summary.failures.push({ key: cell.key, what, error: message });
      }
      log(`failed: ${what}: ${message}`);
      settle();
      if (!continueOnError) throw error;
    }
  }
  summary.stopped = signal.aborted;
  summary.reports = await writeReports(spec, grid, store, writer);
  return summary;
}
