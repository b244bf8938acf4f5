/**
 * voxssl's data pipeline: NIfTI I/O, the dataset index (nnssl's `pretrain_data.json`), preprocessing
 * into a chunked cache, patch sampling, augmentation, and the background patch loader. It imports nothing
 * from the compute stack. Design, formats and the differences from nnssl: docs/data.md.
 *
 * What the trainer uses:
 *
 * ```ts
 * import { createPatchLoader } from "./core/data/mod.ts";
 *
 * const loader = await createPatchLoader({
 *   source: "cache/",                  // cache folder | pretrain_data.json | { kind: "synthetic", count, shape }
 *   patchSize: [160, 160, 160],
 *   batchSize: 2,
 *   seed: 1,
 *   augmentation: "nnssl-mae",         // preset or { preset, ...overrides } (resolveAugmentation)
 *   masks: ["anatomy", "deface"],
 *   workers: 8,
 *   prefetch: 4,
 *   prepareModule: pluginUrl,          // module exporting prepare(sample, { rng, config }), run in the workers
 *   prepareConfig: { maskRatio: 0.75 },
 * });
 * const batch = await loader.batch(step); // pure function of (seed, step): resume gives the same batches
 * batch.image;   // Float32Array, B·C·D·H·W, channel-first, C = 1
 * batch.shape;   // [B, C, D, H, W]
 * batch.masks;   // { anatomy?: Uint8Array, deface?: Uint8Array }, B·1·D·H·W each
 * batch.extra;   // prepare()'s typed arrays stacked along the batch (extraShapes gives [B, length])
 * batch.sources; // the file (or synthetic label) of each sample
 * loader.close();
 * ```
 *
 * What an SSL plugin's data side uses: {@link PrepareFunction} (`prepare(sample, { rng, config, seed,
 * step, index })`, pure, run inside the workers), {@link Rng} (`rng.next()`, `rng.normal()`,
 * `rng.int(n)`, `rng.fork(...)`), and the augmentation building blocks (`gaussianBlur`, `warpPatch`, …)
 * for method-specific views.
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

// the loader
export * from "./worker_pool.ts";
export * from "./sources.ts";
export * from "./sample.ts";
export * from "./sample_runner.ts";
export * from "./loader.ts";
