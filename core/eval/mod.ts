/**
 * voxssl's downstream half (docs/downstream.md): reading nnU-Net raw datasets, preprocessing them like
 * the pretraining plan into the chunked cache, sliding-window inference back to the input's grid,
 * segmentation metrics, and segmentation fine-tuning of a pretrained encoder (docs/finetune.md). Sits
 * above core/train; imports core/data for NIfTI, resampling and the cache.
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
export * from "./adapt.ts";
export * from "./loss.ts";
export * from "./deep_supervision.ts";
export * from "./splits.ts";
export * from "./schedule.ts";
export * from "./seg_batches.ts";
export * from "./segmentation_method.ts";
export * from "./test_score.ts";
export * from "./finetuned_checkpoint.ts";
export * from "./finetune.ts";
export * from "./load_cases.ts";
export * from "./classification/mod.ts";
