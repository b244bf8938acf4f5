/**
 * Turns sample tasks `(step, index in batch, image)` into finished samples: opens the volume (through a
 * per-worker cache), cuts and augments the patch, runs the method's `prepare`, and hands the buffers
 * back for transfer. The loader's workers run this; with `workers: 0` the loader runs it in-process.
 *
 * @module
 */
import type { Augmentation } from "./augment/config.ts";
import { createRng } from "./rng.ts";
import {
  cutSample,
  emptyTimings,
  type ExtraArray,
  type MaskName,
  type PrepareFunction,
  type SampleSpec,
  type SampleTimings,
} from "./sample.ts";
import {
  createVolumeCache,
  itemLabel,
  type LoadTimings,
  type ResolvedSource,
  type VolumeCacheOptions,
} from "./sources.ts";
import type { TaskResult } from "./worker_pool.ts";

/** Everything a worker needs, sent once (structured clone). */
export interface SampleRunnerInit {
  /** The resolved source (its items are cloned into each worker). */
  source: ResolvedSource;
  /** How samples are cut and augmented. */
  spec: SampleSpec & { augmentation: Augmentation };
  /** The loader's seed. */
  seed: number;
  /** URL of a module exporting `prepare` (or a default export with `prepare`). */
  prepareModule?: string;
  /** Passed to `prepare` as `config`. */
  prepareConfig?: unknown;
  /** Per-worker volume cache limits. */
  volumeCache?: VolumeCacheOptions;
}

/** One sample to make. */
export interface SampleTask {
  /** The step. */
  step: number;
  /** Index within the batch. */
  index: number;
  /** Which item of the source. */
  item: number;
}

/** A finished sample. */
export interface SampleResult {
  /** The patch `[D, H, W]` (C = 1). */
  image: Float32Array;
  /** The requested masks. */
  masks: Partial<Record<MaskName, Uint8Array>>;
  /** What `prepare` returned. */
  extra: Record<string, ExtraArray>;
  /** Image id. */
  id: string;
  /** File path or synthetic label. */
  source: string;
  /** Time per stage. */
  timings: SampleTimings;
}

/** Loads the `prepare` function of a module: a named export, or a default export (a plugin) with one. */
export async function loadPrepare(url: string): Promise<PrepareFunction> {
  const module = await import(url);
  const prepare = module.prepare ?? module.default?.prepare;
  if (typeof prepare !== "function") {
    throw new Error(`${url} exports no prepare() function (named or on its default export)`);
  }
  return prepare as PrepareFunction;
}

/** Builds the runner: `run(task)` makes one sample; `close()` releases open volumes. */
export async function createSampleRunner(
  init: SampleRunnerInit,
): Promise<{ run: (task: SampleTask) => Promise<TaskResult<SampleResult>>; close: () => void }> {
  const prepare = init.prepareModule ? await loadPrepare(init.prepareModule) : undefined;
  const volumes = createVolumeCache(init.source, init.volumeCache);
  const ids = (
    i: number,
  ) => (init.source.kind === "synthetic" ? init.source.items[i].id : init.source.items[i].id);
  const run = async (task: SampleTask): Promise<TaskResult<SampleResult>> => {
    const t0 = performance.now();
    const timings = emptyTimings();
    const load: LoadTimings = { readMs: 0, decompressMs: 0, copyMs: 0, preprocessMs: 0 };
    const rng = createRng(init.seed, task.step, task.index);
    const reader = await volumes.get(task.item, load);
    let cut;
    try {
      cut = cutSample(reader, rng, init.spec, load);
    } finally {
      volumes.release(reader);
    }
    timings.readMs = load.readMs;
    timings.decompressMs = load.decompressMs;
    timings.preprocessMs = load.preprocessMs;
    timings.cropMs = load.copyMs;
    timings.augmentMs = cut.augmentMs;
    const source = itemLabel(init.source, task.item);
    let extra: Record<string, ExtraArray> = {};
    if (prepare) {
      const t = performance.now();
      const [D, H, W] = init.spec.patch;
      const sample = {
        image: cut.image,
        shape: [1, D, H, W] as [number, number, number, number],
        masks: cut.masks,
        id: ids(task.item),
        source,
      };
      extra = (await prepare(sample, {
        rng: rng.fork("prepare"),
        config: init.prepareConfig,
        seed: init.seed,
        step: task.step,
        index: task.index,
      })) ?? {};
      cut.image = sample.image;
      timings.prepareMs = performance.now() - t;
    }
    timings.totalMs = performance.now() - t0;
    const result: SampleResult = {
      image: cut.image,
      masks: cut.masks,
      extra,
      id: ids(task.item),
      source,
      timings,
    };
    const buffers = new Set<ArrayBufferLike>([
      cut.image.buffer,
      ...Object.values(cut.masks).map((m) => m!.buffer),
      ...Object.values(extra).map((e) => e.buffer),
    ]);
    return { result, transfer: [...buffers] as ArrayBuffer[] };
  };
  return { run, close: () => volumes.close() };
}
