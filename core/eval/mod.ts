/**
 * voxssl's downstream half (docs/downstream.md): reading nnU-Net raw datasets, preprocessing them like
 * the pretraining plan into the chunked cache, sliding-window inference back to the input's grid, and
 * segmentation metrics. Sits above core/train; imports core/data for NIfTI, resampling and the cache.
 *
 * @module
 */
export * from "./nnunet_dataset.ts";
export * from "./target_spacing.ts";
export * from "./case_preprocess.ts";
export * from "./downstream_cache.ts";
export * from "./metrics.ts";
export * from "./evaluate.ts";
export * from "./sliding_window.ts";
export * from "./prediction.ts";
export * from "./network_predictor.ts";
export * from "./checkpoint_network.ts";
