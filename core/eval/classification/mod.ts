/**
 * Classification fine-tuning (docs/finetune.md): the pooled-encoder head, label-smoothed
 * cross-entropy, metrics (accuracy, balanced accuracy, AUROC), the CSV dataset format, its
 * preprocessing into the downstream cache, stratified splits, batches, the built-in method, the
 * training entry and test-set scoring.
 *
 * @module
 */
export * from "./dataset_csv.ts";
export * from "./head.ts";
export * from "./loss.ts";
export * from "./metrics.ts";
export * from "./split.ts";
export * from "./batches.ts";
export * from "./data.ts";
export * from "./method.ts";
export * from "./score.ts";
export * from "./finetune.ts";
