/**
 * `voxssl predict <images> --checkpoint <file> --dataset <raw folder> --out <folder>`: segments every case
 * of a folder of `<case>_0000.nii.gz …` images with a fine-tuned voxssl checkpoint (core/eval): sliding
 * window with Gaussian weighting on the GPU, optional mirroring, probabilities back to each input's grid,
 * argmax written as `<out>/<case>.nii.gz` with the input's affine. Cases already predicted are skipped
 * (resumable). Only built-in architectures load here: third-party plugin code runs only in the sandbox,
 * which predict does not use yet.
 */
import { createProgress, type LogMode, logOption } from "../progress.ts";
import type { Command } from "@commander-js/extra-typings";
import { join } from "node:path";
import { initGpu } from "../../core/gpu/mod.ts";
import {
  listCaseFolder,
  networkFromCheckpoint,
  networkPredictor,
  predictCase,
  readNnunetDataset,
  writePrediction,
} from "../../core/eval/mod.ts";
import { loadCheckpoint } from "../../core/train/mod.ts";
import { builtinRegistry } from "../builtins.ts";

function triple(text: string, flag: string): [number, number, number] {
  const parts = text.split(",").map(Number);
  if (parts.length !== 3 || !parts.every((p) => p > 0)) {
    throw new Error(`${flag}: expected three positive numbers d,h,w; got "${text}"`);
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
    .requiredOption(
      "--dataset <folder>",
      "nnU-Net raw dataset folder whose dataset.json gives channels and labels",
    )
    .requiredOption("--out <folder>", "where <case>.nii.gz predictions go")
    .requiredOption("--spacing <mm>", "spacing the network was trained at: sd,sh,sw, or none")
    .option("--patch <d,h,w>", "window size (default: the plan's recommended downstream patch)")
    .option("--step <fraction>", "window step as a fraction of the patch", "0.5")
    .option("--mirror", "mirroring test-time augmentation over all three axes (8 passes per window)")
    .addOption(logOption())
    .action(async (images, options) => {
      Deno.exitCode = await runPredict(images, options);
    });
}

async function runPredict(
  images: string,
  options: {
    checkpoint: string;
    dataset: string;
    out: string;
    spacing: string;
    patch?: string;
    step: string;
    mirror?: boolean;
    log?: LogMode;
  },
): Promise<number> {
  try {
    const targetSpacing = options.spacing === "none" ? null : triple(options.spacing, "--spacing");
    const step = Number(options.step);
    if (!(step > 0 && step <= 1)) {
      throw new Error(`--step: expected a fraction in (0, 1], got "${options.step}"`);
    }
    const dataset = await readNnunetDataset(options.dataset);
    const cases = await listCaseFolder(images, dataset.channels.length, dataset.fileEnding);
    const checkpoint = await loadCheckpoint(options.checkpoint);
    const plan = checkpoint.meta.adaptationPlan;
    const name = plan?.architecture?.plugin;
    const registry = builtinRegistry();
    const known = registry.list().some((e) => e.plugin.kind === "architecture" && e.plugin.name === name);
    if (!known) {
      throw new Error(
        `${options.checkpoint}: architecture "${name}" is not built in; predict loads built-in architectures only`,
      );
    }
    const arch = registry.architecture(name!).plugin;
    const patchSize = options.patch ? triple(options.patch, "--patch") : plan.recommendedDownstreamPatchSize;
    const numClasses = Math.max(...Object.values(dataset.labels)) + 1;
    await initGpu();
    const network = networkFromCheckpoint(checkpoint, arch, {
      inChannels: dataset.channels.length,
      outChannels: numClasses,
      patchSize: [...patchSize] as [number, number, number],
    }, options.checkpoint);
    const predict = networkPredictor(network, dataset.channels.length);
    await Deno.mkdir(options.out, { recursive: true });
    const pathOf = (id: string) => join(options.out, `${id}${dataset.fileEnding}`);
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
    for (const c of todo) {
      const path = pathOf(c.id);
      const t0 = performance.now();
      const prediction = await predictCase(c, predict, {
        targetSpacing,
        patchSize: [...patchSize] as [number, number, number],
        numClasses,
        stepSize: step,
        mirrorAxes: options.mirror ? [0, 1, 2] : [],
      });
      await writePrediction(path, prediction);
      done++;
      progress.log(`${c.id}: ${path} (${((performance.now() - t0) / 1000).toFixed(1)}s)`);
      progress.update(skipped + done, c.id);
    }
    progress.finish();
    network.dispose();
    console.log(`predict: ${done} predicted, ${skipped} already there, in ${options.out}`);
    return 0;
  } catch (error) {
    console.error(`voxssl predict: ${(error as Error).message}`);
    return 2;
  }
}
