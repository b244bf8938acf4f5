/**
 * The benchmark (`voxssl benchmark`): spec, grid, resumable orchestration over an injected cell runner,
 * leaderboard with bootstrap confidence intervals, result tables and SVG plots.
 *
 * @module
 */
export * from "./bootstrap.ts";
export * from "./classification_auroc.ts";
export * from "./classification_leaderboard.ts";
export * from "./grid.ts";
export * from "./leaderboard.ts";
export * from "./plots.ts";
export * from "./results_store.ts";
export * from "./results_tables.ts";
export * from "./run_benchmark.ts";
export * from "./spec.ts";
