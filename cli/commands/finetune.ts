/**
 * `voxssl finetune <dataset>`: segmentation fine-tuning of a pretrained encoder (or from scratch) on an
 * nnU-Net raw dataset (preprocessed into a downstream cache first, resumably) or an existing downstream
 * cache. The logic is core/eval's `finetuneSegmentation`; this file parses flags and wires data and
 * plugins. Built-in architectures only: a command that imported third-party plugins would have to run
 * in the sandbox (cli/sandbox.ts).
 *
 * @module
 */
import { logMode, logOption } from "../progress.ts";
import { runProgress } from "../run_progress.ts";
import type { Command } from "@commander-js/extra-typings";
import { join } from "node:path";
import { VERSION } from "../../mod.ts";
import {
  type CaseSplit,
  finetuneSegmentation,
  loadDownstreamDataset,
  preprocessNnunetDataset,
  readNnunetDataset,
  readSplitFile,
} from "../../core/eval/mod.ts";
import { defaultRunFolder, loadCheckpoint } from "../../core/train/mod.ts";
import { builtinRegistry } from "../builtins.ts";
import { ConfigError } from "../errors.ts";
import { isFile, number, vec3 } from "../flag_values.ts";
import { createProgress, type Progress } from "../progress.ts";

/** Adds `finetune` to the program. */
export function registerFinetune(program: Command): void {
  program
    .command("finetune")
    .description("fine-tune a pretrained encoder (or train from scratch) for segmentation")
    .argument(
      "<dataset>",
      "nnU-Net raw dataset folder (dataset.json, imagesTr, labelsTr) or a downstream cache",
    )
    .option(
      "--pretrained <checkpoint>",
      "pretraining checkpoint or network.safetensors (default: from scratch)",
    )
    .option("--arch <name>", "architecture and size, e.g. resenc-l, primus-m (default: the checkpoint's)")
    .option("--out <dir>", "run folder (default runs/<date>-<arch>-finetune)")
    .option("--resume <dir>", "continue the run in <dir> from its latest checkpoint")
    .option("--cache <dir>", "where a raw dataset is preprocessed (default <out>/data)")
    .option("--spacing <mm>", 'raw datasets: target spacing sd,sh,sw, "median" (default) or "none"')
    .option("--epochs <n>", "epochs (default 10)")
    .option("--steps <n>", "steps per epoch (default 25; nnU-Net: 250)")
    .option("--batch <n>", "batch size (default 2)")
    .option("--patch <size>", "patch: 160 or 160,160,160 (default: the checkpoint's recommended)")
    .option("--lr <rate>", "learning rate (default 1e-3 SGD / 1e-4 AdamW; scratch 1e-2 / 3e-4)")
    .option(
      "--optimizer <kind>",
      "sgd (nnssl's ResEnc recipe) or adamw (nnssl's Primus recipe); default: the architecture's",
    )
    .option("--schedule <name>", "warmup-poly (default) or sawtooth (decoder first)")
    .option("--nnssl-sawtooth", "sawtooth as nnssl's ResEnc variant runs it (encoder not frozen)")
    .option("--label-fraction <f>", "fraction of the training cases to use (e.g. 0.05, 0.25; default 1)")
    .option("--split <file>", "splits_final.json (nnU-Net) or {train, test} JSON (default: seeded 50/50)")
    .option("--fold <n>", "fold of a splits_final.json (default 0)")
    .option("--split-seed <n>", "seed of the 50/50 split and the label fraction (default 0)")
    .option("--seed <n>", "seed of initialisation and batches (default 0)")
    .option("--batch-dice", "one Dice per class over the batch (nnU-Net's batch_dice)")
    .option(
      "--deep-supervision",
      "Dice + CE at every decoder resolution, nnU-Net's weights (CNNs with a U-Net decoder; default off)",
    )
    .option("--no-augmentation", "no data augmentation (default: nnU-Net's)")
    .option(
      "--no-score",
      "skip the run's own test-set scoring (the benchmark scores with predict + evaluate)",
    )
    .addOption(logOption())
    .action(async (data, flags) => {
      const registry = builtinRegistry();
      const int = (v: string | undefined, f: string) =>
        number(v, f, (x) => Number.isInteger(x) && x > 0, "a positive integer");
      const out = flags.resume ?? flags.out;
      let arch;
      let pretrained = flags.pretrained;
      if (flags.resume) {
        const latest = join(flags.resume, "checkpoints", "latest.safetensors");
        if (!await isFile(latest)) throw new ConfigError(`--resume ${flags.resume}: no ${latest}`);
        const meta = (await loadCheckpoint(latest)).meta;
        arch = { plugin: registry.architecture(meta.config.resolvedArch.plugin).plugin, size: undefined };
        pretrained = undefined;
      } else if (flags.arch) {
        arch = registry.architecture(flags.arch);
      } else if (pretrained) {
        const { readPretrainedWeights } = await import("../../core/eval/mod.ts");
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
      if (flags.optimizer && flags.optimizer !== "sgd" && flags.optimizer !== "adamw") {
        throw new ConfigError(`--optimizer: expected sgd or adamw, got "${flags.optimizer}"`);
      }
      const runFolder = out ?? defaultRunFolder(flags.arch ?? arch.plugin.name, "finetune");
      let dataset;
      try {
        let cache = data;
        if (await isFile(join(data, "dataset.json"))) {
          const raw = await readNnunetDataset(data);
          cache = flags.cache ?? join(runFolder, "data");
          const spacing = !flags.spacing || flags.spacing === "median" || flags.spacing === "none"
            ? (flags.spacing ?? "median") as "median" | "none"
            : vec3(flags.spacing, "--spacing");
          let progress: Progress | undefined;
          const { processed, cached } = await preprocessNnunetDataset(raw, cache, {
            spacing,
            onProgress: (done, total, id) => {
              progress ??= createProgress("preprocess", total);
              progress.update(done, id);
            },
          });
          progress?.finish();
          console.log(`downstream cache ${cache}: ${processed} preprocessed, ${cached} already done`);
        } else if (!await isFile(join(data, "downstream.json"))) {
          throw new ConfigError(
            `${data}: neither an nnU-Net raw dataset (dataset.json) nor a downstream cache`,
          );
        }
        dataset = await loadDownstreamDataset(cache);
      } catch (error) {
        if (error instanceof ConfigError) throw error;
        throw new ConfigError((error as Error).message);
      }
      let split: CaseSplit | undefined;
      if (flags.split) {
        split = await readSplitFile(
          flags.split,
          dataset.cases.map((c) => c.id),
          int(flags.fold, "--fold") ?? 0,
        )
          .catch((e) => {
            throw new ConfigError((e as Error).message);
          });
      }
      const options = {
        dataset,
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
        optimizerKind: flags.optimizer as "sgd" | "adamw" | undefined,
        schedule: flags.schedule || flags.nnsslSawtooth
          ? {
            name: (flags.schedule ?? "sawtooth") as "warmup-poly" | "sawtooth",
            nnsslQuirk: flags.nnsslSawtooth ?? false,
          }
          : undefined,
        split,
        splitSeed: number(
          flags.splitSeed,
          "--split-seed",
          (x) => Number.isInteger(x) && x >= 0,
          "an integer ≥ 0",
        ),
        labelFraction: number(
          flags.labelFraction,
          "--label-fraction",
          (x) => x > 0 && x <= 1,
          "a number in (0, 1]",
        ),
        seed: number(flags.seed, "--seed", (x) => Number.isInteger(x) && x >= 0, "an integer ≥ 0"),
        batchDice: flags.batchDice ?? false,
        deepSupervision: flags.deepSupervision ?? false,
        augmentation: flags.augmentation === false ? "none" as const : "nnunet" as const,
        resume: flags.resume !== undefined,
        evaluate: flags.score !== false,
      };
      const progress = runProgress(logMode(flags.log), undefined, "finetune");
      const result = await finetuneSegmentation({
        ...options,
        log: progress.log,
        observer: progress.observer,
      })
        .finally(() => progress.finish());
      if (result.stoppedBy) console.log(`run saved in ${result.out} (stopped by ${result.stoppedBy})`);
      else {
        console.log(
          `fine-tuned: ${result.checkpoint}` +
            (result.scores ? ` (test mean Dice ${result.scores.meanDice.toFixed(4)})` : ""),
        );
      }
    });
}
