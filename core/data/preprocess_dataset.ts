/**
 * Preprocessing a whole dataset into a cache folder: resolves the target spacing (1 mm, median, none),
 * skips images whose cache entry is complete and current (resumable, incremental), runs the rest in
 * parallel Workers, reports progress, and writes the manifest `cache.json` with every skipped file and
 * its reason. A bad file never stops the run.
 *
 * @module
 */
import { type CacheManifest, entryOf, writeCacheManifest } from "./cache_dataset.ts";
import type { ImageRecord } from "./dataset_index.ts";
import { asDataFileError, type SkippedFile } from "./errors.ts";
import { type NiftiLimits, readNiftiHeader } from "./nifti_read.ts";
import { planCanonical } from "./orientation.ts";
import {
  cacheKey,
  cachePaths,
  defaultParameters,
  type ImageProperties,
  type PreprocessParameters,
  preprocessToCache,
} from "./preprocess.ts";
import type { PreprocessTask } from "./preprocess_worker.ts";
import { PRODUCER } from "./version.ts";
import type { Shape3 } from "./volume.ts";
import { createWorkerPool } from "./worker_pool.ts";

/** Target spacing: isotropic mm, the dataset's median, none (keep), or explicit `[sd, sh, sw]`. */
export type SpacingMode = number | "median" | "none" | Shape3;

/** Options of {@link preprocessDataset}. */
export interface PreprocessDatasetOptions {
  /** Default 1 (1 mm isotropic). */
  spacing?: SpacingMode;
  /** Parallel workers (default: all cores); 0 runs in this thread. */
  workers?: number;
  /** Called after each image (cached ones included) with the count done and the total. */
  onProgress?: (done: number, total: number, id: string) => void;
  /** Size limits a file must stay within to be preprocessed. */
  limits?: NiftiLimits;
  /** Overrides of the default parameters (chunk shape, compression level, …). */
  parameters?: Partial<Omit<PreprocessParameters, "targetSpacing" | "spacingMode">>;
  /**
   * This process's share of a job of `size` processes: it preprocesses records `rank`, `rank + size`, …
   * (the target spacing still comes from all records, so every share uses the same parameters) and
   * writes no `cache.json` unless `writeManifest`; merge the shares' summaries with
   * {@link mergePreprocessSummaries}. Default: all records, one process.
   */
  shard?: { rank: number; size: number };
  /** Write `cache.json` (default: only when not sharded). */
  writeManifest?: boolean;
}

/** What a run did. */
export interface PreprocessSummary {
  /** Images preprocessed in this run. */
  processed: number;
  /** Images whose complete, current entry was already there. */
  cached: number;
  /** Files left out, each with its reason. */
  skipped: SkippedFile[];
  /** The resolved target spacing `[sd, sh, sw]` in mm, or null for none. */
  targetSpacing: Shape3 | null;
  /** The manifest written to `cache.json`. */
  manifest: CacheManifest;
}

function median(values: number[]): number {
  const s = values.slice().sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Resolves the target spacing; "median" reads every header (bad ones are reported in `skipped`). */
export async function resolveTargetSpacing(
  records: ImageRecord[],
  mode: SpacingMode,
  limits: NiftiLimits = {},
): Promise<{ target: Shape3 | null; skipped: SkippedFile[] }> {
  if (mode === "none") return { target: null, skipped: [] };
  if (typeof mode === "number") {
    if (!(mode > 0)) throw new RangeError(`spacing must be positive, got ${mode}`);
    return { target: [mode, mode, mode], skipped: [] };
  }
  if (Array.isArray(mode)) return { target: [...mode] as Shape3, skipped: [] };
  const spacings: Shape3[] = [];
  const skipped: SkippedFile[] = [];
  let next = 0;
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (next < records.length) {
      const record = records[next++];
      try {
        const header = await readNiftiHeader(record.path, limits);
        spacings.push(planCanonical(header.shape, header.affine).spacing);
      } catch (error) {
        const e = asDataFileError(record.path, error);
        skipped.push({ path: e.path, reason: e.problem });
      }
    }
  }));
  if (spacings.length === 0) return { target: null, skipped };
  return { target: [0, 1, 2].map((a) => median(spacings.map((s) => s[a]))) as Shape3, skipped };
}

/** The stored properties of an entry when it is complete and made from the same sources and parameters. */
async function currentEntry(
  record: ImageRecord,
  cacheDir: string,
  parameters: PreprocessParameters,
): Promise<ImageProperties | undefined> {
  const paths = cachePaths(cacheDir, record);
  try {
    const properties = JSON.parse(await Deno.readTextFile(paths.properties)) as ImageProperties;
    if (properties.producer?.cacheFormat !== PRODUCER.cacheFormat) return undefined;
    if (JSON.stringify(properties.parameters) !== JSON.stringify(parameters)) return undefined;
    if ((await Deno.stat(paths.data)).size !== properties.bytes) return undefined;
    const same = async (path: string | undefined, stamp: ImageProperties["sources"]["image"] | undefined) => {
      if (!path) return stamp === undefined;
      if (!stamp) return false;
      const info = await Deno.stat(path);
      return info.size === stamp.size && (info.mtime?.getTime() ?? 0) === stamp.mtimeMs &&
        path === stamp.path;
    };
    const fresh = await same(record.path, properties.sources.image) &&
      await same(record.anatomyMask, properties.sources.anatomyMask) &&
      await same(record.anonymizationMask, properties.sources.anonymizationMask);
    return fresh ? properties : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Preprocesses `records` into `cacheDir`.
 *
 * @example
 * ```ts
 * import { buildFolderIndex, preprocessDataset, writeSyntheticDataset } from "@voxssl/core";
 * import { listImages } from "./dataset_index.ts";
 *
 * const root = await Deno.makeTempDir();
 * await writeSyntheticDataset(`${root}/scans`, { count: 2, shape: [8, 8, 8], layout: "flat" });
 * const { index } = await buildFolderIndex(`${root}/scans`);
 * const images = listImages(index, root); // or loadImageList("pretrain_data.json")
 * const summary = await preprocessDataset(images, `${root}/cache`, { spacing: 1, workers: 0 });
 * console.log(summary.processed, summary.cached, summary.skipped.length); // 2 0 0
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export async function preprocessDataset(
  records: ImageRecord[],
  cacheDir: string,
  options: PreprocessDatasetOptions = {},
): Promise<PreprocessSummary> {
  await Deno.mkdir(cacheDir, { recursive: true });
  const shard = options.shard ?? { rank: 0, size: 1 };
  if (
    !Number.isInteger(shard.size) || shard.size < 1 || !Number.isInteger(shard.rank) || shard.rank < 0 ||
    shard.rank >= shard.size
  ) {
    throw new RangeError(`shard: expected 0 ≤ rank < size, got rank ${shard.rank} of ${shard.size}`);
  }
  const mine = records.filter((_, i) => i % shard.size === shard.rank);
  const limits = options.limits ?? {};
  const mode = options.spacing ?? 1;
  const { target, skipped } = await resolveTargetSpacing(records, mode, limits);
  const parameters: PreprocessParameters = {
    ...defaultParameters(target, Array.isArray(mode) ? mode.join(",") : String(mode)),
    ...options.parameters,
  };
  const bad = new Set(skipped.map((s) => s.path));
  const todo: ImageRecord[] = [];
  const done = new Map<string, ImageProperties>();
  let finished = 0;
  const total = mine.length;
  for (const record of mine) {
    if (bad.has(record.path)) {
      options.onProgress?.(++finished, total, record.id);
      continue;
    }
    const existing = await currentEntry(record, cacheDir, parameters);
    if (existing) {
      done.set(record.id, existing);
      options.onProgress?.(++finished, total, record.id);
    } else todo.push(record);
  }
  const cached = done.size;

  const workers = Math.min(options.workers ?? navigator.hardwareConcurrency, todo.length);
  const pool = workers > 0
    ? createWorkerPool<PreprocessTask, ImageProperties>(new URL("./preprocess_worker.ts", import.meta.url), {
      size: workers,
    })
    : undefined;
  try {
    await Promise.all(todo.map(async (record) => {
      try {
        const properties = pool
          ? await pool.run({ record, cacheDir, parameters, limits })
          : await preprocessToCache(record, cacheDir, parameters, limits);
        done.set(record.id, properties);
      } catch (error) {
        const e = asDataFileError(record.path, error);
        skipped.push({ path: e.path, reason: e.problem });
      }
      options.onProgress?.(++finished, total, record.id);
    }));
  } finally {
    pool?.close();
  }

  const images = mine.filter((r) => done.has(r.id)).map((r) => entryOf(done.get(r.id)!, cacheKey(r)));
  const order = new Map(records.map((r, i) => [r.path, i]));
  skipped.sort((a, b) => (order.get(a.path) ?? 0) - (order.get(b.path) ?? 0));
  const manifest: CacheManifest = {
    producer: PRODUCER,
    parameters,
    created: new Date().toISOString(),
    images,
    skipped,
  };
  if (options.writeManifest ?? shard.size === 1) await writeCacheManifest(cacheDir, manifest);
  return { processed: done.size - cached, cached, skipped, targetSpacing: target, manifest };
}

/**
 * The summary of a whole dataset from the summaries of its shards (see `shard`): images and skipped files
 * in index order (a file every share skipped while resolving the median spacing is listed once), counts
 * added up. Write its manifest with `writeCacheManifest`.
 */
export function mergePreprocessSummaries(
  records: ImageRecord[],
  parts: PreprocessSummary[],
): PreprocessSummary {
  if (parts.length === 0) throw new RangeError("mergePreprocessSummaries(): no summaries");
  const keyOrder = new Map(records.map((r, i) => [cacheKey(r), i]));
  const pathOrder = new Map(records.map((r, i) => [r.path, i]));
  const images = parts.flatMap((p) => p.manifest.images)
    .sort((a, b) => (keyOrder.get(a.key) ?? 0) - (keyOrder.get(b.key) ?? 0));
  const seen = new Set<string>();
  const skipped = parts.flatMap((p) => p.skipped).filter((s) => {
    const key = `${s.path}\u0000${s.reason}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  }).sort((a, b) => (pathOrder.get(a.path) ?? 0) - (pathOrder.get(b.path) ?? 0));
  const first = parts[0];
  return {
    processed: parts.reduce((s, p) => s + p.processed, 0),
    cached: parts.reduce((s, p) => s + p.cached, 0),
    skipped,
    targetSpacing: first.targetSpacing,
    manifest: { ...first.manifest, created: new Date().toISOString(), images, skipped },
  };
}
