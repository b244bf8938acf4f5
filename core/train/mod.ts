/** The Trainer, run configuration, checkpoints and run records. */
export * from "./batch_source.ts";
export * from "./checkpoint.ts";
export * from "./config.ts";
export * from "./data_sources.ts";
export * from "./metrics.ts";
export * from "./stop_signals.ts";
export * from "./trainer.ts";
