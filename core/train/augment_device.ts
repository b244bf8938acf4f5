/**
 * Where a run's standard-patch augmentation runs: on the GPU (the loader ships raw crops; see
 * gpu_augment.ts) or in the CPU workers. "auto" takes the GPU when it can: a GPU is at hand, the method
 * cuts the standard patch (no data hook, or a hook that declares `gpuAugmentation` or
 * `gpuViewAugmentation`; other hooks run their per-crop pipelines on the CPU), there is augmentation to
 * move (the run's, or the method's own per-crop pipelines), masks fill whole u32 words, and one
 * sample's patch and the worst-case source region of one plane of a rotated and zoomed-out patch each fit
 * the adapter's `maxStorageBufferBindingSize` (larger batches and regions are split: gpu_augment.ts).
 *
 * @module
 */
import { resolveAugmentation } from "../data/augment/config.ts";
import { sourceBox, spatialMatrix } from "../data/augment/spatial.ts";
import type { Shape3 } from "../data/volume.ts";
import type { Gpu } from "../gpu/mod.ts";

/** The setting: "auto" (default), "gpu" or "cpu". */
export type AugmentationDeviceSetting = "auto" | "gpu" | "cpu";

/** What {@link chooseAugmentationDevice} needs to know about the run. */
export interface AugmentationDeviceQuery {
  /** The configured setting. */
  setting: AugmentationDeviceSetting;
  /** The augmentation preset. */
  augmentation: "none" | "nnssl-mae" | "nnunet";
  /** Patch size and batch size. */
  patch: Shape3;
  batch: number;
  /** Whether masks come with the batch. */
  masks: boolean;
  /** The method's name, and whether it makes its own samples (a data hook not declaring gpuAugmentation). */
  method: string;
  hasSampleHook: boolean;
  /** Whether the method's hook augments its own crops and lets the GPU do it (`gpuViewAugmentation`). */
  viewAugmentation?: boolean;
  /** Image interpolation ("cubic" reads a wider source box). */
  interpolation: "linear" | "cubic";
}

/** Bytes of the largest source region a patch can read under `augmentation` (corners of the ranges). */
export function worstRegionBytes(
  augmentation: AugmentationDeviceQuery["augmentation"],
  patch: Shape3,
  margin: number,
): number {
  const config = resolveAugmentation(augmentation);
  const deg = Math.PI / 180;
  const scale = config.scale.p > 0 ? config.scale.range[1] : 1;
  const angles = config.rotation.p > 0 ? config.rotation.degrees.map((d) => d * deg) : [0, 0];
  let worst = 0;
  // the box is largest at the extremes of the angle range (extents are sums of |cos|, |sin| terms)
  const samples = [angles[0], 0, angles[1], Math.max(Math.abs(angles[0]), Math.abs(angles[1])) / 2];
  for (const a of samples) {
    for (const b of samples) {
      for (const c of samples) {
        const box = sourceBox(spatialMatrix({ angles: [a, b, c], scale }), patch, [0, 0, 0], margin);
        worst = Math.max(worst, box.size[0] * box.size[1] * box.size[2] * 4);
      }
    }
  }
  return worst;
}

/** Decides the device; throws a user error when "gpu" is asked for and cannot be had. */
export function chooseAugmentationDevice(
  q: AugmentationDeviceQuery,
  gpu: Gpu | undefined,
): { device: "gpu" | "cpu"; reason: string } {
  if (q.setting === "cpu") return { device: "cpu", reason: "augmentationDevice is cpu" };
  const n = q.patch[0] * q.patch[1] * q.patch[2];
  const margin = q.interpolation === "cubic" ? 2 : 1;
  // the batch is bound one sample at a time where it must be, and regions are resampled by slabs of planes:
  // one sample's patch (plus the offset alignment) and the source of one plane must fit a binding
  const limit = gpu?.limits.maxStorageBufferBindingSize ?? 0;
  const sample = n * 4 + (gpu?.limits.minStorageBufferOffsetAlignment ?? 0);
  // the thinnest slab: one plane, or with masks the fewest planes of a multiple of 4 voxels
  const area = q.patch[1] * q.patch[2];
  const planes = !q.masks || area % 4 === 0 ? 1 : area % 2 === 0 ? 2 : 4;
  const plane = worstRegionBytes(
    q.augmentation,
    [Math.min(planes, q.patch[0]), q.patch[1], q.patch[2]],
    margin,
  );
  const obstacle = q.hasSampleHook
    ? `method ${q.method} makes its own samples (a sample() hook), whose pipelines run on the CPU`
    : !gpu
    ? "no GPU is at hand where the data sources are opened"
    : q.masks && n % 4 !== 0
    ? `masks on the GPU need a patch of a multiple of 4 voxels, got [${q.patch}]`
    : sample > limit
    ? `one sample's patch needs a binding of ${sample} bytes, above the adapter's maxStorageBufferBindingSize (${limit})`
    : plane > limit
    ? `${planes} plane(s) of the patch read a source region of ${plane} bytes, above the adapter's maxStorageBufferBindingSize (${limit})`
    : undefined;
  if (q.setting === "gpu") {
    if (obstacle) throw new Error(`augmentationDevice "gpu": ${obstacle}; use "cpu" or "auto"`);
    return { device: "gpu", reason: "augmentationDevice is gpu" };
  }
  if (obstacle) return { device: "cpu", reason: obstacle };
  if (q.augmentation === "none" && !q.viewAugmentation) {
    return { device: "cpu", reason: "no augmentation to move" };
  }
  if (q.augmentation === "none") {
    return { device: "gpu", reason: `method ${q.method}'s per-crop pipelines run there` };
  }
  return { device: "gpu", reason: "the adapter has room" };
}
