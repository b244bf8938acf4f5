/**
 * A device that records dispatches instead of running them, with H100-like limits, for the launcher and
 * autotuner tests that need no GPU (tests/kernels/autotune_test.ts, conv3d_plan_test.ts): kernels are
 * only named, the pool hands out ids without memory, and every dispatch goes to the test's callback.
 */
import type { BufferRange, Gpu, GpuLimits } from "../../core/gpu/mod.ts";

/** H100-like limits (2 GiB bindings, 48 KiB workgroup memory, subgroups of 32). */
export const H100_LIMITS: GpuLimits = {
  maxStorageBufferBindingSize: 2 ** 31 - 4,
  maxBufferSize: 2 ** 34,
  maxComputeWorkgroupStorageSize: 49152,
  maxComputeInvocationsPerWorkgroup: 1024,
  maxComputeWorkgroupSizeX: 1024,
  maxComputeWorkgroupsPerDimension: 65535,
  maxStorageBuffersPerShaderStage: 16,
  minStorageBufferOffsetAlignment: 256,
  minUniformBufferOffsetAlignment: 256,
  subgroupMinSize: 32,
  subgroupMaxSize: 32,
};

/** What the recording device is and does with each dispatch. */
export interface RecordingGpuOptions {
  /** Told of each dispatch: the kernel's name, its bindings and its grid as given. */
  dispatch: (name: string, bindings: BufferRange[], grid: number | [number, number, number]) => void;
  /** Its limits (default {@link H100_LIMITS}). */
  limits?: GpuLimits;
  /** Its adapter (keys the autotune cache). */
  adapterInfo?: Partial<GPUAdapterInfo>;
  /** Its backend (part of the autotune cache's driver key). */
  backend?: string;
}

/** A device that names kernels and records dispatches; nothing is allocated or run. */
export function recordingGpu(o: RecordingGpuOptions): Gpu {
  let id = 1;
  return {
    limits: o.limits ?? H100_LIMITS,
    backend: o.backend ?? "none",
    adapterInfo: o.adapterInfo ??
      { vendor: "test", architecture: "", device: "", description: "recording device" },
    kernel: (_key: string, build: () => { name: string }) => ({ name: build().name }),
    dispatch: (
      k: { name: string },
      bindings: BufferRange[],
      _params: unknown,
      grid: number | [number, number, number],
    ) => o.dispatch(k.name, bindings, grid),
    pool: { acquire: (bytes: number) => ({ id: id++, size: bytes, buffer: undefined }), release: () => {} },
    hasF16: true,
  } as unknown as Gpu;
}

/** A binding of `elems` elements of `bytes` bytes at offset 0 of a buffer rounded up to 256 bytes. */
export function bufferRange(elems: number, bytes = 4): BufferRange {
  const size = elems * bytes;
  return { buffer: { id: 0, size: Math.ceil(size / 256) * 256, buffer: undefined as never }, size };
}
