/**
 * The patch loader: batches of samples from a cache folder, an index of raw NIfTI files, or synthetic
 * phantoms, made by background Workers and handed over as transferable buffers. A sample is the run's
 * standard augmented patch (`image`, plus requested masks), or whatever the SSL method's data hook
 * (`sample(context)`) returns; the arrays of a batch are stacked along a new leading axis.
 *
 * Reproducibility: the batch of a step is a pure function of (seed, step) and the data. Sample `b` of
 * step `s` takes image `createRng(seed, "image", s, b, attempt).int(N)`; its crop, augmentation and data
 * hook draw from `createRng(seed, s, b)`. A file that fails is logged with its path and reason,
 * remembered as bad, and the sample moves to its next attempt — the same choice whenever the failure is
 * discovered, so resuming at any step gives the same batches.
 *
 * Failures of the method's own code are not bad files: a hook that throws, is refused a permission,
 * returns malformed arrays, or runs past `sampleTimeoutMs` rejects the batch with an error naming the
 * plugin, and the run stops.
 *
 * Prefetch: `batch(s)` also starts steps s+1 … s+prefetch; at most `prefetch + 1` batches are queued
 * or held. Asking for a step out of order drops (and cancels) the prefetched ones.
 *
 * @module
 */
import { type AugmentationInput, resolveAugmentation } from "./augment/config.ts";
import type { DataSplit, ImageFilter } from "./dataset_index.ts";
import { DataFileError, SampleHookError, SampleTimeoutError, type SkippedFile } from "./errors.ts";
import { createRng } from "./rng.ts";
import { emptyTimings, type MaskName, type SampleTimings } from "./sample.ts";
import type { SampleArray, SampleData } from "./sample_array.ts";
import type { RawView } from "./sample_context.ts";
import {
  createSampleRunner,
  type RawSample,
  type SampleResult,
  type SampleRunnerInit,
  type SampleTask,
} from "./sample_runner.ts";
import { itemLabel, type PatchSourceInput, resolveSource, type VolumeCacheOptions } from "./sources.ts";
import type { Shape3 } from "./volume.ts";
import { createWorkerPool, TaskTimeoutError, type WorkerPool, WorkerStartError } from "./worker_pool.ts";

/** Options of {@link createPatchLoader}. */
export interface PatchLoaderOptions {
  /** Index file, cache folder, or an explicit source (e.g. `{ kind: "synthetic", count: 16 }`). */
  source: PatchSourceInput;
  /** Patch size `[D, H, W]`. */
  patchSize: Shape3;
  /** Samples per batch (B). */
  batchSize: number;
  /** Seed of the whole data order: with the step it determines every batch. */
  seed: number;
  /**
   * Index of this loader's first sample in the global batch (default 0): sample `b` of a step is drawn
   * as global sample `firstSample + b`. Data-parallel rank r with B samples per rank passes r·B, so the
   * ranks together draw exactly the batch one process with N·B samples would.
   */
  firstSample?: number;
  /** Augmentation preset or config (default "none"). */
  augmentation?: AugmentationInput;
  /** Probability of centring a patch on an anatomy voxel (default 0; nnssl's anatomy loader: 0.33). */
  anatomyProbability?: number;
  /** Masks to return with each batch (default none). */
  masks?: MaskName[];
  /**
   * Where the standard patch is augmented: "cpu" (default: workers return augmented patches) or "gpu"
   * (workers return raw crops in `PatchBatch.raw`, augmented on the GPU by the trainer). With a data hook,
   * only a method that declares `gpuAugmentation` gets its `context.patch()` raw.
   */
  augmentOn?: "cpu" | "gpu";
  /** Image interpolation of the spatial transform (default "linear"; nnssl's is cubic). */
  interpolation?: "linear" | "cubic";
  /** What patches read outside the volume: zeros (default) or the nearest edge voxel ("border"). */
  padding?: "zero" | "border";
  /** Background workers (default: cores − 1, at least 1); 0 makes samples on the calling thread. */
  workers?: number;
  /** Batches prepared ahead (default 2). */
  prefetch?: number;
  /**
   * Module (URL or path) whose default export is the SSL method plugin with the data hook
   * `sample(context)`; without it each sample is the standard patch.
   */
  hookModule?: string | URL;
  /** The method's config (structured-cloned into the workers, parsed there by the plugin's schema). */
  hookConfig?: unknown;
  /** The plugin's name, for error messages (default: the module URL). */
  hookName?: string;
  /** Training batches (default) or validation batches (passed to the hook as `context.training`). */
  training?: boolean;
  /**
   * A sample taking longer than this (ms) stops the run with an error naming the plugin (default 120 s).
   * Needs workers ≥ 1: a hook stuck on the calling thread cannot be interrupted.
   */
  sampleTimeoutMs?: number;
  /**
   * How a user raises `sampleTimeoutMs`, for the timeout's error (e.g. a config field and a flag;
   * default "give a larger sampleTimeoutMs").
   */
  sampleTimeoutSetting?: string;
  /** Subject-level split of index and cache sources (default "all"). */
  split?: DataSplit;
  /** Quality/modality filter of index and cache sources. */
  filter?: ImageFilter;
  /** Per-worker memory for decoded raw/synthetic volumes and open cache files. */
  volumeCache?: VolumeCacheOptions;
  /**
   * Isolation of the workers (the plugin sandbox): how to get each Worker (e.g. started before the
   * process gave up read access to its code), and what each gives up before importing the hook.
   */
  isolation?: { spawn: () => Worker; revoke: { read: string[]; env: string[] } };
  /** Failed reads allowed per sample before its batch fails (default 32). */
  maxAttempts?: number;
  /** Called once per file that is skipped (default: a warning on stderr). */
  onSkip?: (skipped: SkippedFile) => void;
}

/** One batch: each sample's arrays stacked along a new leading axis. */
export interface PatchBatch {
  /** The step this batch belongs to. */
  step: number;
  /**
   * The arrays, `[B, ...per-sample shape]`, in their declared dtypes. Without a data hook: `image`
   * `[B, 1, D, H, W]` f32 and each requested mask (`anatomy`, `deface`) `[B, 1, D, H, W]` u8.
   */
  arrays: Record<string, SampleArray>;
  /** File (or synthetic label) of each sample. */
  sources: string[];
  /** Image id of each sample. */
  ids: string[];
  /** Each sample's standard patch as a raw crop, when the loader ships them for GPU augmentation. */
  raw?: RawSample[];
  /**
   * Each sample's own crops left raw for the GPU (methods declaring `gpuViewAugmentation`), in place in
   * `arrays`; absent when no sample has any.
   */
  views?: RawView[][];
  /** Per-stage time summed over the batch's samples (worker time, not wall time). */
  timings: SampleTimings;
}

/** Running totals of a loader. */
export interface LoaderStats {
  /** Batches returned so far. */
  batches: number;
  /** Samples in those batches. */
  samples: number;
  /** Time `batch()` callers spent waiting (ms): zero when the pipeline keeps up. */
  waitMs: number;
  /** Summed per-stage worker time (ms). */
  timings: SampleTimings;
  /** Files skipped so far. */
  skipped: number;
}

/** A running patch loader. */
export interface PatchLoader {
  /** Number of images the loader samples from. */
  readonly images: number;
  /** Background workers sampling (0: samples are made on the calling thread). */
  readonly workers: number;
  /** The batch of `step` (prefetching the following ones). */
  batch(step: number): Promise<PatchBatch>;
  /** Files skipped so far, with reasons. */
  skipped(): SkippedFile[];
  /** Running totals: batches, samples, waiting time, worker time per stage, skipped files. */
  stats(): LoaderStats;
  /** Stops the workers; pending batches reject. */
  close(): void;
}

/** The image of attempt `attempt` of sample `index` of `step` (pure). */
export function pickImage(seed: number, step: number, index: number, attempt: number, count: number): number {
  return createRng(seed, "image", step, index, attempt).int(count);
}

function addTimings(into: SampleTimings, add: SampleTimings): void {
  for (const k of Object.keys(into) as (keyof SampleTimings)[]) into[k] += add[k];
}

function assemble(step: number, results: SampleResult[], where: string): PatchBatch {
  const B = results.length;
  const arrays: Record<string, SampleArray> = {};
  const first = results[0].arrays;
  const keys = Object.keys(first).sort();
  results.forEach((r, b) => {
    const k = Object.keys(r.arrays).sort();
    if (k.join() !== keys.join()) {
      throw new Error(
        `${where}: sample ${b} of step ${step} returned arrays [${k}], sample 0 returned [${keys}]; ` +
          "every sample of a batch must return the same names",
      );
    }
  });
  for (const key of keys) {
    const a = first[key];
    const n = a.data.length;
    const Ctor = a.data.constructor as new (n: number) => SampleData;
    const out = new Ctor(B * n);
    results.forEach((r, b) => {
      const part = r.arrays[key];
      if (part.dtype !== a.dtype || part.shape.join() !== a.shape.join()) {
        throw new Error(
          `${where}: "${key}" is ${part.dtype} [${part.shape}] in sample ${b} of step ${step} but ` +
            `${a.dtype} [${a.shape}] in sample 0; every sample of a batch must agree`,
        );
      }
      out.set(part.data as never, b * n);
    });
    arrays[key] = { dtype: a.dtype, shape: [B, ...a.shape], data: out };
  }
  const timings = emptyTimings();
  results.forEach((r) => addTimings(timings, r.timings));
  const raw = results.every((r) => r.raw) ? results.map((r) => r.raw!) : undefined;
  const views = results.some((r) => r.views) ? results.map((r) => r.views ?? []) : undefined;
  return {
    step,
    arrays,
    sources: results.map((r) => r.source),
    ids: results.map((r) => r.id),
    timings,
    ...(raw ? { raw } : {}),
    ...(views ? { views } : {}),
  };
}

/**
 * Starts a patch loader.
 *
 * @example
 * ```ts
 * const loader = await createPatchLoader({
 *   source: { kind: "synthetic", count: 2, shape: [32, 32, 32] }, // or "cache/", "pretrain_data.json"
 *   patchSize: [16, 16, 16], batchSize: 2, seed: 1,
 *   augmentation: "nnssl-mae", workers: 0, prefetch: 1,
 * });
 * const batch = await loader.batch(0);
 * console.log(batch.arrays.image.dtype, batch.arrays.image.shape); // "f32" [2, 1, 16, 16, 16]
 * loader.close();
 * ```
 */
export async function createPatchLoader(options: PatchLoaderOptions): Promise<PatchLoader> {
  const { patchSize, batchSize, seed } = options;
  const firstSample = options.firstSample ?? 0;
  if (!Number.isSafeInteger(firstSample) || firstSample < 0) {
    throw new RangeError(`firstSample must be an integer >= 0, got ${firstSample}`);
  }
  if (!(batchSize >= 1) || !Number.isInteger(batchSize)) {
    throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);
  }
  if (patchSize.length !== 3 || !patchSize.every((p) => Number.isInteger(p) && p >= 1)) {
    throw new RangeError(
      `patchSize must be three positive integers [D, H, W], got ${JSON.stringify(patchSize)}`,
    );
  }
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be an integer, got ${seed}`);
  const onSkip = options.onSkip ??
    ((s: SkippedFile) => console.warn(`voxssl loader: skipping ${s.path}: ${s.reason}`));
  // unusable entries of a cache folder without cache.json: reported and counted like any skipped file
  const unusable: SkippedFile[] = [];
  const source = await resolveSource(options.source, {
    split: options.split,
    filter: options.filter,
    onSkip: (s) => unusable.push(s),
  }).catch((error) => {
    for (const s of unusable) onSkip(s);
    throw error;
  });
  const masks = options.masks ?? [];
  const hookModule = options.hookModule
    ? new URL(options.hookModule, `file://${Deno.cwd()}/`).href
    : undefined;
  const init: SampleRunnerInit = {
    source,
    spec: {
      patch: patchSize,
      augmentation: resolveAugmentation(options.augmentation ?? "none"),
      anatomyProbability: options.anatomyProbability ?? 0,
      masks,
      interpolation: options.interpolation ?? "linear",
      padding: options.padding ?? "zero",
      rawCrops: options.augmentOn === "gpu",
    },
    seed,
    training: options.training ?? true,
    hookModule,
    hookConfig: options.hookConfig,
    volumeCache: options.volumeCache,
    revoke: options.isolation?.revoke,
  };
  const who = hookModule ? `plugin ${options.hookName ?? hookModule}` : "the patch loader";
  const timeoutMs = options.sampleTimeoutMs ?? 120_000;
  const workers = Math.max(0, Math.floor(options.workers ?? Math.max(1, navigator.hardwareConcurrency - 1)));
  const prefetch = Math.max(0, Math.floor(options.prefetch ?? 2));
  const maxAttempts = options.maxAttempts ?? 32;

  // where samples are made: a worker pool, or this thread
  let pool: WorkerPool<SampleTask, SampleResult> | undefined;
  let local: Awaited<ReturnType<typeof createSampleRunner>> | undefined;
  if (workers > 0) {
    pool = createWorkerPool<SampleTask, SampleResult>(new URL("./loader_worker.ts", import.meta.url), {
      size: workers,
      init,
      maxInFlight: 2,
      taskTimeoutMs: timeoutMs,
      spawn: options.isolation?.spawn,
    });
  } else {
    local = await createSampleRunner(init);
  }
  const runTask = async (task: SampleTask): Promise<SampleResult> => {
    const result = pool ? await pool.run(task) : (await local!.run(task)).result;
    for (const s of result.skipped) {
      skipped.push(s);
      totals.skipped++;
      onSkip(s);
    }
    return result;
  };

  const count = source.items.length;
  const bad = new Map<number, string>();
  const skipped: SkippedFile[] = [];
  const totals: LoaderStats = { batches: 0, samples: 0, waitMs: 0, timings: emptyTimings(), skipped: 0 };
  let closed = false;
  for (const entry of unusable) {
    skipped.push(entry);
    totals.skipped++;
    onSkip(entry);
  }

  const markBad = (item: number, error: unknown) => {
    if (bad.has(item)) return;
    const reason = error instanceof DataFileError
      ? error.problem
      : error instanceof Error
      ? error.message
      : String(error);
    bad.set(item, reason);
    const entry = { path: itemLabel(source, item), reason };
    skipped.push(entry);
    totals.skipped++;
    onSkip(entry);
  };

  const makeSample = async (step: number, index: number): Promise<SampleResult> => {
    // Known-bad images are passed over without cost; `maxAttempts` bounds the failed reads.
    let failures = 0;
    for (let attempt = 0; attempt < 100_000 && failures < maxAttempts && bad.size < count; attempt++) {
      const item = pickImage(seed, step, index, attempt, count);
      if (bad.has(item)) continue;
      try {
        return await runTask({ step, index, item });
      } catch (error) {
        if (closed || (error instanceof Error && /^(cancelled|worker pool closed)/.test(error.message))) {
          throw error;
        }
        if (error instanceof TaskTimeoutError) {
          throw new SampleTimeoutError(
            who,
            `sample ${index} of step ${step} (${itemLabel(source, item)})`,
            timeoutMs / 1000,
            options.sampleTimeoutSetting ?? "give a larger sampleTimeoutMs",
            hookModule !== undefined,
          );
        }
        if (error instanceof SampleHookError) throw error;
        if (error instanceof WorkerStartError) {
          throw new Error(
            `${who}: the data loader's worker could not start: ${
              error.message.replace(/^worker failed to start: /, "")
            }`,
          );
        }
        if (!(error instanceof DataFileError) && hookModule) {
          // anything else from a worker running a plugin's code is not a bad file
          throw new Error(
            `${who}: making sample ${index} of step ${step} failed: ${(error as Error).message}`,
          );
        }
        markBad(item, error);
        failures++;
      }
    }
    // every image tried was bad: a data problem for the user, named by its first failures
    const examples = [...bad.entries()].slice(0, 2).map(([item, reason]) =>
      `${itemLabel(source, item)}: ${reason}`
    );
    throw new DataFileError(
      bad.size === count ? "the data" : "the data (some images)",
      `no readable image for step ${step}, sample ${index} (${bad.size} of ${count} images failed to load; ` +
        `e.g. ${examples.join("; ")})`,
    );
  };

  const inflight = new Map<number, Promise<PatchBatch>>();
  const schedule = (step: number) => {
    if (inflight.has(step)) return;
    const promise = Promise.all(
      Array.from({ length: batchSize }, (_, b) => makeSample(step, firstSample + b)),
    ).then((
      results,
    ) => assemble(step, results, who));
    promise.catch(() => {}); // a dropped prefetch may reject unobserved
    inflight.set(step, promise);
  };

  return {
    images: count,
    workers,
    async batch(step) {
      if (closed) throw new Error("patch loader is closed");
      if (!Number.isSafeInteger(step) || step < 0) {
        throw new RangeError(`step must be a non-negative integer, got ${step}`);
      }
      const wanted = new Set(Array.from({ length: prefetch + 1 }, (_, k) => step + k));
      for (const s of inflight.keys()) if (!wanted.has(s)) inflight.delete(s);
      pool?.cancel((task) => wanted.has(task.step));
      for (const s of wanted) schedule(s);
      const promise = inflight.get(step)!;
      inflight.delete(step);
      const t = performance.now();
      const batch = await promise;
      totals.waitMs += performance.now() - t;
      totals.batches++;
      totals.samples += batch.sources.length;
      addTimings(totals.timings, batch.timings);
      return batch;
    },
    skipped: () => skipped.slice(),
    stats: () => ({ ...totals, timings: { ...totals.timings } }),
    close() {
      if (closed) return;
      closed = true;
      inflight.clear();
      pool?.close();
      local?.close();
    },
  };
}
