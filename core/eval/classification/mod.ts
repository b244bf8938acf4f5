/**
 * Classification fine-tuning parts: the pooled-encoder head, label-smoothed cross-entropy, metrics
 * (accuracy, balanced accuracy, AUROC) and the CSV dataset format.
 *
 * @module
 */
export * from "./dataset_csv.ts";
export * from "./head.ts";
export * from "./loss.ts";
export * from "./metrics.ts";
