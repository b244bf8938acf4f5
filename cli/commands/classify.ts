/**
 * `voxssl classify <csv>`: classification fine-tuning of a pretrained encoder (or from scratch) on a CSV
 * of image paths and labels (core/eval/classification/dataset_csv.ts). The images are preprocessed into
 * a downstream cache first (resumably), then core/eval's `finetuneClassification` trains and scores.
 * A sibling of `finetune` rather than a `--task` of it: `finetune` takes an nnU-Net folder and
 * segmentation-only flags (batch Dice, --no-score for the benchmark), this takes a CSV and label
 * smoothing. Built-in architectures only: a command that imported third-party plugins would have to run
 * in the sandbox (cli/sandbox.ts).
 *
 * @module
 */
import type { Command } from "@commander-js/extra-typings";
import { join } from "node:path";
import { VERSION } from "../../mod.ts";
import {
  type CaseSplit,
  finetuneClassification,
  loadClassificationData,
  readClassificationCsv,
  readPretrainedWeights,
  readSplitFile,
} from "../../core/eval/mod.ts";
import { defaultRunFolder, loadCheckpoint } from "../../core/train/mod.ts";
import { builtinRegistry } from "../builtins.ts";
import { ConfigError } from "../errors.ts";
import { isFile, number, vec3 } from "../flag_values.ts";
import { createProgress, logMode, logOption, type Progress } from "../progress.ts";
import { runProgress } from "../run_progress.ts";

/** Adds `classify` to the program. */
export function registerClassify(program: Command): void {
  program
    .command("classify")
    .description("fine-tune a pretrained encoder (or train from scratch) for classification")
    .argument("<csv>", "CSV of image paths and labels (columns image or image_0000…, label; optional case)")
    .option("--pretrained <checkpoint>", "pretraining checkpoint or network.safetensors (default: scratch)")
    .option("--arch <name>", "architecture and size, e.g. resenc-l, primus-m (default: the checkpoint's)")
    .option("--out <dir>", "run folder (default runs/<date>-<arch>-classify)")
    .option("--resume <dir>", "continue the run in <dir> from its latest checkpoint")
    .option("--cache <dir>", "where the images are preprocessed (default <out>/data)")
    .option("--spacing <mm>", 'target spacing sd,sh,sw, "median" (default) or "none"')
    .option("--epochs <n>", "epochs (default 10)")
    .option("--steps <n>", "steps per epoch (default 25)")
    .option("--batch <n>", "batch size (default 2)")
    .option("--patch <size>", "crop: 160 or 160,160,160 (default: the checkpoint's recommended)")
    .option("--lr <rate>", "learning rate (default 1e-4, AdamW)")
    .option("--schedule <name>", "warmup-poly (default) or sawtooth (head first, encoder frozen)")
    .option("--label-smoothing <e>", "label smoothing of the cross-entropy (default 0.2)")
    .option("--label-fraction <f>", "fraction of each class's training cases (e.g. 0.05, 0.25; default 1)")
    .option("--split <file>", "splits_final.json (nnU-Net) or {train, test} JSON (default: stratified 50/50)")
    .option("--fold <n>", "fold of a splits_final.json (default 0)")
    .option("--split-seed <n>", "seed of the split and the label fraction (default 0)")
    .option("--seed <n>", "seed of initialisation, batches and dropout (default 0)")
    .option("--no-augmentation", "no data augmentation (default: nnU-Net's)")
    .addOption(logOption())
    .action(async (csv, flags) => {
      const registry = builtinRegistry();
      const int = (v: string | undefined, f: string) =>
        number(v, f, (x) => Number.isInteger(x) && x > 0, "a positive integer");
      const seedOf = (v: string | undefined, f: string) =>
        number(v, f, (x) => Number.isInteger(x) && x >= 0, "an integer ≥ 0");
      let arch;
      let pretrained = flags.pretrained;
      // a resumed run not resampled (spacing null) reads its data the same way without --spacing
      let resumedSpacing: "none" | undefined;
      if (flags.resume) {
        const latest = join(flags.resume, "checkpoints", "latest.safetensors");
        if (!await isFile(latest)) throw new ConfigError(`--resume ${flags.resume}: no ${latest}`);
        const meta = (await loadCheckpoint(latest)).meta;
        arch = { plugin: registry.architecture(meta.config.resolvedArch.plugin).plugin, size: undefined };
        pretrained = undefined;
        const recorded = (meta.config.resolvedMethod.config as { spacing?: unknown } | undefined)?.spacing;
        if (recorded === null) resumedSpacing = "none";
      } else if (flags.arch) {
        arch = registry.architecture(flags.arch);
      } else if (pretrained) {
        const plan = (await readPretrainedWeights(pretrained).catch((e) => {
          throw new ConfigError(`--pretrained ${pretrained}: ${(e as Error).message}`);
        })).plan;
        arch = { plugin: registry.architecture(plan.architecture.plugin).plugin, size: undefined };
      } else {
        throw new ConfigError("give --arch (e.g. resenc-l), --pretrained <checkpoint> or --resume <dir>");
      }
      if (flags.schedule && flags.schedule !== "warmup-poly" && flags.schedule !== "sawtooth") {
        throw new ConfigError(`--schedule: expected warmup-poly or sawtooth, got "${flags.schedule}"`);
      }
      const runFolder = flags.resume ?? flags.out ??
        defaultRunFolder(flags.arch ?? arch.plugin.name, "classify");
      const spacing = !flags.spacing || flags.spacing === "median" || flags.spacing === "none"
        ? (flags.spacing ?? resumedSpacing ?? "median") as "median" | "none"
        : vec3(flags.spacing, "--spacing");
      const dataset = await readClassificationCsv(csv);
      let progress: Progress | undefined;
      const data = await loadClassificationData(dataset, flags.cache ?? join(runFolder, "data"), {
        spacing,
        onProgress: (done, total, id) => {
          progress ??= createProgress("preprocess", total);
          progress.update(done, id);
        },
      }).finally(() => progress?.finish());
      let split: CaseSplit | undefined;
      if (flags.split) {
        split = await readSplitFile(flags.split, data.cases.map((c) => c.id), int(flags.fold, "--fold") ?? 0)
          .catch((e) => {
            throw new ConfigError((e as Error).message);
          });
      }
      const display = runProgress(logMode(flags.log), undefined, "classify");
      const result = await finetuneClassification({
        data,
        arch: arch.plugin,
        size: arch.size,
        pretrained,
        out: runFolder,
        coreVersion: VERSION,
        epochs: int(flags.epochs, "--epochs"),
        stepsPerEpoch: int(flags.steps, "--steps"),
        batch: int(flags.batch, "--batch"),
        patch: flags.patch ? vec3(flags.patch, "--patch") : undefined,
        lr: number(flags.lr, "--lr", (x) => x > 0, "a positive number"),
        schedule: flags.schedule ? { name: flags.schedule as "warmup-poly" | "sawtooth" } : undefined,
        split,
        splitSeed: seedOf(flags.splitSeed, "--split-seed"),
        labelFraction: number(
          flags.labelFraction,
          "--label-fraction",
          (x) => x > 0 && x <= 1,
          "a number in (0, 1]",
        ),
        labelSmoothing: number(
          flags.labelSmoothing,
          "--label-smoothing",
          (x) => x >= 0 && x < 1,
          "a number in [0, 1)",
        ),
        seed: seedOf(flags.seed, "--seed"),
        augmentation: flags.augmentation === false ? "none" : "nnunet",
        resume: flags.resume !== undefined,
        log: display.log,
        observer: display.observer,
      }).finally(() => display.finish());
      if (result.stoppedBy) console.log(`run saved in ${result.out} (stopped by ${result.stoppedBy})`);
      else {
        const s = result.scores;
        console.log(
          `classifier: ${result.checkpoint}` +
            (s
              ? ` (test accuracy ${s.accuracy.toFixed(4)}, balanced ${s.balancedAccuracy.toFixed(4)}, AUROC ${
                s.auroc === null ? "n/a" : s.auroc.toFixed(4)
              }; ${result.out}/test_predictions.csv)`
              : ""),
        );
      }
    });
}
