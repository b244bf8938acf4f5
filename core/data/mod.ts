/**
 * voxssl's data pipeline: NIfTI I/O, the dataset index (nnssl's `pretrain_data.json`), preprocessing
 * into a chunked cache, patch sampling, augmentation, and the background patch loader. It imports nothing
 * from the compute stack. Design, formats and the differences from nnssl: docs/data.md.
 *
 * What the trainer uses:
 *
 * ```ts
 * import { createPatchLoader } from "@voxssl/core";
 *
 * const loader = await createPatchLoader({
 *   source: { kind: "synthetic", count: 2, shape: [32, 32, 32] }, // or a cache folder, or pretrain_data.json
 *   patchSize: [16, 16, 16],
 *   batchSize: 2,
 *   seed: 1,
 *   augmentation: "nnssl-mae",   // preset or { preset, ...overrides } (resolveAugmentation)
 *   masks: ["anatomy"],
 *   workers: 0,                  // background workers (0: sample on this thread); the trainer uses several
 *   // hookModule: the method plugin's module URL: its sample(context) runs in the workers
 * });
 * const batch = await loader.batch(0); // pure function of (seed, step): resume gives the same batches
 * console.log(batch.arrays.image.shape, batch.arrays.anatomy.dtype); // [2, 1, 16, 16, 16] "u8"
 * console.log(batch.sources);          // the file (or synthetic label) of each sample
 * loader.close();
 * ```
 *
 * What an SSL plugin's data side uses: {@link SampleContext} (the volume, the run's standard patch, crops
 * of any size, a second volume, per-crop augmentation pipelines), {@link sampleArray} (typed arrays with
 * their shape), {@link Rng} (`rng.next()`, `rng.normal()`, `rng.int(n)`, `rng.fork(...)`), and the
 * augmentation building blocks (`gaussianBlur`, `rot90`, …) for method-specific views.
 *
 * Tools: `buildFolderIndex` / `buildOpenMindIndex` (what `voxssl index` runs), `preprocessDataset` (what
 * `voxssl preprocess` runs), `readNifti` / `writeNifti` (predictions and masks), `generatePhantom` /
 * `writeSyntheticDataset` (the default run's data and test fixtures).
 *
 * @module
 */

// foundations
export * from "./errors.ts";
export * from "./rng.ts";
export * from "./volume.ts";
export * from "./version.ts";

// NIfTI and geometry
export * from "./gzip.ts";
export * from "./nifti_read.ts";
export * from "./nifti_write.ts";
export * from "./orientation.ts";
export * from "./resample.ts";
export * from "./crop.ts";
export * from "./normalize.ts";

// dataset index
export * from "./csv.ts";
export * from "./dataset_index.ts";
export * from "./index_build.ts";
export * from "./openmind.ts";

// preprocessing and the cache
export * from "./cache_format.ts";
export * from "./cache_dataset.ts";
export * from "./preprocess.ts";
export * from "./preprocess_dataset.ts";

// synthetic data
export * from "./synthetic.ts";
export * from "./synthetic_dataset.ts";

// sampling and augmentation
export * from "./sampling.ts";
export * from "./augment/config.ts";
export * from "./augment/pipeline.ts";
export * from "./augment/spatial.ts";
export * from "./augment/mirror.ts";
export * from "./augment/noise.ts";
export * from "./augment/blur.ts";
export * from "./augment/intensity.ts";
export * from "./augment/lowres.ts";
export * from "./augment/rot90.ts";

// the loader
export * from "./worker_pool.ts";
export * from "./sources.ts";
export * from "./sample.ts";
export * from "./sample_array.ts";
export * from "./sample_context.ts";
export * from "./sample_runner.ts";
export * from "./loader.ts";
