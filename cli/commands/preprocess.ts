/**
 * `voxssl preprocess <index.json> --out <cache folder>`: reorients, crops, z-scores and resamples every
 * image of an index into the chunked cache, in parallel workers, skipping entries that are already done
 * (resumable). Bad files are skipped and listed with their reason at the end. Exit status 0 unless
 * `--strict` and something was skipped (1), or the job itself failed (2).
 *
 * Under `mpiexec -n N` (or `srun`) the index is sharded over the ranks (record i goes to rank i mod N),
 * each rank writes its own cases into the shared cache (each case commits atomically), and rank 0
 * merges the shards' summaries into `cache.json` and prints the summary.
 */
import { Option } from "@commander-js/extra-typings";
import type { Command } from "@commander-js/extra-typings";
import {
  DataFileError,
  loadImageList,
  mergePreprocessSummaries,
  preprocessDataset,
  type SpacingMode,
  writeCacheManifest,
} from "../../core/data/mod.ts";
import { allGatherJson } from "../../core/dist/mod.ts";
import { joinJob } from "../distributed.ts";
import { createProgress, logOption, type Progress } from "../progress.ts";
import { reportSkipped } from "../summary.ts";

/** Parses `--spacing`: a number (isotropic mm), `median`, `none`, or three numbers `sd,sh,sw`. */
export function parseSpacing(text: string): SpacingMode {
  if (text === "median" || text === "none") return text;
  const parts = text.split(",").map(Number);
  if (parts.length === 1 && parts[0] > 0) return parts[0];
  if (parts.length === 3 && parts.every((p) => p > 0)) return parts as [number, number, number];
  throw new Error(`--spacing: expected a positive number, "median", "none" or sd,sh,sw; got "${text}"`);
}

/** Adds `preprocess` to the program. */
export function registerPreprocess(program: Command): void {
  program
    .command("preprocess")
    .description("preprocess the images of an index into a chunked, compressed cache")
    .argument("<index>", "dataset index (pretrain_data.json)")
    .requiredOption("--out <folder>", "cache folder (created; entries already done are kept)")
    .addOption(
      new Option("--spacing <mm>", "target spacing: mm (isotropic), median, none, or sd,sh,sw").default("1"),
    )
    .option("--workers <n>", "parallel workers (default: all cores)", (v) => parseInt(v, 10))
    .option("--strict", "exit with status 1 when any file was skipped")
    .addOption(logOption())
    .action(async (index, options) => {
      Deno.exitCode = await runPreprocess(index, options);
    });
}

async function runPreprocess(
  indexPath: string,
  options: {
    out: string;
    spacing: string;
    workers?: number;
    strict?: boolean;
    log?: "auto" | "plain" | "json";
  },
): Promise<number> {
  let progress: Progress | undefined;
  const dist = joinJob();
  try {
    const spacing = parseSpacing(options.spacing);
    if (options.workers !== undefined && !(options.workers >= 0)) {
      throw new Error(`--workers: expected a number ≥ 0`);
    }
    const records = await loadImageList(indexPath);
    const t0 = performance.now();
    const share = await preprocessDataset(records, options.out, {
      spacing,
      workers: options.workers,
      shard: { rank: dist.rank, size: dist.size },
      onProgress: (done, total, id) => {
        if (!dist.primary) return;
        progress ??= createProgress(
          dist.size > 1 ? `preprocess (rank 0 of ${dist.size})` : "preprocess",
          total,
          { mode: options.log, unit: "volumes" },
        );
        progress.update(done, id);
      },
    });
    progress?.finish();
    const shares = allGatherJson(dist.mpi, share);
    if (!dist.primary) return 0;
    const summary = dist.size > 1 ? mergePreprocessSummaries(records, shares) : share;
    if (dist.size > 1) await writeCacheManifest(options.out, summary.manifest);
    const seconds = ((performance.now() - t0) / 1000).toFixed(1);
    const target = summary.targetSpacing
      ? summary.targetSpacing.map((s) => +s.toFixed(4)).join("×") + " mm"
      : "none";
    console.log(
      `cache ${options.out}: ${summary.processed} preprocessed, ${summary.cached} already done, target spacing ${target}, ${seconds}s`,
    );
    return reportSkipped(
      "preprocess",
      summary.processed + summary.cached,
      summary.skipped,
      options.strict ?? false,
    );
  } catch (error) {
    progress?.finish();
    console.error(
      `voxssl preprocess: ${error instanceof DataFileError ? error.message : (error as Error).message}`,
    );
    if (dist.size > 1) dist.mpi?.abort(2); // the other ranks would wait in the merge forever
    return 2;
  } finally {
    dist.finalize();
  }
}
