/**
 * The setup the GPU augmentation tests share (tests/core/train/gpu_augment_split_test.ts and
 * gpu_padding_labels_test.ts): a volume reader over arrays in memory, load timings of zero, and a batch of
 * raw crops augmented on the GPU and read back.
 */
import type { RawCrop } from "../../core/data/sample.ts";
import type { LoadTimings, VolumeReader } from "../../core/data/sources.ts";
import { extractBox, type Shape3 } from "../../core/data/volume.ts";
import type { Gpu } from "../../core/gpu/mod.ts";
import { augmentBatchOnGpu, type GpuAugmentOptions } from "../../core/train/gpu_augment.ts";

/** A reader of `image` and, for every mask, `mask` (u8 values of any kind), both of `shape`. */
export function arrayReader(shape: Shape3, image: Float32Array, mask: Uint8Array): VolumeReader {
  return {
    label: "random",
    shape,
    has: () => true,
    readRegion: (a, start, size) => extractBox(a === "image" ? image : mask, shape, start, size),
    bytes: 0,
    close() {},
  };
}

/** Load timings of a read that took no time. */
export const noLoadTime = (): LoadTimings => ({ readMs: 0, decompressMs: 0, copyMs: 0, preprocessMs: 0 });

/** `crops` augmented on `gpu` and read back: the image batch and its first mask, [B, …patch] each. */
export async function augmentOnGpuAndRead(
  gpu: Gpu,
  crops: readonly RawCrop[],
  options: GpuAugmentOptions,
): Promise<{ image: Float64Array; mask: Uint8Array }> {
  const out = augmentBatchOnGpu(gpu, crops, options);
  const image = await out.image.toFloat64();
  const mask = (await out.masks[0].toArray()) as Uint8Array;
  out.image.dispose();
  out.masks.forEach((t) => t.dispose());
  return { image, mask };
}
