/** Multi-process training on MPI: launch detection, gradient averaging, stop agreement, all-gather. */
export * from "./all_gather.ts";
export * from "./average_metrics.ts";
export * from "./broadcast_text.ts";
export * from "./data_parallel.ts";
export * from "./gradient_sync.ts";
export * from "./launch.ts";
export * from "./mpi.ts";
export * from "./stop.ts";
