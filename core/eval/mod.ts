/** Downstream evaluation: fine-tuning a pretrained encoder for segmentation (voxssl finetune). */
export * from "./adapt.ts";
export * from "./loss.ts";
export * from "./splits.ts";
export * from "./schedule.ts";
export * from "./seg_batches.ts";
export * from "./segmentation_method.ts";
export * from "./test_score.ts";
export * from "./finetuned_checkpoint.ts";
export * from "./finetune.ts";
