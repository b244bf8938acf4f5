/**
 * Where the Trainer gets its batches: anything that gives the batch of a step. The data pipeline's
 * patch loader (worker pool, prefetch) implements it; tests use small in-process sources. The batch of
 * a step must be a pure function of (seed, step) so that resume reproduces the run.
 */

/** A batch on the host: channel-first images and optional masks and method arrays. */
export interface HostBatch {
  /** B·C·D·H·W values. */
  image: Float32Array;
  shape: [number, number, number, number, number];
  /** Per-voxel masks, B·D·H·W values each (0/1). */
  masks?: Record<string, Uint8Array | Float32Array>;
  /** Method arrays made by `prepare`, batched: shape starts with B. */
  extra?: Record<string, { data: Float32Array | Uint8Array; shape: number[] }>;
  /** Where each sample came from (file paths), for logs. */
  sources?: string[];
}

/** A deterministic stream of batches. */
export interface BatchSource {
  batch(step: number): Promise<HostBatch>;
  close(): Promise<void>;
}
