/** The GPU layer: device bootstrap, buffer pool, pipeline cache, command batching, timing. */
export * from "./buffer_pool.ts";
export * from "./default_gpu.ts";
export * from "./device.ts";
export * from "./dispatch_grid.ts";
export * from "./errors.ts";
export * from "./params.ts";
export * from "./memory_timeline.ts";
export * from "./op_family.ts";
export * from "./gpu_profiler.ts";
