/** Downstream evaluation: fine-tuning a pretrained encoder for segmentation (voxssl finetune). */
export * from "./adapt.ts";
export * from "./loss.ts";
export * from "./splits.ts";
