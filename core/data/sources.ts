/**
 * Where patches come from, and how a worker reads a region of one volume of it:
 *
 * - a cache folder (from `voxssl preprocess`): regions are read chunk by chunk from `.vxc` files;
 * - an index (`pretrain_data.json`): each raw NIfTI is read and preprocessed on the fly (reorient,
 *   crop, z-score, optional resampling) and kept in a per-worker memory cache;
 * - synthetic phantoms: generated on the fly from (seed, index), cropped and z-scored the same way.
 *
 * `resolveSource` runs on the main thread and produces a plain, cloneable description; `createVolumeCache`
 * runs in each worker and opens volumes from it.
 *
 * @module
 */
import { join } from "node:path";
import { type CacheFile, openCacheFile, type RegionTimings } from "./cache_format.ts";
import { type CacheEntry, readCacheManifest } from "./cache_dataset.ts";
import { cropToBox, nonzeroBox } from "./crop.ts";
import {
  type DataSplit,
  filterImages,
  type ImageFilter,
  type ImageRecord,
  loadImageList,
  selectSplit,
} from "./dataset_index.ts";
import { asDataFileError, DataFileError, type SkippedFile } from "./errors.ts";
import { zscoreInPlace } from "./normalize.ts";
import { defaultParameters, preprocessImage, sampleLocations } from "./preprocess.ts";
import { generatePhantom, type PhantomModality } from "./synthetic.ts";
import { extractBox, type Shape3 } from "./volume.ts";

/** Synthetic phantoms as a source (the default run trains on these). */
export interface SyntheticSource {
  /** Selects the synthetic source. */
  kind: "synthetic";
  /** Number of distinct volumes (default 16). */
  count?: number;
  /** Volume shape (default 64³). */
  shape?: Shape3;
  /** Seed of the phantom set (default 0). */
  seed?: number;
  /** Contrasts cycled over the volumes (default T1w). */
  modalities?: PhantomModality[];
  /** Deface the phantoms (gives a non-trivial deface mask). */
  deface?: boolean;
}

/** An index file read raw, preprocessed on the fly. */
export interface IndexSource {
  /** Selects a raw index source. */
  kind: "index";
  /** The `pretrain_data.json`. */
  path: string;
  /** Resample on the fly to this spacing (default: none; resampling raw volumes per read is slow). */
  spacing?: Shape3 | null;
}

/** A cache folder made by `voxssl preprocess`. */
export interface CacheSource {
  /** Selects a cache source. */
  kind: "cache";
  /** The cache folder. */
  path: string;
}

/** What `createPatchLoader` accepts: an index file or cache folder path, or an explicit source. */
export type PatchSourceInput = string | SyntheticSource | IndexSource | CacheSource;

/** A resolved, cloneable source with one item per volume. */
export type ResolvedSource =
  | { kind: "synthetic"; spec: Required<SyntheticSource>; items: { id: string; label: string }[] }
  | { kind: "index"; spacing: Shape3 | null; items: ImageRecord[] }
  | { kind: "cache"; dir: string; items: CacheEntry[] };

/** Selection applied when resolving index and cache sources. */
export interface SourceSelection {
  /** Subject-level split to use (default all). */
  split?: DataSplit;
  /** Seed of the split (default nnssl's 12345). */
  splitSeed?: number;
  /** Quality and modality filter. */
  filter?: ImageFilter;
  /**
   * Called for each properties file of a cache without `cache.json` that cannot be used (see
   * `readCacheManifest`; default: a warning on stderr).
   */
  onSkip?: (skipped: SkippedFile) => void;
}

/** Resolves a source input: a directory is a cache, a file an index. */
export async function resolveSource(
  input: PatchSourceInput,
  selection: SourceSelection = {},
): Promise<ResolvedSource> {
  if (typeof input === "string") {
    let isDir: boolean;
    try {
      isDir = (await Deno.stat(input)).isDirectory;
    } catch (error) {
      throw asDataFileError(input, error);
    }
    return resolveSource(isDir ? { kind: "cache", path: input } : { kind: "index", path: input }, selection);
  }
  const select = <T extends Pick<ImageRecord, "dataset" | "subject" | "modality" | "qualityScore">>(
    items: T[],
  ) =>
    selectSplit(filterImages(items, selection.filter ?? {}), selection.split ?? "all", selection.splitSeed);
  let resolved: ResolvedSource;
  if (input.kind === "synthetic") {
    const spec: Required<SyntheticSource> = {
      kind: "synthetic",
      count: input.count ?? 16,
      shape: input.shape ?? [64, 64, 64],
      seed: input.seed ?? 0,
      modalities: input.modalities ?? ["T1w"],
      deface: input.deface ?? false,
    };
    const items = Array.from(
      { length: spec.count },
      (_, i) => ({ id: `synthetic-${spec.seed}-${i}`, label: `synthetic:${spec.seed}/${i}` }),
    );
    resolved = { kind: "synthetic", spec, items };
  } else if (input.kind === "index") {
    resolved = {
      kind: "index",
      spacing: input.spacing ?? null,
      items: select(await loadImageList(input.path)),
    };
  } else {
    const manifest = await readCacheManifest(input.path, { onSkip: selection.onSkip });
    resolved = { kind: "cache", dir: input.path, items: select(manifest.images) };
  }
  if (resolved.items.length === 0) {
    const where = typeof input === "string" ? input : "path" in input ? input.path : "synthetic";
    throw new DataFileError(where, "has no images (after split and filters)");
  }
  return resolved;
}

/** The path (or label) of item `i`, as reported in batches and skip messages. */
export function itemLabel(source: ResolvedSource, i: number): string {
  if (source.kind === "synthetic") return source.items[i].label;
  if (source.kind === "index") return source.items[i].path;
  return join(source.dir, source.items[i].key + ".vxc");
}

/** Arrays a reader can serve. */
export type VolumeArray = "image" | "anatomy" | "anonymization";

/** Time split of loading a volume and cutting regions from it (milliseconds). */
export interface LoadTimings extends RegionTimings {
  /** Decoding and on-the-fly preprocessing of raw or synthetic volumes. */
  preprocessMs: number;
}

/** Read access to one volume. */
export interface VolumeReader {
  /** File path or synthetic label. */
  label: string;
  /** Shape `[D, H, W]` of the (preprocessed) volume. */
  shape: Shape3;
  /** Sampled anatomy voxels `[N, 3]` for anatomy-centred crops, when the volume has an anatomy mask. */
  locations?: Int32Array;
  /** Whether the volume has this array (image always; masks when they were given). */
  has(array: VolumeArray): boolean;
  /** A region, zero outside the volume. A missing anatomy mask reads as 1 inside the volume. */
  readRegion(
    array: VolumeArray,
    start: readonly number[],
    size: Shape3,
    timings?: LoadTimings,
  ): Float32Array | Uint8Array;
  /** Bytes held in memory. */
  bytes: number;
  /** Releases the file or memory. */
  close(): void;
}

/** 1 inside the volume's bounds, 0 outside: the anatomy mask of a volume that has none. */
function onesInBounds(shape: Shape3, start: readonly number[], size: Shape3): Uint8Array {
  const ones = new Uint8Array(shape[0] * shape[1] * shape[2]).fill(1);
  return extractBox(ones, shape, start, size);
}

function memoryReader(
  label: string,
  shape: Shape3,
  arrays: Partial<Record<VolumeArray, Float32Array | Uint8Array>>,
  locations?: Int32Array,
): VolumeReader {
  const bytes = Object.values(arrays).reduce((n, a) => n + (a?.byteLength ?? 0), 0) +
    (locations?.byteLength ?? 0);
  return {
    label,
    shape,
    locations,
    has: (name) => arrays[name] !== undefined,
    readRegion(name, start, size, timings) {
      const t = performance.now();
      const data = arrays[name];
      const out = data
        ? extractBox(data, shape, start, size)
        : name === "anatomy"
        ? onesInBounds(shape, start, size)
        : new Uint8Array(size[0] * size[1] * size[2]);
      if (timings) timings.copyMs += performance.now() - t;
      return out;
    },
    bytes,
    close() {},
  };
}

function cacheReader(label: string, file: CacheFile, entry: CacheEntry): VolumeReader {
  const locations = entry.arrays.includes("anatomy_locations")
    ? file.readArray<Int32Array>("anatomy_locations")
    : undefined;
  return {
    label,
    shape: entry.shape,
    locations,
    has: (name) => entry.arrays.includes(name),
    readRegion(name, start, size, timings) {
      if (entry.arrays.includes(name)) return file.readRegion(name, start, size, timings);
      return name === "anatomy"
        ? onesInBounds(entry.shape, start, size)
        : new Uint8Array(size[0] * size[1] * size[2]);
    },
    bytes: locations?.byteLength ?? 0,
    close: () => file.close(),
  };
}

async function rawReader(
  record: ImageRecord,
  spacing: Shape3 | null,
  timings?: LoadTimings,
): Promise<VolumeReader> {
  const { arrays, properties } = await preprocessImage(
    record,
    defaultParameters(spacing, spacing ? spacing.join(",") : "none"),
  );
  if (timings) {
    const t = properties.timingsMs;
    timings.readMs += (t.readFile ?? 0) + (t.readMasks ?? 0);
    timings.decompressMs += t.decompress ?? 0;
    timings.preprocessMs += Object.entries(t).filter(([k]) =>
      !["read", "readFile", "decompress", "readMasks"].includes(k)
    ).reduce((s, [, v]) => s + v, 0);
  }
  const shape = properties.final.shape;
  return memoryReader(record.path, shape, {
    image: arrays.image,
    anatomy: arrays.anatomy,
    anonymization: arrays.anonymization,
  }, arrays.anatomyLocations);
}

function syntheticReader(
  spec: Required<SyntheticSource>,
  index: number,
  label: string,
  timings?: LoadTimings,
): VolumeReader {
  const t = performance.now();
  const phantom = generatePhantom({
    shape: spec.shape,
    seed: spec.seed,
    index,
    modality: spec.modalities[index % spec.modalities.length],
    deface: spec.deface,
  });
  const box = nonzeroBox(phantom.image, phantom.shape)!;
  const shape = box.end.map((e, i) => e - box.start[i]) as Shape3;
  const image = cropToBox(phantom.image, phantom.shape, box);
  zscoreInPlace(image);
  const anatomy = cropToBox(phantom.anatomy, phantom.shape, box);
  const anonymization = spec.deface ? cropToBox(phantom.deface, phantom.shape, box) : undefined;
  const locations = sampleLocations(anatomy, shape, 10000, label);
  if (timings) timings.preprocessMs += performance.now() - t;
  return memoryReader(label, shape, { image, anatomy, anonymization }, locations);
}

/** Options of {@link createVolumeCache}. */
export interface VolumeCacheOptions {
  /** Memory for decoded raw/synthetic volumes per worker (default 512 MiB; 0 decodes on every read). */
  maxBytes?: number;
  /** Open cache files kept per worker (default 64). */
  maxOpenFiles?: number;
}

/** A worker's LRU of open volumes. */
export interface VolumeCache {
  /** The reader of item `index` (opened or taken from the cache). */
  get(index: number, timings?: LoadTimings): Promise<VolumeReader>;
  /** Releases a reader obtained with `get` (closes it if it was not kept). */
  release(reader: VolumeReader): void;
  /** Closes every kept reader. */
  close(): void;
}

/** Opens volumes of a resolved source, keeping recently used ones. */
export function createVolumeCache(source: ResolvedSource, options: VolumeCacheOptions = {}): VolumeCache {
  const maxBytes = options.maxBytes ?? 512 * 2 ** 20;
  const maxOpen = options.maxOpenFiles ?? 64;
  const kept = new Map<number, VolumeReader>(); // insertion order = recency
  let bytes = 0;
  const evict = () => {
    for (const [key, reader] of kept) {
      const over = source.kind === "cache" ? kept.size > maxOpen : bytes > maxBytes;
      if (!over) break;
      kept.delete(key);
      bytes -= reader.bytes;
      reader.close();
    }
  };
  const open = async (i: number, timings?: LoadTimings): Promise<VolumeReader> => {
    const label = itemLabel(source, i);
    try {
      if (source.kind === "synthetic") return syntheticReader(source.spec, i, label, timings);
      if (source.kind === "index") return await rawReader(source.items[i], source.spacing, timings);
      const t = performance.now();
      const file = openCacheFile(label);
      try {
        const reader = cacheReader(label, file, source.items[i]);
        if (timings) timings.readMs += performance.now() - t;
        return reader;
      } catch (error) {
        file.close();
        throw error;
      }
    } catch (error) {
      throw asDataFileError(label, error);
    }
  };
  return {
    async get(i, timings) {
      const hit = kept.get(i);
      if (hit) {
        kept.delete(i);
        kept.set(i, hit);
        return hit;
      }
      const reader = await open(i, timings);
      if (source.kind === "cache" || reader.bytes <= maxBytes) {
        kept.set(i, reader);
        bytes += reader.bytes;
        evict();
      }
      return reader;
    },
    release(reader) {
      if (![...kept.values()].includes(reader)) reader.close();
    },
    close() {
      for (const reader of kept.values()) reader.close();
      kept.clear();
      bytes = 0;
    },
  };
}
