/** Optimizers (fused SGD and AdamW over parameter arenas), schedules, clipping and loss scaling. */
export * from "./optimizer.ts";
export * from "./schedule.ts";
