/**
 * `voxssl benchmark [spec.json]`: runs (or continues) a benchmark grid and writes its leaderboard, result
 * tables and plots (core/eval/benchmark). Without a spec it runs the embedded default
 * (configs/benchmark.json: MAE-pretrained ResEnc-tiny against scratch on ../shared/data/hippocampus).
 * The orchestration is the library's; this file reads flags, wires the stop signals and plugs in the
 * real cell runner (cli/benchmark_runner.ts).
 *
 * @module
 */
import type { Command } from "@commander-js/extra-typings";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { VERSION } from "../../mod.ts";
import {
  type BenchmarkSpec,
  BenchmarkSpecError,
  describeCell,
  expandGrid,
  readBenchmarkSpec,
  ResultsStore,
  runBenchmark,
  writeReports,
} from "../../core/eval/benchmark/mod.ts";
import { listenForStop } from "../../core/train/mod.ts";
import { ConfigError } from "../errors.ts";
import { createProgress, logOption, type Progress } from "../progress.ts";
import { writeLeaderboardPage } from "../report/leaderboard.ts";
import {
  checkDatasets,
  checkStageOptions,
  createBenchmarkRunner,
  gitCommit,
  overlayCases,
} from "../benchmark_runner.ts";

/** The embedded default spec. */
export const DEFAULT_BENCHMARK_SPEC: string =
  new URL("../../configs/benchmark.json", import.meta.url).pathname;

async function loadSpec(path: string): Promise<BenchmarkSpec> {
  try {
    return await readBenchmarkSpec(path);
  } catch (error) {
    if (error instanceof BenchmarkSpecError) throw new ConfigError(error.message);
    throw error;
  }
}

/** Adds `benchmark` to the program. */
export function registerBenchmark(program: Command): void {
  program
    .command("benchmark")
    .description("fine-tune pretrained encoders and scratch over a grid and write a leaderboard (resumable)")
    .argument("[spec]", "benchmark spec (JSON; see docs/benchmark.md); default: the embedded hippocampus run")
    .option("--out <dir>", "results folder (default: the spec's out, else runs/benchmark-<name>)")
    .option("--dry-run", "list the pretraining runs and cells (and which are finished); run nothing")
    .option("--report", "rewrite leaderboard, tables and plots from the finished cells; run nothing")
    .option("--fail-fast", "stop at the first failed cell (default: report it and go on)")
    .addOption(logOption())
    .action(async (specArg, flags) => {
      const specPath = resolve(specArg ?? DEFAULT_BENCHMARK_SPEC);
      const spec = await loadSpec(specPath);
      if (!flags.report) checkStageOptions(spec, specPath);
      const out = resolve(flags.out ?? spec.out ?? `runs/benchmark-${spec.name.replace(/[^\w.-]+/g, "-")}`);
      const commit = await gitCommit(new URL("../..", import.meta.url).pathname);
      const writer = { core: VERSION, commit };
      const store = new ResultsStore(out);
      if (flags.dryRun || flags.report) {
        const grid = await expandGrid(spec);
        if (flags.report) {
          for (const file of await writeReports(spec, grid, store, writer)) console.log(`wrote ${file}`);
          console.log(`leaderboard page: ${await writeLeaderboardPage(out, await overlayCases(store))}`);
          return;
        }
        const cells = await store.cells();
        const jobs = await store.pretrainings();
        console.log(`results folder: ${out}`);
        for (const job of grid.jobs) {
          console.log(
            `${
              jobs.has(job.key) ? "done" : "todo"
            }  pretrain ${job.name} (${job.method}) on ${job.arch}  [${job.key}]`,
          );
        }
        for (const cell of grid.cells) {
          console.log(`${cells.has(cell.key) ? "done" : "todo"}  ${describeCell(cell)}  [${cell.key}]`);
        }
        const done = grid.cells.filter((c) => cells.has(c.key)).length;
        console.log(`${grid.cells.length} cells, ${done} finished; ${grid.jobs.length} pretraining runs`);
        return;
      }
      if (specArg === undefined) console.log(`the embedded default benchmark (${specPath})`);
      await checkDatasets(spec, specPath);
      const runner = await createBenchmarkRunner({ commands: program.commands.map((c) => c.name()) });
      const controller = new AbortController();
      const stop = listenForStop((l) => console.log(l));
      // abort at once (the running stage gets SIGTERM and saves), before the stage's own exit is seen
      const abort = () => controller.abort();
      const signals: Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGUSR1"];
      for (const signal of signals) {
        try {
          Deno.addSignalListener(signal, abort);
        } catch { /* not available on this platform */ }
      }
      let progress: Progress | undefined;
      try {
        const summary = await runBenchmark({
          spec,
          out,
          runner,
          signal: controller.signal,
          log: (l) => progress ? progress.log(l) : console.log(l),
          onCell: (settled, total, what) => {
            progress ??= createProgress("benchmark", total, {
              mode: flags.log,
              unit: "cells",
              start: settled - 1,
            });
            progress.update(settled, what);
          },
          writer,
          continueOnError: !flags.failFast,
        });
        progress?.finish();
        for (const f of summary.failures) console.error(`failed: ${f.what}: ${f.error}`);
        console.log(
          `${summary.computed} cells computed, ${summary.reused} reused, ${summary.failures.length} failed` +
            (summary.stopped ? ` (stopped by ${stop.requested}; run the same command to continue)` : ""),
        );
        console.log(`leaderboard: ${resolve(out, "leaderboard.md")}`);
        if (existsSync(join(out, "results.json"))) {
          console.log(`leaderboard page: ${await writeLeaderboardPage(out, await overlayCases(store))}`);
        }
        if (summary.failures.length > 0) Deno.exitCode = 1;
      } finally {
        for (const signal of signals) {
          try {
            Deno.removeSignalListener(signal, abort);
          } catch { /* never added */ }
        }
        stop.dispose();
      }
    });
}
