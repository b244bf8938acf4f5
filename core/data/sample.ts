/**
 * One training sample: choose the patch position, read the (larger, when rotating) region, apply the
 * spatial transform, the intensity augmentations and mirroring, then the SSL method's `prepare`. Every
 * random choice comes from `createRng(seed, step, index)` and its forks, so a sample is a pure function of
 * (seed, step, index within the batch, image) — whichever worker computes it.
 *
 * @module
 */
import type { Augmentation } from "./augment/config.ts";
import { applyAugmentation, type AugmentTimings, planAugmentation } from "./augment/pipeline.ts";
import { sourceBox, spatialMatrix, warpPatch } from "./augment/spatial.ts";
import type { Rng } from "./rng.ts";
import { choosePatchStart } from "./sampling.ts";
import type { LoadTimings, VolumeArray, VolumeReader } from "./sources.ts";
import type { Shape3 } from "./volume.ts";

/** Masks a batch can carry: the anatomy (foreground) mask and the deface (anonymisation) mask. */
export type MaskName = "anatomy" | "deface";

const MASK_ARRAY: Record<MaskName, VolumeArray> = { anatomy: "anatomy", deface: "anonymization" };

/** Typed arrays a `prepare` function may return. */
export type ExtraArray =
  | Float32Array
  | Uint8Array
  | Int32Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Float64Array
  | Int8Array;

/** What `prepare` sees: one augmented patch (channel-first, C = 1) and its masks. */
export interface PrepareSample {
  /** The augmented patch, channel-first (C = 1); `prepare` may change it in place or replace it. */
  image: Float32Array;
  /** `[C, D, H, W]`. */
  shape: [number, number, number, number];
  /** The requested masks, same layout as the image (C = 1). */
  masks: Partial<Record<MaskName, Uint8Array>>;
  /** Image id and path (or synthetic label). */
  id: string;
  /** File path (or synthetic label) of the image. */
  source: string;
}

/** What `prepare` receives besides the sample. */
export interface PrepareContext {
  /** The sample's own generator (a fork of the sample's key): use it for every random choice. */
  rng: Rng;
  /** The method's config (`prepareConfig` of the loader). */
  config: unknown;
  /** The loader's seed. */
  seed: number;
  /** The step the sample belongs to. */
  step: number;
  /** Index of the sample in its batch. */
  index: number;
}

/**
 * An SSL method's data-side hook, run in the loader's workers after augmentation: it may modify
 * `sample.image` (and masks) in place and returns extra per-sample arrays (masks, targets, views, crop
 * grids), which the loader stacks along the batch. It must be pure in (sample, rng, config).
 */
export type PrepareFunction = (
  sample: PrepareSample,
  context: PrepareContext,
) => Record<string, ExtraArray> | void | Promise<Record<string, ExtraArray> | void>;

/** How samples are cut. */
export interface SampleSpec {
  /** Patch size `[D, H, W]`. */
  patch: Shape3;
  /** Resolved augmentation config. */
  augmentation: Augmentation;
  /** Probability of centring the patch on an anatomy voxel (needs an anatomy mask; nnssl uses 0.33). */
  anatomyProbability: number;
  /** Masks to cut along with the image. */
  masks: MaskName[];
}

/** Milliseconds per stage for one sample (summed over a batch by the loader). */
export interface SampleTimings {
  /** Reading files (raw NIfTI, cache chunks). */
  readMs: number;
  /** gunzip of raw files or zstd of cache chunks. */
  decompressMs: number;
  /** Decoding and on-the-fly preprocessing (raw NIfTI and synthetic sources). */
  preprocessMs: number;
  /** Copying the region out of the volume or its chunks. */
  cropMs: number;
  /** Spatial transform, intensity augmentations and mirroring. */
  augmentMs: number;
  /** The method's `prepare`. */
  prepareMs: number;
  /** Whole sample, in the worker. */
  totalMs: number;
}

/** A zeroed timing record. */
export function emptyTimings(): SampleTimings {
  return { readMs: 0, decompressMs: 0, preprocessMs: 0, cropMs: 0, augmentMs: 0, prepareMs: 0, totalMs: 0 };
}

/** Augmented patch and masks of one sample, before `prepare`. */
export interface CutSample {
  /** The augmented patch `[D, H, W]`. */
  image: Float32Array;
  /** The requested masks, transformed like the image. */
  masks: Partial<Record<MaskName, Uint8Array>>;
  /** Whether the patch was centred on an anatomy voxel, and whether a spatial transform ran. */
  centred: boolean;
  /** Whether a spatial transform ran. */
  spatial: boolean;
  /** Milliseconds spent in the spatial transform, intensity augmentations and mirroring. */
  augmentMs: number;
}

/**
 * Cuts and augments one patch from `reader` with the sample's generator. Reading time accumulates in
 * `load` (file reads, decompression, region copies); augmentation time is returned.
 */
export function cutSample(
  reader: VolumeReader,
  rng: Rng,
  spec: SampleSpec,
  load: LoadTimings,
  augment?: AugmentTimings,
): CutSample {
  const { patch } = spec;
  const { start, centred } = choosePatchStart(reader.shape, patch, rng.fork("crop"), {
    anatomyProbability: spec.anatomyProbability,
    locations: reader.locations,
  });
  const plan = planAugmentation(spec.augmentation, rng.fork("augment"));
  let image: Float32Array;
  const masks: Partial<Record<MaskName, Uint8Array>> = {};
  let augmentMs = 0;
  if (plan.spatial) {
    // read the box the rotated/scaled patch samples from (larger than the patch), then warp it
    const centre = start.map((s, i) => s + (patch[i] - 1) / 2);
    const matrix = spatialMatrix(plan.spatial);
    const box = sourceBox(matrix, patch, centre);
    // only the part inside the volume is read: the warp treats everything outside as zero
    const lo = box.start.map((s, i) => Math.min(Math.max(0, s), reader.shape[i] - 1));
    const hi = box.start.map((s, i) => Math.min(reader.shape[i], s + box.size[i]));
    const size = hi.map((h, i) => Math.max(1, h - lo[i])) as Shape3;
    const local = centre.map((c, i) => c - lo[i]);
    const region = reader.readRegion("image", lo, size, load) as Float32Array;
    const regionMasks = spec.masks.map((m) => reader.readRegion(MASK_ARRAY[m], lo, size, load) as Uint8Array);
    const t = performance.now();
    image = warpPatch(region, size, local, matrix, patch, "linear");
    spec.masks.forEach((
      m,
      k,
    ) => (masks[m] = warpPatch(regionMasks[k], size, local, matrix, patch, "nearest")));
    augmentMs += performance.now() - t;
  } else {
    image = reader.readRegion("image", start, patch, load) as Float32Array;
    for (const m of spec.masks) masks[m] = reader.readRegion(MASK_ARRAY[m], start, patch, load) as Uint8Array;
  }
  const t = performance.now();
  image = applyAugmentation(image, patch, plan, rng.fork("noise"), Object.values(masks), augment);
  augmentMs += performance.now() - t;
  return { image, masks, centred, spatial: plan.spatial !== undefined, augmentMs };
}
