/**
 * Opens the training and validation batch sources of a run from its data setting: "synthetic" (the
 * embedded phantoms), a dataset index (.json) or a preprocessed cache folder. Both are the data
 * pipeline's patch loader (background workers, prefetch, deterministic (seed, step) batches, bad files
 * skipped with a log line), with the method's `sample` hook running in the workers.
 *
 * Validation: a subject-level split of index and cache data (the reference's rule, seeded), or other
 * phantoms for synthetic data; its batches are drawn with a fixed seed so every epoch sees the same ones.
 */
import {
  createPatchLoader,
  type PatchBatch,
  type PatchLoader,
  type PatchLoaderOptions,
} from "../data/loader.ts";
import type { PatchSourceInput } from "../data/sources.ts";
import type { Gpu } from "../gpu/mod.ts";
import { callPlugin, type SslMethodPlugin } from "../plugin/mod.ts";
import { chooseAugmentationDevice } from "./augment_device.ts";
import type { BatchSource, HostBatch } from "./batch_source.ts";
import type { ResolvedRunConfig } from "./config.ts";

/** The sources of a run. */
export interface RunSources {
  /** Training batches. */
  train: BatchSource;
  /** Validation batches (absent when `config.validationBatches` is 0). */
  validation?: BatchSource;
}

/** Options of {@link openBatchSources}. */
export interface OpenSourcesOptions {
  /** URL of the module whose default export is the method plugin (its `sample` hook runs in workers). */
  methodModule?: string;
  /** Where skipped files are reported. */
  log?: (line: string) => void;
  /** Worker isolation (the plugin sandbox; see `PatchLoaderOptions.isolation`). */
  isolation?: PatchLoaderOptions["isolation"];
  /** This process's first sample in each global training batch (data-parallel ranks; default 0). */
  firstSample?: number;
  /** The run's GPU: with it, `augmentationDevice` "auto" can move the augmentation there. */
  gpu?: Gpu;
}

function toHost(batch: PatchBatch, config: ResolvedRunConfig, firstSample: number): HostBatch {
  const views = batch.views
    ? { views: { samples: batch.views, key: { seed: config.seed, step: batch.step, firstSample } } }
    : {};
  if (!batch.raw) return { arrays: batch.arrays, sources: batch.sources, ...views };
  const augment = {
    patch: config.patch,
    interpolation: config.interpolation ?? "linear",
    padding: config.padding ?? "zero",
    seed: config.seed,
    step: batch.step,
    firstSample, // a data-parallel rank's noise continues the global batch's, never repeats rank 0's
  };
  const [first] = batch.raw;
  const raw = {
    crops: batch.raw.map((r) => r.crop),
    imageName: first.image,
    maskNames: first.masks,
    augment,
  };
  return { arrays: batch.arrays, sources: batch.sources, raw, ...views };
}

function wrap(loader: PatchLoader, config: ResolvedRunConfig, firstSample = 0): BatchSource {
  return {
    batch: async (step) => toHost(await loader.batch(step), config, firstSample),
    close: () => Promise.resolve(loader.close()),
  };
}

/** Opens the loaders of a run. */
export async function openBatchSources(
  config: ResolvedRunConfig,
  method: SslMethodPlugin,
  options: OpenSourcesOptions = {},
): Promise<RunSources> {
  const masks = callPlugin(method.name, "masks", () => method.masks?.(config.resolvedMethod.config)) ?? [];
  const synthetic = config.data === "synthetic";
  const source = (validation: boolean): PatchSourceInput =>
    synthetic
      ? {
        kind: "synthetic",
        count: validation ? Math.max(2, Math.ceil(config.synthetic.volumes / 4)) : config.synthetic.volumes,
        shape: config.synthetic.size,
        seed: validation ? config.seed + 1_000_003 : config.seed,
        deface: masks.includes("deface"),
      }
      : config.data;
  const common = {
    patchSize: config.patch,
    batchSize: config.batch,
    masks,
    hookModule: method.sample ? options.methodModule : undefined,
    hookConfig: config.resolvedMethod.config,
    hookName: method.name,
    padding: config.padding ?? "zero",
    isolation: options.isolation,
    sampleTimeoutMs: config.sampleTimeoutSeconds * 1000,
    sampleTimeoutSetting: `"sampleTimeoutSeconds" in the run config (now ${config.sampleTimeoutSeconds}), ` +
      "or voxssl pretrain --sample-timeout <seconds> (also with --resume)",
    onSkip: (s: { path: string; reason: string }) => options.log?.(`skipped ${s.path}: ${s.reason}`),
  };
  if (method.sample && !options.methodModule) {
    throw new Error(`method ${method.name} has a sample() hook but its module URL is unknown`);
  }
  const device = chooseAugmentationDevice({
    // a run saved before the setting existed augmented on the CPU: its resume keeps doing so
    setting: config.augmentationDevice ?? "cpu",
    augmentation: config.augmentation ?? "none",
    patch: config.patch,
    batch: config.batch,
    masks: masks.length > 0,
    method: method.name,
    hasSampleHook: method.sample !== undefined && method.gpuAugmentation !== true &&
      method.gpuViewAugmentation !== true,
    viewAugmentation: method.sample !== undefined && method.gpuViewAugmentation === true,
    interpolation: config.interpolation ?? "linear",
  }, options.gpu);
  options.log?.(`augmentation on the ${device.device.toUpperCase()} (${device.reason})`);
  const train = await createPatchLoader({
    ...common,
    source: source(false),
    seed: config.seed,
    firstSample: options.firstSample,
    augmentation: config.augmentation,
    augmentOn: device.device,
    interpolation: config.interpolation ?? "linear",
    anatomyProbability: config.anatomyProbability,
    workers: config.workers,
    split: synthetic ? undefined : "train",
  });
  if (config.validationBatches === 0) return { train: wrap(train, config, options.firstSample) };
  const validation = await createPatchLoader({
    ...common,
    source: source(true),
    seed: 12345, // the reference's validation seed: the same batches every epoch and every run
    augmentation: "none",
    training: false,
    workers: Math.min(config.workers, 1),
    prefetch: 1,
    split: synthetic ? undefined : "val",
  });
  return { train: wrap(train, config, options.firstSample), validation: wrap(validation, config) };
}
