/**
 * Cutting patches: choose the patch position, read the (larger, when rotating) region, apply the spatial
 * transform, the intensity augmentations, mirroring and quarter turns. Every random choice comes from the
 * sample's generator and its forks, so a patch is a pure function of (seed, step, index within the batch,
 * image), whichever worker computes it. The SSL method's data hook builds on these (sample_context.ts).
 *
 * @module
 */
import type { Augmentation } from "./augment/config.ts";
import {
  applyAugmentation,
  type AugmentPlan,
  type AugmentTimings,
  planAugmentation,
} from "./augment/pipeline.ts";
import { sourceBox, spatialMatrix, type SpatialPadding, warpPatch } from "./augment/spatial.ts";
import type { Rng } from "./rng.ts";
import { choosePatchStart } from "./sampling.ts";
import type { LoadTimings, VolumeArray, VolumeReader } from "./sources.ts";
import type { Shape3 } from "./volume.ts";

/** Masks a batch can carry: the anatomy (foreground) mask and the deface (anonymisation) mask. */
export type MaskName = "anatomy" | "deface";

const MASK_ARRAY: Record<MaskName, VolumeArray> = { anatomy: "anatomy", deface: "anonymization" };

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
  /** Image interpolation of the spatial transform (default linear; nnssl's is cubic). */
  interpolation?: "linear" | "cubic";
  /**
   * What the patch reads outside the volume (default "zero"): zeros, or the nearest edge voxel ("border"),
   * with or without a spatial transform; masks alike.
   */
  padding?: SpatialPadding;
  /**
   * Ship raw crops ({@link cutRawCrop}) instead of augmented patches: the augmentation then runs on the
   * GPU, batched (core/train/gpu_augment.ts). Applies to the standard patch of methods without a data hook.
   */
  rawCrops?: boolean;
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
  /** The method's data hook (`sample`), excluding the reads and cuts it asked for. */
  hookMs: number;
  /** Whole sample, in the worker. */
  totalMs: number;
}

/** A zeroed timing record. */
export function emptyTimings(): SampleTimings {
  return { readMs: 0, decompressMs: 0, preprocessMs: 0, cropMs: 0, augmentMs: 0, hookMs: 0, totalMs: 0 };
}

/** An augmented patch and its masks. */
export interface CutSample {
  /** The augmented patch `[D, H, W]`. */
  image: Float32Array;
  /** Where the patch starts in the volume (before the spatial transform; may be negative). */
  start: Shape3;
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
 * Cuts and augments one patch from `reader` with the sample's generator: the start from `rng.fork("crop")`
 * (anatomy-centred with `spec.anatomyProbability`), the augmentation plan from `rng.fork("augment")`, the
 * noise values from `rng.fork("noise")`. Reading time accumulates in `load`.
 */
export function cutSample(
  reader: VolumeReader,
  rng: Rng,
  spec: SampleSpec,
  load: LoadTimings,
  augment?: AugmentTimings,
): CutSample {
  const { start, centred } = choosePatchStart(reader.shape, spec.patch, rng.fork("crop"), {
    anatomyProbability: spec.anatomyProbability,
    locations: reader.locations,
  });
  const plan = planAugmentation(spec.augmentation, rng.fork("augment"));
  const cut = cutRegion(
    reader,
    start,
    spec.patch,
    plan,
    spec.masks,
    rng.fork("noise"),
    load,
    augment,
    spec.interpolation,
    spec.padding,
  );
  return { ...cut, centred };
}

/**
 * A sample as the GPU augmentation takes it: the source region its spatial transform reads and the
 * sample's augmentation decisions (drawn on the host), nothing applied yet.
 */
export interface RawCrop {
  /** The source region `[D, H, W]`: the transform's source box, clipped to the volume. */
  image: Float32Array;
  /** Shape of `image` and of every mask. */
  shape: Shape3;
  /** Continuous coordinates of the patch centre in the region. */
  centre: number[];
  /** The requested masks over the same region, in the order asked for. */
  masks: Uint8Array[];
  /** The sample's augmentation decisions. */
  plan: AugmentPlan;
}

/** Whether a box of `size` at `start` reaches outside a volume of `shape`. */
function sticksOut(start: readonly number[], size: Shape3, shape: Shape3): boolean {
  return start.some((s, i) => s < 0 || s + size[i] > shape[i]);
}

/**
 * Reads what the spatial transform of a patch of `size` at `start` needs: with a spatial transform, the
 * enlarged source box (`margin` voxels around it: 1 for linear, 2 for cubic) clipped to the volume,
 * since the warp treats everything outside as zero (or as the edge with "border" padding); without one,
 * the patch box itself (zero outside), or with "border" padding, where it reaches outside the volume,
 * the part inside (the identity warp then repeats the edge).
 */
export function readSourceRegion(
  reader: VolumeReader,
  start: readonly number[],
  size: Shape3,
  plan: AugmentPlan,
  maskNames: readonly MaskName[],
  load: LoadTimings,
  margin = 1,
  padding: SpatialPadding = "zero",
): Omit<RawCrop, "plan"> {
  if (!plan.spatial && padding === "border" && sticksOut(start, size, reader.shape)) {
    const lo = start.map((s, i) => Math.min(Math.max(0, s), reader.shape[i] - 1));
    const hi = start.map((s, i) => Math.min(reader.shape[i], s + size[i]));
    const shape = hi.map((h, i) => Math.max(1, h - lo[i])) as Shape3;
    return {
      image: reader.readRegion("image", lo, shape, load) as Float32Array,
      shape,
      centre: start.map((s, i) => s - lo[i] + (size[i] - 1) / 2),
      masks: maskNames.map((m) => reader.readRegion(MASK_ARRAY[m], lo, shape, load) as Uint8Array),
    };
  }
  if (!plan.spatial) {
    return {
      image: reader.readRegion("image", start, size, load) as Float32Array,
      shape: [...size],
      centre: size.map((n) => (n - 1) / 2),
      masks: maskNames.map((m) => reader.readRegion(MASK_ARRAY[m], start, size, load) as Uint8Array),
    };
  }
  const centre = start.map((s, i) => s + (size[i] - 1) / 2);
  const box = sourceBox(spatialMatrix(plan.spatial), size, centre, margin);
  const lo = box.start.map((s, i) => Math.min(Math.max(0, s), reader.shape[i] - 1));
  const hi = box.start.map((s, i) => Math.min(reader.shape[i], s + box.size[i]));
  const shape = hi.map((h, i) => Math.max(1, h - lo[i])) as Shape3;
  return {
    image: reader.readRegion("image", lo, shape, load) as Float32Array,
    shape,
    centre: centre.map((c, i) => c - lo[i]),
    masks: maskNames.map((m) => reader.readRegion(MASK_ARRAY[m], lo, shape, load) as Uint8Array),
  };
}

/**
 * Cuts one raw crop for the GPU augmentation: the start and the plan come from the same forks as in
 * {@link cutSample}, so both paths see the same draws; nothing is applied.
 */
export function cutRawCrop(
  reader: VolumeReader,
  rng: Rng,
  spec: SampleSpec,
  load: LoadTimings,
): RawCrop & { start: Shape3; centred: boolean } {
  const { start, centred } = choosePatchStart(reader.shape, spec.patch, rng.fork("crop"), {
    anatomyProbability: spec.anatomyProbability,
    locations: reader.locations,
  });
  const plan = planAugmentation(spec.augmentation, rng.fork("augment"));
  const margin = spec.interpolation === "cubic" ? 2 : 1;
  const region = readSourceRegion(reader, start, spec.patch, plan, spec.masks, load, margin, spec.padding);
  return { ...region, plan, start: [start[0], start[1], start[2]], centred };
}

/**
 * Cuts the region of `size` at `start` (zero outside the volume, or the nearest edge voxel with `padding`
 * "border") and applies `plan`: the spatial transform while reading (around the region's centre; only the
 * part of the enlarged source box inside the volume is read), then intensities, mirroring and turns.
 * `noise` supplies the noise values; `interpolation` is the image's (default linear).
 */
export function cutRegion(
  reader: VolumeReader,
  start: readonly number[],
  size: Shape3,
  plan: AugmentPlan,
  maskNames: readonly MaskName[],
  noise: Rng,
  load: LoadTimings,
  augment?: AugmentTimings,
  interpolation: "linear" | "cubic" = "linear",
  padding: SpatialPadding = "zero",
): Omit<CutSample, "centred"> {
  let image: Float32Array;
  let maskArrays: Uint8Array[];
  let augmentMs = 0;
  if (plan.spatial || (padding === "border" && sticksOut(start, size, reader.shape))) {
    const margin = interpolation === "cubic" ? 2 : 1;
    const region = readSourceRegion(reader, start, size, plan, maskNames, load, margin, padding);
    const matrix = spatialMatrix(plan.spatial ?? { angles: [0, 0, 0], scale: 1 });
    // without a spatial transform the identity warp only repeats the edge: nearest is an exact copy
    const order = plan.spatial ? interpolation : "nearest";
    const t = performance.now();
    image = warpPatch(region.image, region.shape, region.centre, matrix, size, order, padding);
    maskArrays = region.masks.map((m) =>
      warpPatch(m, region.shape, region.centre, matrix, size, "nearest", padding)
    );
    augmentMs += performance.now() - t;
  } else {
    image = reader.readRegion("image", start, size, load) as Float32Array;
    maskArrays = maskNames.map((m) => reader.readRegion(MASK_ARRAY[m], start, size, load) as Uint8Array);
  }
  const t = performance.now();
  image = applyAugmentation(image, size, plan, noise, maskArrays, augment);
  augmentMs += performance.now() - t;
  const masks: Partial<Record<MaskName, Uint8Array>> = {};
  maskNames.forEach((m, k) => (masks[m] = maskArrays[k]));
  return {
    image,
    masks,
    start: [start[0], start[1], start[2]],
    spatial: plan.spatial !== undefined,
    augmentMs,
  };
}
