/** Kernel launchers: WGSL sources (or generators) and the code that binds and dispatches them. */
export * from "./attention.ts";
export * from "./copy.ts";
export * from "./elementwise.ts";
export * from "./head_chunks.ts";
export * from "./matmul.ts";
export * from "./philox.ts";
export * from "./reduce.ts";
export * from "./rope.ts";
export * from "./softmax.ts";
export * from "./wgsl.ts";
