/**
 * The process-wide default device. Tensors are created on it unless told otherwise; a multi-GPU run
 * (one process per device) keeps one default per process.
 */
import { createGpu, type Gpu, type GpuOptions } from "./device.ts";

let current: Gpu | undefined;
let pending: Promise<Gpu> | undefined;

/** Creates the default device once (later calls return the same one; options apply to the first). */
export function initGpu(options?: GpuOptions): Promise<Gpu> {
  if (current) return Promise.resolve(current);
  pending ??= createGpu(options).then((gpu) => (current = gpu)).finally(() => (pending = undefined));
  return pending;
}

/** The default device. @throws when {@link initGpu} has not completed. */
export function getGpu(): Gpu {
  if (!current) throw new Error("no GPU initialised: call `await initGpu()` first");
  return current;
}

/** Replaces the default device (tests use this to run with a capped binding size). */
export function setDefaultGpu(gpu: Gpu | undefined): void {
  current = gpu;
}
