/**
 * voxssl's data pipeline (placeholder barrel, completed below as modules land).
 *
 * @module
 */
export * from "./errors.ts";
export * from "./rng.ts";
export * from "./volume.ts";
export * from "./gzip.ts";
export * from "./nifti_read.ts";
export * from "./nifti_write.ts";
export * from "./orientation.ts";
export * from "./resample.ts";
export * from "./crop.ts";
export * from "./normalize.ts";
export * from "./synthetic.ts";
export * from "./synthetic_dataset.ts";
export * from "./csv.ts";
export * from "./dataset_index.ts";
export * from "./index_build.ts";
export * from "./openmind.ts";
export * from "./cache_format.ts";
export * from "./cache_dataset.ts";
export * from "./preprocess.ts";
export * from "./preprocess_dataset.ts";
export * from "./worker_pool.ts";
export * from "./version.ts";
