/**
 * Where the Trainer gets its batches: anything that gives the batch of a step. The data pipeline's
 * patch loader (worker pool, prefetch) implements it; tests use small in-process sources. The batch of
 * a step must be a pure function of (seed, step) so that resume reproduces the run.
 */
import type { SampleArray } from "../data/mod.ts";
import type { RawCrop } from "../data/sample.ts";
import type { GpuAugmentOptions } from "./gpu_augment.ts";

/** Raw crops to augment on the GPU when the batch is uploaded (core/train/gpu_augment.ts). */
export interface RawBatch {
  /** One raw crop per sample, with its augmentation plan. */
  crops: RawCrop[];
  /** Batch name of the augmented image (usually "image"). */
  imageName: string;
  /** Batch names of the crops' masks, in their order (e.g. "deface"; undefined: not in the batch). */
  maskNames: (string | undefined)[];
  /** Patch size, interpolation, padding and the Philox keys (seed, step) of the noise. */
  augment: GpuAugmentOptions;
}

/** A batch on the host: named arrays stacked along the batch (`shape[0]` = B). */
export interface HostBatch {
  /** Every array of the batch, `[B, ...]`, in the dtype it will have on the GPU. */
  arrays: Record<string, SampleArray>;
  /** Where each sample came from (file paths), for logs. */
  sources?: string[];
  /** Raw crops augmented on the GPU into `image` and the masks when uploaded. */
  raw?: RawBatch;
}

/** A deterministic stream of batches. */
export interface BatchSource {
  /** The batch of `step`. */
  batch(step: number): Promise<HostBatch>;
  /** Releases workers and files. */
  close(): Promise<void>;
}
