/**
 * Opens the training and validation batch sources of a run from its data setting: "synthetic" (the
 * embedded phantoms), a dataset index (.json) or a preprocessed cache folder. Both are the data
 * pipeline's patch loader (background workers, prefetch, deterministic (seed, step) batches, bad files
 * skipped with a log line), with the method's `prepare` running in the workers.
 *
 * Validation: a subject-level split of index and cache data (the reference's rule, seeded), or other
 * phantoms for synthetic data; its batches are drawn with a fixed seed so every epoch sees the same ones.
 */
import { createPatchLoader, type PatchBatch, type PatchLoader } from "../data/loader.ts";
import type { PatchSourceInput } from "../data/sources.ts";
import type { SslMethodPlugin } from "../plugin/mod.ts";
import type { BatchSource, HostBatch } from "./batch_source.ts";
import type { ResolvedRunConfig } from "./config.ts";

/** The sources of a run. */
export interface RunSources {
  train: BatchSource;
  validation?: BatchSource;
}

/** Options of {@link openBatchSources}. */
export interface OpenSourcesOptions {
  /** URL of the module whose default export is the method plugin (its `prepare` runs in workers). */
  methodModule?: string;
  log?: (line: string) => void;
}

function toHost(batch: PatchBatch): HostBatch {
  const extra: HostBatch["extra"] = {};
  for (const [name, data] of Object.entries(batch.extra)) {
    extra[name] = {
      data: data instanceof Float32Array ? data : Float32Array.from(data),
      shape: batch.extraShapes[name],
    };
  }
  return {
    image: batch.image,
    shape: batch.shape,
    masks: batch.masks as Record<string, Uint8Array>,
    extra,
    sources: batch.sources,
  };
}

function wrap(loader: PatchLoader): BatchSource {
  return {
    batch: async (step) => toHost(await loader.batch(step)),
    close: () => Promise.resolve(loader.close()),
  };
}

/** Opens the loaders of a run. */
export async function openBatchSources(
  config: ResolvedRunConfig,
  method: SslMethodPlugin,
  options: OpenSourcesOptions = {},
): Promise<RunSources> {
  const masks = method.masks?.(config.resolvedMethod.config) ?? [];
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
    prepareModule: method.prepare ? options.methodModule : undefined,
    prepareConfig: config.resolvedMethod.config,
    onSkip: (s: { path: string; reason: string }) => options.log?.(`skipped ${s.path}: ${s.reason}`),
  };
  if (method.prepare && !options.methodModule) {
    throw new Error(`method ${method.name} has a prepare() hook but its module URL is unknown`);
  }
  const train = await createPatchLoader({
    ...common,
    source: source(false),
    seed: config.seed,
    augmentation: config.augmentation,
    anatomyProbability: config.anatomyProbability,
    workers: config.workers,
    split: synthetic ? undefined : "train",
  });
  if (config.validationBatches === 0) return { train: wrap(train) };
  const validation = await createPatchLoader({
    ...common,
    source: source(true),
    seed: 12345, // the reference's validation seed: the same batches every epoch and every run
    augmentation: "none",
    workers: Math.min(config.workers, 1),
    prefetch: 1,
    split: synthetic ? undefined : "val",
  });
  return { train: wrap(train), validation: wrap(validation) };
}
