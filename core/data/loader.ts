/**
 * The patch loader: batches of augmented patches from a cache folder, an index of raw NIfTI files, or
 * synthetic phantoms, made by background Workers and handed over as transferable buffers.
 *
 * Reproducibility: the batch of a step is a pure function of (seed, step) and the data. Sample `b` of
 * step `s` takes image `createRng(seed, "image", s, b, attempt).int(N)`; its crop, augmentation and
 * `prepare` draw from `createRng(seed, s, b)`. A file that fails is logged with its path and reason,
 * remembered as bad, and the sample moves to its next attempt — the same choice whenever the failure is
 * discovered, so resuming at any step gives the same batches.
 *
 * Prefetch: `batch(s)` also starts steps s+1 … s+prefetch; at most `prefetch + 1` batches are queued
 * or held. Asking for a step out of order drops (and cancels) the prefetched ones.
 *
 * @module
 */
import { type AugmentationInput, resolveAugmentation } from "./augment/config.ts";
import type { DataSplit, ImageFilter } from "./dataset_index.ts";
import { DataFileError, type SkippedFile } from "./errors.ts";
import { createRng } from "./rng.ts";
import { emptyTimings, type ExtraArray, type MaskName, type SampleTimings } from "./sample.ts";
import {
  createSampleRunner,
  type SampleResult,
  type SampleRunnerInit,
  type SampleTask,
} from "./sample_runner.ts";
import { itemLabel, type PatchSourceInput, resolveSource, type VolumeCacheOptions } from "./sources.ts";
import type { Shape3 } from "./volume.ts";
import { createWorkerPool, type WorkerPool } from "./worker_pool.ts";

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
  /** Augmentation preset or config (default "none"). */
  augmentation?: AugmentationInput;
  /** Probability of centring a patch on an anatomy voxel (default 0; nnssl's anatomy loader: 0.33). */
  anatomyProbability?: number;
  /** Masks to return with each batch (default none). */
  masks?: MaskName[];
  /** Background workers (default: cores − 1, at least 1); 0 makes samples on the calling thread. */
  workers?: number;
  /** Batches prepared ahead (default 2). */
  prefetch?: number;
  /** Module (URL or path) exporting the SSL method's `prepare(sample, { rng, config })`. */
  prepareModule?: string | URL;
  /** Config passed to `prepare` (structured-cloned into the workers). */
  prepareConfig?: unknown;
  /** Subject-level split of index and cache sources (default "all"). */
  split?: DataSplit;
  /** Quality/modality filter of index and cache sources. */
  filter?: ImageFilter;
  /** Per-worker memory for decoded raw/synthetic volumes and open cache files. */
  volumeCache?: VolumeCacheOptions;
  /** Failed reads allowed per sample before its batch fails (default 32). */
  maxAttempts?: number;
  /** Called once per file that is skipped (default: a warning on stderr). */
  onSkip?: (skipped: SkippedFile) => void;
}

/** One batch, channel-first. */
export interface PatchBatch {
  /** The step this batch belongs to. */
  step: number;
  /** `B·C·D·H·W` voxels, C = 1. */
  image: Float32Array;
  /** `[B, C, D, H, W]`. */
  shape: [number, number, number, number, number];
  /** Requested masks, `B·1·D·H·W` each (1 = anatomy / defaced voxel). */
  masks: Partial<Record<MaskName, Uint8Array>>;
  /** `prepare`'s arrays stacked along the batch: `extra[k]` holds B samples back to back. */
  extra: Record<string, ExtraArray>;
  /** `[B, ...per-sample shape]` of each extra array (per-sample shape is its length). */
  extraShapes: Record<string, number[]>;
  /** File (or synthetic label) of each sample. */
  sources: string[];
  /** Image id of each sample. */
  ids: string[];
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
  readonly workers: number;
  /** The batch of `step` (prefetching the following ones). */
  batch(step: number): Promise<PatchBatch>;
  /** Files skipped so far, with reasons. */
  skipped(): SkippedFile[];
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

function assemble(step: number, results: SampleResult[], patch: Shape3, masks: MaskName[]): PatchBatch {
  const B = results.length;
  const n = patch[0] * patch[1] * patch[2];
  const image = new Float32Array(B * n);
  results.forEach((r, b) => image.set(r.image, b * n));
  const batchMasks: Partial<Record<MaskName, Uint8Array>> = {};
  for (const m of masks) {
    const out = new Uint8Array(B * n);
    results.forEach((r, b) => out.set(r.masks[m]!, b * n));
    batchMasks[m] = out;
  }
  const extra: Record<string, ExtraArray> = {};
  const extraShapes: Record<string, number[]> = {};
  for (const key of Object.keys(results[0].extra)) {
    const first = results[0].extra[key];
    const Ctor = first.constructor as new (n: number) => ExtraArray;
    const out = new Ctor(B * first.length);
    results.forEach((r, b) => {
      const part = r.extra[key];
      if (!part || part.length !== first.length || part.constructor !== first.constructor) {
        throw new Error(`prepare() returned extra "${key}" with different types or lengths across the batch`);
      }
      out.set(part as never, b * first.length);
    });
    extra[key] = out;
    extraShapes[key] = [B, first.length];
  }
  const timings = emptyTimings();
  results.forEach((r) => addTimings(timings, r.timings));
  return {
    step,
    image,
    shape: [B, 1, patch[0], patch[1], patch[2]],
    masks: batchMasks,
    extra,
    extraShapes,
    sources: results.map((r) => r.source),
    ids: results.map((r) => r.id),
    timings,
  };
}

/**
 * Starts a patch loader.
 *
 * @example
 * ```ts
 * const loader = await createPatchLoader({
 *   source: "cache/", patchSize: [160, 160, 160], batchSize: 2, seed: 1,
 *   augmentation: "nnssl-mae", workers: 8, prefetch: 4,
 * });
 * const batch = await loader.batch(0); // batch.image: Float32Array, batch.shape: [2, 1, 160, 160, 160]
 * loader.close();
 * ```
 */
export async function createPatchLoader(options: PatchLoaderOptions): Promise<PatchLoader> {
  const { patchSize, batchSize, seed } = options;
  if (!(batchSize >= 1) || !Number.isInteger(batchSize)) {
    throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);
  }
  if (patchSize.length !== 3 || !patchSize.every((p) => Number.isInteger(p) && p >= 1)) {
    throw new RangeError(
      `patchSize must be three positive integers [D, H, W], got ${JSON.stringify(patchSize)}`,
    );
  }
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be an integer, got ${seed}`);
  const source = await resolveSource(options.source, { split: options.split, filter: options.filter });
  const masks = options.masks ?? [];
  const init: SampleRunnerInit = {
    source,
    spec: {
      patch: patchSize,
      augmentation: resolveAugmentation(options.augmentation ?? "none"),
      anatomyProbability: options.anatomyProbability ?? 0,
      masks,
    },
    seed,
    prepareModule: options.prepareModule
      ? new URL(options.prepareModule, `file://${Deno.cwd()}/`).href
      : undefined,
    prepareConfig: options.prepareConfig,
    volumeCache: options.volumeCache,
  };
  const workers = Math.max(0, Math.floor(options.workers ?? Math.max(1, navigator.hardwareConcurrency - 1)));
  const prefetch = Math.max(0, Math.floor(options.prefetch ?? 2));
  const maxAttempts = options.maxAttempts ?? 32;
  const onSkip = options.onSkip ??
    ((s: SkippedFile) => console.warn(`voxssl loader: skipping ${s.path}: ${s.reason}`));

  // where samples are made: a worker pool, or this thread
  let pool: WorkerPool<SampleTask, SampleResult> | undefined;
  let local: Awaited<ReturnType<typeof createSampleRunner>> | undefined;
  if (workers > 0) {
    pool = createWorkerPool<SampleTask, SampleResult>(new URL("./loader_worker.ts", import.meta.url), {
      size: workers,
      init,
      maxInFlight: 2,
    });
  } else {
    local = await createSampleRunner(init);
  }
  const runTask = async (task: SampleTask): Promise<SampleResult> =>
    pool ? await pool.run(task) : (await local!.run(task)).result;

  const count = source.items.length;
  const bad = new Map<number, string>();
  const skipped: SkippedFile[] = [];
  const totals: LoaderStats = { batches: 0, samples: 0, waitMs: 0, timings: emptyTimings(), skipped: 0 };
  let closed = false;

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
        if (closed || (error instanceof Error && /^(cancelled|worker pool closed)$/.test(error.message))) {
          throw error;
        }
        markBad(item, error);
        failures++;
      }
    }
    throw new Error(
      `no readable image for step ${step}, sample ${index} (${bad.size} of ${count} images failed to load)`,
    );
  };

  const inflight = new Map<number, Promise<PatchBatch>>();
  const schedule = (step: number) => {
    if (inflight.has(step)) return;
    const promise = Promise.all(Array.from({ length: batchSize }, (_, b) => makeSample(step, b))).then((
      results,
    ) => assemble(step, results, patchSize, masks));
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
