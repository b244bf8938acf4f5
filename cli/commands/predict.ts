/**
 * `voxssl predict <images> --checkpoint <file> --out <folder>`: segments every case of a folder of
 * `<case>_0000.nii.gz …` images with a fine-tuned voxssl checkpoint (core/eval): sliding window with
 * Gaussian weighting on the GPU, optional mirroring, probabilities back to each input's grid, argmax
 * written as `<out>/<case>.nii.gz` with the input's affine. A fine-tuned checkpoint gives the channels,
 * classes, spacing and window (its training patch); `--dataset`, `--spacing` and `--patch` override them
 * (and are required for a checkpoint that records no fine-tuning). Cases already predicted are skipped
 * (resumable). Bad input is a user error (cli/user_errors.ts: one line naming the file or flag, exit 1).
 * Only built-in architectures load here: third-party plugin code runs only in the sandbox, which predict
 * does not use yet.
 */
import { createProgress, type LogMode, logOption } from "../progress.ts";
import type { Command } from "@commander-js/extra-typings";
import { join } from "node:path";
import { initGpu } from "../../core/gpu/mod.ts";
import {
  finetunedModel,
  isFinetunedCheckpoint,
  listCaseFolder,
  networkFromCheckpoint,
  networkPredictor,
  predictCase,
  readNnunetDataset,
  writePrediction,
} from "../../core/eval/mod.ts";
import { type Checkpoint, loadCheckpoint } from "../../core/train/mod.ts";
import { builtinRegistry } from "../builtins.ts";
import { ConfigError } from "../errors.ts";

function triple(text: string, flag: string): [number, number, number] {
  const parts = text.split(",").map(Number);
  if (parts.length !== 3 || !parts.every((p) => p > 0)) {
    throw new ConfigError(`${flag}: expected three positive numbers d,h,w; got "${text}"`);
  }
  return parts as [number, number, number];
}

/** Adds `predict` to the program. */
export function registerPredict(program: Command): void {
  program
    .command("predict")
    .description("segment a folder of NIfTI images with a fine-tuned checkpoint (sliding window, Gaussian)")
    .argument("<images>", "folder of <case>_0000.nii.gz … images (imagesTs layout)")
    .requiredOption("--checkpoint <file>", "fine-tuned voxssl checkpoint (network.* = the full network)")
    .requiredOption("--out <folder>", "where <case>.nii.gz predictions go")
    .option(
      "--dataset <folder>",
      "nnU-Net raw dataset folder whose dataset.json gives channels, labels and file ending " +
        "(default: the checkpoint's channels and labels, .nii.gz)",
    )
    .option(
      "--spacing <mm>",
      "spacing the network was trained at: sd,sh,sw, or none (default: the checkpoint's)",
    )
    .option("--patch <d,h,w>", "window size (default: the checkpoint's training patch)")
    .option("--step <fraction>", "window step as a fraction of the patch", "0.5")
    .option("--mirror", "mirroring test-time augmentation over all three axes (8 passes per window)")
    .addOption(logOption())
    .action(async (images, options) => {
      await runPredict(images, options);
    });
}

/** The checkpoint's file, loaded; a file that is not a voxssl checkpoint is a user error naming it. */
async function readCheckpoint(path: string): Promise<Checkpoint> {
  try {
    return await loadCheckpoint(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) throw new ConfigError(`--checkpoint ${path}: no such file`);
    throw new ConfigError(`--checkpoint ${path}: ${(error as Error).message}`);
  }
}

/** What prediction needs, from the fine-tuned checkpoint and the flags that override it. */
async function resolveInputs(
  checkpoint: Checkpoint,
  options: { checkpoint: string; dataset?: string; spacing?: string; patch?: string },
) {
  const source = options.checkpoint;
  const finetuned = isFinetunedCheckpoint(checkpoint)
    ? (() => {
      try {
        return finetunedModel(checkpoint, source);
      } catch (error) {
        throw new ConfigError((error as Error).message);
      }
    })()
    : undefined;
  const dataset = options.dataset ? await readNnunetDataset(options.dataset) : undefined;
  if (!finetuned && (!dataset || !options.spacing)) {
    throw new ConfigError(
      `--checkpoint ${source}: not a fine-tuned checkpoint (it records no dataset, spacing or patch); ` +
        "give --dataset and --spacing (and --patch)",
    );
  }
  const seg = finetuned?.segmentation;
  const channels = dataset?.channels.length ?? seg!.channelNames.length;
  const numClasses = dataset ? Math.max(...Object.values(dataset.labels)) + 1 : seg!.classes;
  if (finetuned && channels !== finetuned.inChannels) {
    throw new ConfigError(
      `--dataset ${options.dataset}: ${channels} channel(s), but ${source} was fine-tuned on ${finetuned.inChannels}`,
    );
  }
  if (seg && numClasses !== seg.classes) {
    throw new ConfigError(
      `--dataset ${options.dataset}: ${numClasses} classes, but ${source} was fine-tuned for ${seg.classes}`,
    );
  }
  const targetSpacing = options.spacing === undefined
    ? seg!.spacing
    : options.spacing === "none"
    ? null
    : triple(options.spacing, "--spacing");
  const patchSize = options.patch
    ? triple(options.patch, "--patch")
    : finetuned?.patch ?? checkpoint.meta.adaptationPlan?.recommendedDownstreamPatchSize;
  if (!patchSize) throw new ConfigError(`--checkpoint ${source}: it records no patch size; give --patch`);
  return {
    channels,
    numClasses,
    targetSpacing,
    patchSize: [...patchSize] as [number, number, number],
    fileEnding: dataset?.fileEnding ?? ".nii.gz",
  };
}

async function runPredict(
  images: string,
  options: {
    checkpoint: string;
    dataset?: string;
    out: string;
    spacing?: string;
    patch?: string;
    step: string;
    mirror?: boolean;
    log?: LogMode;
  },
): Promise<void> {
  const step = Number(options.step);
  if (!(step > 0 && step <= 1)) {
    throw new ConfigError(`--step: expected a fraction in (0, 1], got "${options.step}"`);
  }
  const checkpoint = await readCheckpoint(options.checkpoint);
  const { channels, numClasses, targetSpacing, patchSize, fileEnding } = await resolveInputs(
    checkpoint,
    options,
  );
  const cases = await listCaseFolder(images, channels, fileEnding);
  const plan = checkpoint.meta.adaptationPlan;
  const name = plan?.architecture?.plugin;
  const registry = builtinRegistry();
  const known = registry.list().some((e) => e.plugin.kind === "architecture" && e.plugin.name === name);
  if (!known) {
    throw new ConfigError(
      `--checkpoint ${options.checkpoint}: architecture "${name}" is not built in; predict loads built-in architectures only`,
    );
  }
  const arch = registry.architecture(name!).plugin;
  await initGpu();
  let network;
  try {
    network = networkFromCheckpoint(
      checkpoint,
      arch,
      { inChannels: channels, outChannels: numClasses, patchSize },
      options.checkpoint,
    );
  } catch (error) {
    // weights that do not fit the network (another channel or class count): the user's file
    throw new ConfigError((error as Error).message);
  }
  const predict = networkPredictor(network, channels);
  await Deno.mkdir(options.out, { recursive: true });
  const pathOf = (id: string) => join(options.out, `${id}${fileEnding}`);
  const exists = (path: string) => Deno.stat(path).then(() => true, () => false);
  const todo = [];
  for (const c of cases) if (!(await exists(pathOf(c.id)))) todo.push(c);
  const skipped = cases.length - todo.length;
  const progress = createProgress("predict", cases.length, {
    mode: options.log,
    unit: "cases",
    start: skipped,
  });
  let done = 0;
  try {
    for (const c of todo) {
      const path = pathOf(c.id);
      const t0 = performance.now();
      const prediction = await predictCase(c, predict, {
        targetSpacing,
        patchSize,
        numClasses,
        stepSize: step,
        mirrorAxes: options.mirror ? [0, 1, 2] : [],
      });
      await writePrediction(path, prediction);
      done++;
      progress.log(`${c.id}: ${path} (${((performance.now() - t0) / 1000).toFixed(1)}s)`);
      progress.update(skipped + done, c.id);
    }
  } finally {
    progress.finish();
    network.dispose();
  }
  console.log(`predict: ${done} predicted, ${skipped} already there, in ${options.out}`);
}
