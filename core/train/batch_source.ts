/**
 * Where the Trainer gets its batches: anything that gives the batch of a step. The data pipeline's
 * patch loader (worker pool, prefetch) implements it; tests use small in-process sources. The batch of
 * a step must be a pure function of (seed, step) so that resume reproduces the run.
 */
import type { SampleArray } from "../data/mod.ts";
import type { RawCrop } from "../data/sample.ts";
import type { RawView } from "../data/sample_context.ts";
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

/** A method's own crops left raw in the batch's arrays, augmented on the GPU in place when uploaded. */
export interface RawViewBatch {
  /** Per sample, its views (array, index, shape, plan, view number). */
  samples: RawView[][];
  /** The Philox keys of the noise: run seed, step, and the batch's first global sample. */
  key: { seed: number; step: number; firstSample?: number };
}

/** A batch on the host: named arrays stacked along the batch (`shape[0]` = B). */
export interface HostBatch {
  /** Every array of the batch, `[B, ...]`, in the dtype it will have on the GPU. */
  arrays: Record<string, SampleArray>;
  /** Where each sample came from (file paths), for logs. */
  sources?: string[];
  /** Raw crops augmented on the GPU into `image` and the masks when uploaded. */
  raw?: RawBatch;
  /** The method's own crops to augment on the GPU in place (core/train/gpu_augment.ts). */
  views?: RawViewBatch;
}

/** A deterministic stream of batches. */
export interface BatchSource {
  /** The batch of `step`. */
  batch(step: number): Promise<HostBatch>;
  /** Releases workers and files. */
  close(): Promise<void>;
}
