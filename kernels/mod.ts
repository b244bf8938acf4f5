/** Kernel launchers: WGSL sources (or generators) and the code that binds and dispatches them. */
export * from "./copy.ts";
export * from "./elementwise.ts";
export * from "./matmul.ts";
export * from "./philox.ts";
export * from "./reduce.ts";
export * from "./softmax.ts";
export * from "./wgsl.ts";
export * from "./chunked.ts";
export * from "./norm.ts";
export * from "./activation.ts";
export * from "./pool.ts";
export * from "./resample.ts";
export * from "./loss.ts";
