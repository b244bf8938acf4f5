/**
 * `voxssl index <folder> --out <index.json>`: builds nnssl's `pretrain_data.json` from a folder of NIfTI
 * files (or, with `--openmind-csv`, from OpenMind's metadata CSV). Every file is checked; bad files are
 * skipped and listed with their reason at the end. Exit status 0 unless `--strict` and something was
 * skipped (1), or the job itself failed (2).
 */
import { dirname, resolve } from "node:path";
import { type Command, Option } from "@commander-js/extra-typings";
import {
  buildFolderIndex,
  buildOpenMindIndex,
  filterIndex,
  type FramePolicy,
  type IndexCheck,
  writePretrainIndex,
} from "../../core/data/mod.ts";
import { createProgress, logOption } from "../progress.ts";
import { reportSkipped } from "../summary.ts";

/** Adds `index` to the program. */
export function registerIndex(program: Command): void {
  program
    .command("index")
    .description("build a dataset index (pretrain_data.json) from a folder of NIfTI files")
    .argument("<folder>", "folder to scan (for OpenMind: the folder holding OpenMind/)")
    .requiredOption("--out <file>", "where to write the index JSON")
    .option("--openmind-csv <file>", "OpenMind's openneuro_metadata.csv: take images and metadata from it")
    .addOption(
      new Option("--check <level>", "per-file check").choices(["header", "full", "none"] as const).default(
        "header" as const,
      ),
    )
    .addOption(
      new Option("--frames <policy>", "4D files").choices(["skip", "first", "split"] as const).default(
        "skip" as const,
      ),
    )
    .option("--modality <name>", "modality of files without a BIDS suffix", "unknown")
    .option("--max-quality <score>", "keep images with image_quality_score ≤ this", parseFloat)
    .option("--modalities <list>", "keep only these modalities (comma-separated)")
    .option("--absolute", "store absolute paths (default: relative to the index file)")
    .option("--strict", "exit with status 1 when any file was skipped")
    .addOption(logOption())
    .action(async (folder, options) => {
      Deno.exitCode = await runIndex(folder, options);
    });
}

async function runIndex(
  folder: string,
  options: {
    out: string;
    openmindCsv?: string;
    check: IndexCheck;
    frames: FramePolicy;
    modality: string;
    maxQuality?: number;
    modalities?: string;
    absolute?: boolean;
    strict?: boolean;
    log?: "auto" | "plain" | "json";
  },
): Promise<number> {
  const out = resolve(options.out);
  let progress: ReturnType<typeof createProgress> | undefined;
  const common = {
    check: options.check,
    frames: options.frames,
    relativeTo: options.absolute ? undefined : dirname(out),
    onProgress: (done: number, total: number, path: string) => {
      progress ??= createProgress("index", total, { mode: options.log, unit: "files" });
      progress.update(done, path);
    },
  };
  try {
    if (options.maxQuality !== undefined && !Number.isFinite(options.maxQuality)) {
      throw new Error("--max-quality: expected a number (image quality scores run from 1, best, to 5)");
    }
    const result = options.openmindCsv
      ? await buildOpenMindIndex(folder, options.openmindCsv, common)
      : await buildFolderIndex(folder, { ...common, defaultModality: options.modality });
    progress?.finish();
    if (result.images === 0) {
      // an index of nothing would only fail later, at the start of training
      console.log(`index: 0 done, ${result.skipped.length} skipped`);
      for (const sk of result.skipped) console.log(`  ${sk.path}: ${sk.reason}`);
      throw new Error(
        `${folder}: no usable image found (${result.skipped.length} skipped); nothing written to ${out}`,
      );
    }
    const { index, removed } = filterIndex(result.index, {
      maxQualityScore: options.maxQuality,
      modalities: options.modalities?.split(",").map((m) => m.trim()).filter(Boolean),
    });
    await Deno.mkdir(dirname(out), { recursive: true });
    await writePretrainIndex(out, index);
    const kept = result.images - removed;
    console.log(`wrote ${out}: ${kept} images${removed ? ` (${removed} removed by filters)` : ""}`);
    return reportSkipped("index", kept, result.skipped, options.strict ?? false);
  } catch (error) {
    progress?.finish();
    console.error(`voxssl index: ${error instanceof Error ? error.message : String(error)}`);
    return 2;
  }
}
