/** The Trainer, run configuration, checkpoints and run records. */
export * from "./accumulator.ts";
export * from "./batch_source.ts";
export * from "./checkpoint.ts";
export * from "./config.ts";
export * from "./data_sources.ts";
export * from "./gpu_batch.ts";
export * from "./metrics.ts";
export * from "./parameter_grouping.ts";
export * from "./run_model.ts";
export * from "./health.ts";
export * from "./run_errors.ts";
export * from "./run_folder.ts";
export * from "./stop_signals.ts";
export * from "./trainer.ts";
