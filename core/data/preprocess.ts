/**
 * Preprocessing one image, in nnssl's order: reorient to RAS → crop to the non-zero box → z-score →
 * resample to the target spacing (cubic for the image, linear then threshold for masks, nearest along a
 * much coarser axis). The result goes to the cache as one `.vxc` file (image, masks, sampled anatomy
 * voxel locations) and a properties JSON that records where it came from and how it was made.
 *
 * @module
 */
import { dirname, join } from "node:path";
import { DEFAULT_CHUNK, DEFAULT_LEVEL, writeCacheFile } from "./cache_format.ts";
import { boxSize, cropToBox, nonzeroBox } from "./crop.ts";
import type { ImageRecord } from "./dataset_index.ts";
import { asDataFileError, DataFileError } from "./errors.ts";
import { type NiftiLimits, readNifti, readNiftiMask } from "./nifti_read.ts";
import { zscoreInPlace, type ZScoreStats } from "./normalize.ts";
import { applyReorientation, orientationOf, planCanonical } from "./orientation.ts";
import { axisOrders, resampleArray, resampledAffine, resampledShape, resampleMask } from "./resample.ts";
import { createRng } from "./rng.ts";
import { PRODUCER } from "./version.ts";
import type { Affine, Box3, Shape3 } from "./volume.ts";

/** The parameters that shape the cache's content (recorded, and compared on resume). */
export interface PreprocessParameters {
  /** How the target spacing was chosen: a number (isotropic mm), "median", "none", or explicit. */
  spacingMode: string;
  /** The resolved target spacing `[sd, sh, sw]`, or null for none. */
  targetSpacing: Shape3 | null;
  /** Axes are reoriented to RAS. */
  orientation: "RAS";
  /** Intensities are z-scored per image. */
  normalization: "zscore";
  /** Images are resampled with cubic interpolation. */
  imageInterpolation: "cubic";
  /** Masks are resampled linearly, then thresholded at 0.5. */
  maskInterpolation: "linear-threshold-0.5";
  /** An axis coarser than this × the finest is resampled with nearest neighbour (default 3). */
  anisotropyThreshold: number;
  /** Chunk shape `[D, H, W]` of the cache files (default [32, 32, 32]). */
  chunk: Shape3;
  /** zstd level of the cache files (default 3). */
  compressionLevel: number;
  /** Most anatomy voxel locations kept for anatomy-centred sampling. */
  maxLocations: number;
}

/** Default parameters (target spacing filled in by the caller). */
export function defaultParameters(targetSpacing: Shape3 | null, spacingMode: string): PreprocessParameters {
  return {
    spacingMode,
    targetSpacing,
    orientation: "RAS",
    normalization: "zscore",
    imageInterpolation: "cubic",
    maskInterpolation: "linear-threshold-0.5",
    anisotropyThreshold: 3,
    chunk: DEFAULT_CHUNK,
    compressionLevel: DEFAULT_LEVEL,
    maxLocations: 10000,
  };
}

/** Geometry at one stage of preprocessing. */
export interface Geometry {
  shape: Shape3;
  spacing: Shape3;
  affine: Affine;
}

/** Size and modification time of a source file, to notice when it changed. */
export interface SourceStamp {
  path: string;
  size: number;
  mtimeMs: number;
}

/** The properties JSON written beside each cache file. */
export interface ImageProperties {
  producer: typeof PRODUCER;
  parameters: PreprocessParameters;
  image: Omit<ImageRecord, "voxssl" | "path" | "anatomyMask" | "anonymizationMask">;
  sources: { image: SourceStamp; anatomyMask?: SourceStamp; anonymizationMask?: SourceStamp };
  original: Geometry & { orientation: string; datatype: string };
  reoriented: Geometry;
  /** Crop box in reoriented array coordinates `[D, H, W]`. */
  crop: Box3;
  normalization: ZScoreStats;
  final: Geometry;
  /** Arrays stored in the `.vxc` file. */
  arrays: string[];
  /** Voxels inside the anatomy mask (after resampling), when there is one. */
  anatomyVoxels?: number;
  /** Masks that could not be used, with the reason. */
  warnings: string[];
  /** Bytes of the `.vxc` file. */
  bytes: number;
  timingsMs: Record<string, number>;
}

/** The arrays of a preprocessed image. */
export interface PreprocessedArrays {
  image: Float32Array;
  anatomy?: Uint8Array;
  anonymization?: Uint8Array;
  /** Up to `maxLocations` anatomy voxels `[d, h, w]`, row-major `[N, 3]`. */
  anatomyLocations?: Int32Array;
}

/** Where an image's cache entry lives, relative to the cache folder (no extension). */
export function cacheKey(
  record: Pick<ImageRecord, "dataset" | "subject" | "session" | "name" | "frame">,
): string {
  const clean = (s: string) => s.replace(/[^A-Za-z0-9._-]/g, "_");
  const stem = record.name.replace(/\.nii(\.gz)?$/, "") +
    (record.frame !== undefined ? `_frame${record.frame}` : "");
  return [record.dataset, record.subject, record.session, stem].map(clean).join("/");
}

async function stamp(path: string): Promise<SourceStamp> {
  const info = await Deno.stat(path);
  return { path, size: info.size, mtimeMs: info.mtime?.getTime() ?? 0 };
}

/** Up to `max` random voxel coordinates inside `mask` (deterministic in `key`). */
export function sampleLocations(mask: Uint8Array, shape: Shape3, max: number, key: string): Int32Array {
  let count = 0;
  for (let i = 0; i < mask.length; i++) count += mask[i];
  const take = Math.min(count, max);
  const rng = createRng(0, "locations", key);
  // reservoir-free: choose which of the `count` inside voxels to keep by a selection pass
  const out = new Int32Array(take * 3);
  let needed = take;
  let left = count;
  let o = 0;
  for (let i = 0; i < mask.length && needed > 0; i++) {
    if (!mask[i]) continue;
    if (rng.next() * left < needed) {
      out[o++] = Math.floor(i / (shape[1] * shape[2]));
      out[o++] = Math.floor(i / shape[2]) % shape[1];
      out[o++] = i % shape[2];
      needed--;
    }
    left--;
  }
  return out;
}

/** Preprocesses one image in memory. Throws a {@link DataFileError} for an unusable image. */
export async function preprocessImage(
  record: ImageRecord,
  parameters: PreprocessParameters,
  limits: NiftiLimits = {},
): Promise<{ arrays: PreprocessedArrays; properties: Omit<ImageProperties, "bytes" | "sources"> }> {
  const timings: Record<string, number> = {};
  let t = performance.now();
  const lap = (name: string) => {
    const now = performance.now();
    timings[name] = (timings[name] ?? 0) + now - t;
    t = now;
  };
  const image = await readNifti(record.path, { ...limits, frame: record.frame });
  lap("read");
  timings.readFile = image.timings.readMs;
  timings.decompress = image.timings.decompressMs;
  timings.decode = image.timings.decodeMs;
  const warnings: string[] = [];
  const loadMask = async (path: string | undefined, what: string) => {
    if (!path) return undefined;
    try {
      const mask = await readNiftiMask(path, { ...limits, frame: undefined });
      if (mask.shape.join() !== image.shape.join()) {
        throw new DataFileError(
          path,
          `shape ${mask.shape.join("×")} differs from the image's ${image.shape.join("×")}`,
        );
      }
      return mask.data;
    } catch (error) {
      warnings.push(`${what} ignored: ${asDataFileError(path, error).message}`);
      return undefined;
    }
  };
  let anatomy = await loadMask(record.anatomyMask, "anatomy mask");
  let anonymization = await loadMask(record.anonymizationMask, "anonymization mask");
  lap("readMasks");

  const plan = planCanonical(image.shape, image.affine);
  let data = applyReorientation(image.data, image.shape, plan);
  anatomy = anatomy && applyReorientation(anatomy, image.shape, plan);
  anonymization = anonymization && applyReorientation(anonymization, image.shape, plan);
  lap("reorient");

  const box = nonzeroBox(data, plan.shape);
  if (!box) throw new DataFileError(record.path, "image is all zeros (nothing to crop to)");
  const cropShape = boxSize(box);
  data = cropToBox(data, plan.shape, box);
  anatomy = anatomy && cropToBox(anatomy, plan.shape, box);
  anonymization = anonymization && cropToBox(anonymization, plan.shape, box);
  const cropAffine = plan.affine.slice();
  for (let r = 0; r < 3; r++) {
    cropAffine[r * 4 + 3] += plan.affine[r * 4] * box.start[2] + plan.affine[r * 4 + 1] * box.start[1] +
      plan.affine[r * 4 + 2] * box.start[0];
  }
  lap("crop");

  const normalization = zscoreInPlace(data);
  lap("normalize");

  let final: Geometry = { shape: cropShape, spacing: plan.spacing, affine: cropAffine };
  if (parameters.targetSpacing) {
    const shape = resampledShape(cropShape, plan.spacing, parameters.targetSpacing);
    if (shape.some((n, i) => n !== cropShape[i])) {
      data = resampleArray(
        data,
        cropShape,
        shape,
        axisOrders(plan.spacing, "cubic", parameters.anisotropyThreshold),
      );
      anatomy = anatomy && resampleMask(anatomy, cropShape, shape);
      anonymization = anonymization && resampleMask(anonymization, cropShape, shape);
    }
    final = {
      shape,
      spacing: plan.spacing.map((s, i) => (s * cropShape[i]) / shape[i]) as Shape3,
      affine: resampledAffine(cropAffine, cropShape, shape),
    };
  }
  lap("resample");

  const anatomyLocations = anatomy &&
    sampleLocations(anatomy, final.shape, parameters.maxLocations, record.id);
  lap("locations");
  const arrays: PreprocessedArrays = { image: data, anatomy, anonymization, anatomyLocations };
  const { path: _p, anatomyMask: _a, anonymizationMask: _n, voxssl: _v, ...imageFacts } = record;
  return {
    arrays,
    properties: {
      producer: PRODUCER,
      parameters,
      image: imageFacts,
      original: {
        shape: image.shape,
        spacing: image.spacing,
        affine: image.affine,
        orientation: orientationOf(image.affine),
        datatype: image.header.datatype,
      },
      reoriented: { shape: plan.shape, spacing: plan.spacing, affine: plan.affine },
      crop: box,
      normalization,
      final,
      arrays: Object.entries({ image: data, anatomy, anonymization, anatomy_locations: anatomyLocations })
        .filter(([, v]) => v).map(([k]) => k),
      anatomyVoxels: anatomy ? anatomy.reduce((s, v) => s + v, 0) : undefined,
      warnings,
      timingsMs: timings,
    },
  };
}

/** Paths of an image's cache entry. */
export function cachePaths(
  cacheDir: string,
  record: Parameters<typeof cacheKey>[0],
): { data: string; properties: string; key: string } {
  const key = cacheKey(record);
  return { key, data: join(cacheDir, `${key}.vxc`), properties: join(cacheDir, `${key}.json`) };
}

/** Stamps of the image and its masks, as recorded in the properties. */
export async function sourceStamps(record: ImageRecord): Promise<ImageProperties["sources"]> {
  const sources: ImageProperties["sources"] = { image: await stamp(record.path) };
  if (record.anatomyMask) sources.anatomyMask = await stamp(record.anatomyMask).catch(() => undefined);
  if (record.anonymizationMask) {
    sources.anonymizationMask = await stamp(record.anonymizationMask).catch(() => undefined);
  }
  return sources;
}

/**
 * Preprocesses one image and writes its cache entry: the `.vxc` first, the properties JSON last (its
 * presence marks the entry complete, so an interrupted run redoes only unfinished images).
 */
export async function preprocessToCache(
  record: ImageRecord,
  cacheDir: string,
  parameters: PreprocessParameters,
  limits: NiftiLimits = {},
): Promise<ImageProperties> {
  try {
    const sources = await sourceStamps(record);
    const { arrays, properties } = await preprocessImage(record, parameters, limits);
    const paths = cachePaths(cacheDir, record);
    await Deno.mkdir(dirname(paths.data), { recursive: true });
    const t = performance.now();
    const stored: Record<
      string,
      { data: Float32Array | Uint8Array | Int32Array; shape: number[]; chunk?: Shape3 }
    > = {
      image: { data: arrays.image, shape: properties.final.shape, chunk: parameters.chunk },
    };
    if (arrays.anatomy) {
      stored.anatomy = { data: arrays.anatomy, shape: properties.final.shape, chunk: parameters.chunk };
    }
    if (arrays.anonymization) {
      stored.anonymization = {
        data: arrays.anonymization,
        shape: properties.final.shape,
        chunk: parameters.chunk,
      };
    }
    if (arrays.anatomyLocations) {
      stored.anatomy_locations = {
        data: arrays.anatomyLocations,
        shape: [arrays.anatomyLocations.length / 3, 3],
      };
    }
    const bytes = await writeCacheFile(paths.data, stored, { level: parameters.compressionLevel });
    properties.timingsMs.write = performance.now() - t;
    const full: ImageProperties = { ...properties, sources, bytes };
    const tmp = `${paths.properties}.${crypto.randomUUID().slice(0, 8)}.tmp`;
    await Deno.writeTextFile(tmp, JSON.stringify(full, null, 1));
    await Deno.rename(tmp, paths.properties);
    return full;
  } catch (error) {
    throw asDataFileError(record.path, error);
  }
}
