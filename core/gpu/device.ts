/**
 * The GPU runtime: one WebGPU device with its real limits, a buffer pool, a pipeline cache, command
 * batching with a uniform ring, readback, error attribution and kernel timing.
 *
 * Data flow of a step: kernels call {@link Gpu.dispatch}; dispatches accumulate in one compute pass of
 * one command encoder and are submitted every `dispatchesPerSubmit` dispatches (no waiting). Their
 * uniforms are packed into a CPU mirror of the ring and uploaded with one `writeBuffer` right before the
 * submit. A readback (`read`) forces a flush and waits for the queue; it is the only synchronisation.
 */
import { BufferPool, type GpuBuffer } from "./buffer_pool.ts";
import { workgroupGrid } from "./dispatch_grid.ts";
import {
  BindingTooLargeError,
  GpuDeviceLostError,
  GpuUnavailableError,
  GpuValidationError,
  NO_ADAPTER_HELP,
} from "./errors.ts";
import { disabledByEnvironment, requestDeviceWithFallbacks } from "./features.ts";
import type { Params } from "./params.ts";

/** Optional features voxssl uses when the adapter has them. */
export type GpuFeature = "shader-f16" | "subgroups" | "timestamp-query";

/** Options of {@link createGpu}. */
export interface GpuOptions {
  /** Adapter choice; default "high-performance". */
  powerPreference?: GPUPowerPreference;
  /**
   * Caps `maxStorageBufferBindingSize` below what the adapter grants. Tests use a small cap so that the
   * chunked code paths for tensors above one binding run on lavapipe.
   */
  maxStorageBindingBytes?: number;
  /**
   * Features not to request even when present (to test fallbacks, e.g. the path without subgroups). The
   * environment variable `VOXSSL_GPU_DISABLE_FEATURES` (comma-separated names) adds to these.
   */
  disableFeatures?: GpuFeature[];
  /** Dispatches recorded before a submit; default 32. */
  dispatchesPerSubmit?: number;
  /** Wrap every dispatch in an error scope and submit it alone: slow, but names the failing kernel. */
  debug?: boolean;
  /**
   * Count, do not run: dispatches are checked and counted but never recorded, so no kernel runs and every
   * result is garbage, while buffers are handed out and given back exactly as in a real run. For
   * measuring the memory of configurations a slow adapter cannot run in reasonable time
   * (bench/memory_model.ts).
   */
  countOnly?: boolean;
}

/** The limits voxssl reads, as granted by the device (after any cap from the options). */
export interface GpuLimits {
  /** Largest storage buffer one binding may cover, in bytes (bigger tensors are processed in chunks). */
  maxStorageBufferBindingSize: number;
  /** Largest buffer the device allocates, in bytes. */
  maxBufferSize: number;
  /** Workgroup shared memory, in bytes. */
  maxComputeWorkgroupStorageSize: number;
  /** Invocations in one workgroup (product of its x, y and z sizes). */
  maxComputeInvocationsPerWorkgroup: number;
  /** Workgroup size along x. */
  maxComputeWorkgroupSizeX: number;
  /** Workgroups along one dimension of a dispatch (larger linear counts are split over x/y/z). */
  maxComputeWorkgroupsPerDimension: number;
  /** Storage buffers one kernel may bind. */
  maxStorageBuffersPerShaderStage: number;
  /** Alignment of a storage binding's byte offset. */
  minStorageBufferOffsetAlignment: number;
  /** Alignment of a uniform binding's byte offset. */
  minUniformBufferOffsetAlignment: number;
  /** Smallest subgroup size reported by the adapter (0 when unknown). */
  subgroupMinSize: number;
  /** Largest subgroup size reported by the adapter (0 when unknown). */
  subgroupMaxSize: number;
}

/** Storage access of one binding in group 0. */
export type StorageAccess = "read" | "read_write";

/** What a kernel family hands to the pipeline cache to build one variant. */
export interface KernelSource {
  /** Shown in errors and timings, e.g. "matmul[f32,64x64]". */
  name: string;
  /** Complete WGSL. */
  code: string;
  /** Storage buffers at `@group(0) @binding(i)`, in order. */
  storage: StorageAccess[];
  /** Whether the kernel reads a params struct at `@group(1) @binding(0)` (dynamic offset into the ring). */
  uniform: boolean;
  entryPoint?: string;
  /** Values for WGSL `override` constants. */
  constants?: Record<string, number>;
}

/** A compiled kernel variant, compiled once per process and looked up by key. */
export interface Kernel {
  readonly name: string;
  readonly pipeline: GPUComputePipeline;
  readonly storageLayout: GPUBindGroupLayout;
  readonly layoutKey: string;
  readonly storage: StorageAccess[];
  readonly uniform: boolean;
}

/** A byte range of a pooled buffer (offset aligned to `minStorageBufferOffsetAlignment`). */
export interface BufferRange {
  buffer: GpuBuffer;
  offset?: number;
  size: number;
}

/** One storage binding: a whole pooled buffer or a byte range of it. */
export type Binding = GpuBuffer | BufferRange;

/** Counters of dispatches and submits, for benchmarks and tests of batching. */
export interface GpuCounters {
  /** Kernel dispatches recorded. */
  dispatches: number;
  /** Command buffers submitted to the queue. */
  submits: number;
  /** Kernel variants compiled (each once per process). */
  pipelinesCompiled: number;
  /** Storage bind groups created (the rest were reused from the cache). */
  bindGroupsCreated: number;
  /** Copies read back to the host (each one waits for the GPU). */
  readbacks: number;
}

/**
 * Sees every dispatch while attached with {@link Gpu.observeDispatches} (the profiler,
 * core/gpu/gpu_profiler.ts). It may cut the recording into compute passes (e.g. to time each with its own
 * timestamp writes) or submit (`Gpu.flush`) between dispatches.
 */
export interface DispatchObserver {
  /** Called before a dispatch is recorded; returns true when the open pass must end first. */
  beforeDispatch(kernel: Kernel, bindings: readonly Binding[], passOpen: boolean): boolean;
  /** The descriptor of a compute pass about to begin (e.g. its timestamp writes). */
  beginPass(): GPUComputePassDescriptor | undefined;
  /** Called right after each submit. */
  submitted(): void;
}

const UNIFORM_SLOT_BYTES = 256;
const UNIFORM_RING_SLOTS = 4096; // 1 MiB

/** Reads an environment variable, or undefined where env access is not permitted (sandboxed plugins). */
function envVar(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

/** Pads a byte count to WebGPU's copy/binding granularity (4 bytes). */
export function align4(bytes: number): number {
  return Math.ceil(bytes / 4) * 4;
}

/**
 * A WebGPU device prepared for training: real limits, optional features, pooled memory, cached
 * pipelines and batched commands. Create it with {@link createGpu}.
 */
export class Gpu {
  /** The underlying device, for code that needs raw WebGPU. */
  readonly device: GPUDevice;
  /** Adapter description (vendor, architecture, device, description). */
  readonly adapterInfo: GPUAdapterInfo;
  /** The backend selected through DENO_WEBGPU_BACKEND (or "default"). */
  readonly backend: string;
  /** Optional features granted on this device. */
  readonly features: ReadonlySet<GpuFeature>;
  /**
   * Why each optional feature that is not granted is missing (disabled on request, not offered by the
   * adapter, or refused when the device was requested, with the error), so that fallbacks are explained
   * (`voxssl doctor` prints them).
   */
  readonly fallbacks: ReadonlyMap<GpuFeature, string>;
  /** Limits granted on this device. */
  readonly limits: GpuLimits;
  /**
   * Storage buffers by size class.
   * @internal For the tensor and kernel layers; tensors take and return their buffers themselves.
   */
  readonly pool: BufferPool;
  /** Counters of work recorded and submitted. */
  readonly counters: GpuCounters = {
    dispatches: 0,
    submits: 0,
    pipelinesCompiled: 0,
    bindGroupsCreated: 0,
    readbacks: 0,
  };

  readonly #options: Required<Pick<GpuOptions, "dispatchesPerSubmit" | "debug" | "countOnly">>;
  readonly #kernels = new Map<string, Kernel>();
  readonly #layouts = new Map<string, GPUBindGroupLayout>();
  readonly #bindGroups = new Map<string, GPUBindGroup>();
  readonly #uniformLayout: GPUBindGroupLayout;
  readonly #emptyUniformLayout: GPUBindGroupLayout;
  readonly #ring: GPUBuffer;
  readonly #ringMirror = new ArrayBuffer(UNIFORM_SLOT_BYTES * UNIFORM_RING_SLOTS);
  readonly #ringView = new DataView(this.#ringMirror);
  readonly #ringBindGroup: GPUBindGroup;
  readonly #slotBytes: number;
  #ringStart = 0; // first slot of the current batch
  #ringNext = 0; // next free slot
  #encoder: GPUCommandEncoder | undefined;
  #pass: GPUComputePassEncoder | undefined;
  #batchDispatches = 0;
  #batchKernels: string[] = [];
  #recentBatches: string[][] = [];
  #timedSection = false;
  #observer: DispatchObserver | undefined;
  #stagingFree: GPUBuffer[] = [];
  #errors: string[] = [];
  #lost: string | undefined;
  #destroyed = false;

  /** @internal Use {@link createGpu}. */
  constructor(
    device: GPUDevice,
    adapterInfo: GPUAdapterInfo,
    features: Set<GpuFeature>,
    limits: GpuLimits,
    options: GpuOptions,
    fallbacks: ReadonlyMap<GpuFeature, string> = new Map(),
  ) {
    this.device = device;
    this.adapterInfo = adapterInfo;
    this.features = features;
    this.fallbacks = fallbacks;
    this.limits = limits;
    this.backend = envVar("DENO_WEBGPU_BACKEND") ?? "default";
    this.#options = {
      dispatchesPerSubmit: options.dispatchesPerSubmit ?? 32,
      debug: options.debug ?? false,
      countOnly: options.countOnly ?? false,
    };
    this.pool = new BufferPool(device, limits.maxBufferSize);
    this.#slotBytes = Math.max(UNIFORM_SLOT_BYTES, limits.minUniformBufferOffsetAlignment);
    this.#ring = device.createBuffer({
      size: this.#slotBytes * UNIFORM_RING_SLOTS,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      label: "uniform-ring",
    });
    this.#uniformLayout = device.createBindGroupLayout({
      label: "uniform-ring",
      entries: [{
        binding: 0,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type: "uniform", hasDynamicOffset: true, minBindingSize: UNIFORM_SLOT_BYTES },
      }],
    });
    this.#emptyUniformLayout = device.createBindGroupLayout({ label: "no-uniform", entries: [] });
    this.#ringBindGroup = device.createBindGroup({
      layout: this.#uniformLayout,
      entries: [{ binding: 0, resource: { buffer: this.#ring, offset: 0, size: UNIFORM_SLOT_BYTES } }],
    });
    device.lost.then((info) => {
      if (!this.#destroyed) this.#lost = `${info.reason}: ${info.message}`;
    });
    device.addEventListener("uncapturederror", (event) => {
      const message = (event as GPUUncapturedErrorEvent).error.message;
      const kernels = this.#recentBatches.flat();
      this.#errors.push(
        `${message}\n  (raised while one of these kernels ran: ${
          [...new Set(kernels)].join(", ") || "none"
        };` +
          ` run with VOXSSL_GPU_DEBUG=1 to name the exact kernel)`,
      );
    });
  }

  /** Whether the device supports f16 storage and arithmetic in shaders. */
  get hasF16(): boolean {
    return this.features.has("shader-f16");
  }

  /** Whether subgroup operations may be used. */
  get hasSubgroups(): boolean {
    return this.features.has("subgroups");
  }

  /** Whether kernel timing through timestamp queries is available. */
  get hasTimestamps(): boolean {
    return this.features.has("timestamp-query");
  }

  /**
   * Returns the compiled kernel for `key`, building it with `build` the first time only: each variant is
   * compiled once per process.
   * @internal For the kernel layer (kernels/); ops are the public way to run kernels.
   */
  kernel(key: string, build: () => KernelSource): Kernel {
    const cached = this.#kernels.get(key);
    if (cached) return cached;
    this.#assertUsable();
    const source = build();
    const layoutKey = source.storage.join(",");
    let storageLayout = this.#layouts.get(layoutKey);
    if (!storageLayout) {
      storageLayout = this.device.createBindGroupLayout({
        label: `storage[${layoutKey}]`,
        entries: source.storage.map((access, binding) => ({
          binding,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: access === "read" ? "read-only-storage" : "storage" },
        })),
      });
      this.#layouts.set(layoutKey, storageLayout);
    }
    this.device.pushErrorScope("validation");
    const module = this.device.createShaderModule({ code: source.code, label: source.name });
    const pipeline = this.device.createComputePipeline({
      label: source.name,
      layout: this.device.createPipelineLayout({
        bindGroupLayouts: [storageLayout, source.uniform ? this.#uniformLayout : this.#emptyUniformLayout],
      }),
      compute: { module, entryPoint: source.entryPoint ?? "main", constants: source.constants },
    });
    this.device.popErrorScope().then((error) => {
      if (error) this.#errors.push(`kernel ${source.name} failed to compile: ${error.message}`);
    });
    const kernel: Kernel = {
      name: source.name,
      pipeline,
      storageLayout,
      layoutKey,
      storage: source.storage,
      uniform: source.uniform,
    };
    this.#kernels.set(key, kernel);
    this.counters.pipelinesCompiled++;
    return kernel;
  }

  /**
   * Records one dispatch. `workgroups` is a linear count (split over x/y/z when above the per-dimension
   * limit; kernels use `linear_workgroup`) or an explicit grid.
   * @internal For the kernel layer (kernels/); ops are the public way to run kernels.
   */
  dispatch(
    kernel: Kernel,
    bindings: readonly Binding[],
    params: Params | undefined,
    workgroups: number | [number, number, number],
  ): void {
    this.#assertUsable();
    if (bindings.length !== kernel.storage.length) {
      throw new Error(`kernel ${kernel.name} takes ${kernel.storage.length} buffers, got ${bindings.length}`);
    }
    if (kernel.uniform !== (params !== undefined)) {
      throw new Error(`kernel ${kernel.name} ${kernel.uniform ? "needs" : "takes no"} uniform params`);
    }
    const grid = typeof workgroups === "number"
      ? workgroupGrid(workgroups, this.limits.maxComputeWorkgroupsPerDimension)
      : workgroups;
    if (grid[0] * grid[1] * grid[2] === 0) return;
    if (this.#options.countOnly) {
      this.counters.dispatches++;
      return;
    }
    const storageGroup = this.#storageBindGroup(kernel, bindings);
    if (this.#observer && !this.#timedSection) {
      if (this.#observer.beforeDispatch(kernel, bindings, this.#pass !== undefined)) this.#endPass();
    }
    let uniformOffset = 0;
    if (params) {
      if (params.byteLength > UNIFORM_SLOT_BYTES) {
        throw new Error(
          `kernel ${kernel.name}: params of ${params.byteLength} bytes exceed ${UNIFORM_SLOT_BYTES}`,
        );
      }
      if (this.#ringNext === UNIFORM_RING_SLOTS) {
        if (this.#timedSection) {
          throw new Error("timed section exceeds the uniform ring; time fewer dispatches");
        }
        this.flush();
        this.#ringStart = this.#ringNext = 0;
      }
      uniformOffset = this.#ringNext * this.#slotBytes;
      params.writeTo(this.#ringView, uniformOffset);
      this.#ringNext++;
    }
    if (this.#options.debug) this.device.pushErrorScope("validation");
    const pass = this.#computePass();
    pass.setPipeline(kernel.pipeline);
    pass.setBindGroup(0, storageGroup);
    if (params) pass.setBindGroup(1, this.#ringBindGroup, [uniformOffset]);
    pass.dispatchWorkgroups(grid[0], grid[1], grid[2]);
    this.counters.dispatches++;
    this.#batchDispatches++;
    this.#batchKernels.push(kernel.name);
    if (this.#options.debug) {
      this.flush();
      this.device.popErrorScope().then((error) => {
        if (error) this.#errors.push(`kernel ${kernel.name}: ${error.message}`);
      });
    } else if (this.#batchDispatches >= this.#options.dispatchesPerSubmit && !this.#timedSection) {
      this.flush();
    }
  }

  /** Submits everything recorded so far (does not wait for the GPU). */
  flush(): void {
    if (!this.#encoder) return;
    this.#endPass();
    const commands = this.#encoder.finish();
    this.#encoder = undefined;
    if (this.#ringNext > this.#ringStart) {
      const start = this.#ringStart * this.#slotBytes;
      const end = this.#ringNext * this.#slotBytes;
      this.device.queue.writeBuffer(this.#ring, start, this.#ringMirror, start, end - start);
      this.#ringStart = this.#ringNext;
    }
    this.device.queue.submit([commands]);
    this.counters.submits++;
    this.#observer?.submitted();
    this.#recentBatches.push(this.#batchKernels);
    if (this.#recentBatches.length > 4) this.#recentBatches.shift();
    this.#batchKernels = [];
    this.#batchDispatches = 0;
  }

  /** Submits pending work and waits until the GPU has finished it; then reports any pending error. */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    this.throwPendingErrors();
  }

  /**
   * Uploads host data into a buffer. Pending dispatches are submitted first: `writeBuffer` lands before
   * any command not yet submitted, and one of those may still read the buffer's previous contents.
   * @internal For the tensor layer; use `Tensor.write` to upload a tensor's values.
   */
  write(target: GpuBuffer, data: ArrayBufferView, byteOffset = 0): void {
    this.#assertUsable();
    if (byteOffset + data.byteLength > target.size) {
      throw new RangeError(
        `write of ${data.byteLength} bytes at ${byteOffset} overruns a ${target.size}-byte buffer`,
      );
    }
    if (this.#encoder) this.flush();
    let bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (bytes.byteLength % 4 !== 0) {
      const padded = new Uint8Array(align4(bytes.byteLength));
      padded.set(bytes);
      bytes = padded;
    }
    this.device.queue.writeBuffer(target.buffer, byteOffset, bytes as Uint8Array<ArrayBuffer>);
  }

  /**
   * Copies `byteLength` bytes from a buffer to the host. Forces a flush and waits for the GPU.
   * @internal For the tensor layer; use `Tensor.toArray` to read a tensor's values.
   */
  async read(source: GpuBuffer, byteOffset: number, byteLength: number): Promise<ArrayBuffer> {
    this.#assertUsable();
    const size = align4(byteLength);
    if (byteLength === 0) return new ArrayBuffer(0);
    if (byteOffset % 4 !== 0 || byteOffset + size > source.size) {
      throw new RangeError(
        `read of ${byteLength} bytes at ${byteOffset} is outside a ${source.size}-byte buffer`,
      );
    }
    const staging = this.#takeStaging(size);
    this.#endPass();
    this.#encoder ??= this.device.createCommandEncoder();
    this.#encoder.copyBufferToBuffer(source.buffer, byteOffset, staging, 0, size);
    this.flush();
    this.counters.readbacks++;
    try {
      await staging.mapAsync(GPUMapMode.READ, 0, size);
    } catch (error) {
      this.#assertUsable();
      throw error;
    }
    const out = staging.getMappedRange(0, size).slice(0, byteLength);
    staging.unmap();
    this.#stagingFree.push(staging);
    this.throwPendingErrors();
    return out;
  }

  /**
   * Runs `record` (which dispatches kernels) inside one timed compute pass and returns the GPU time in
   * milliseconds: timestamp queries when the device has them, otherwise wall-clock around a sync.
   */
  async time(record: () => void): Promise<{ ms: number; source: "timestamp-query" | "wall-clock" }> {
    await this.sync();
    if (!this.hasTimestamps) {
      const start = performance.now();
      record();
      await this.sync();
      return { ms: performance.now() - start, source: "wall-clock" };
    }
    const querySet = this.device.createQuerySet({ type: "timestamp", count: 2 });
    const resolve = this.device.createBuffer({
      size: 16,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    const readback = this.device.createBuffer({
      size: 16,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    this.#encoder = this.device.createCommandEncoder();
    this.#pass = this.#encoder.beginComputePass({
      timestampWrites: { querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 },
    });
    this.#timedSection = true;
    try {
      record();
    } finally {
      this.#timedSection = false;
    }
    this.#endPass();
    this.#encoder.resolveQuerySet(querySet, 0, 2, resolve, 0);
    this.#encoder.copyBufferToBuffer(resolve, 0, readback, 0, 16);
    this.flush();
    await readback.mapAsync(GPUMapMode.READ);
    const [begin, end] = new BigUint64Array(readback.getMappedRange().slice(0));
    readback.unmap();
    readback.destroy();
    resolve.destroy();
    querySet.destroy();
    this.throwPendingErrors();
    return { ms: Number(end - begin) / 1e6, source: "timestamp-query" };
  }

  /**
   * Attaches an observer that sees every dispatch from now on (undefined detaches it). Work recorded so far
   * is submitted first, so that segments never mix work from before and after.
   * @internal For the profiler (core/gpu/gpu_profiler.ts).
   */
  observeDispatches(observer: DispatchObserver | undefined): void {
    this.flush();
    this.#observer = observer;
  }

  /** Throws the first error WebGPU reported since the last check (validation, out of memory, compile). */
  throwPendingErrors(): void {
    this.#assertUsable();
    if (this.#errors.length > 0) {
      const errors = this.#errors.splice(0);
      throw new GpuValidationError(
        `WebGPU reported ${errors.length} error(s):\n${errors.slice(0, 5).join("\n")}`,
      );
    }
  }

  /** Releases the device and every buffer. The object is unusable afterwards. */
  destroy(): void {
    this.#destroyed = true;
    this.pool.destroy();
    for (const b of this.#stagingFree) b.destroy();
    this.#ring.destroy();
    this.device.destroy();
  }

  #assertUsable(): void {
    if (this.#destroyed) throw new GpuDeviceLostError("the GPU device was destroyed; create a new one");
    if (this.#lost) {
      throw new GpuDeviceLostError(
        `the GPU device was lost (${this.#lost}). Kernels that ran last: ` +
          `${[...new Set(this.#recentBatches.flat())].join(", ") || "none"}. Restart the run; ` +
          `resume from the last checkpoint with --resume.`,
      );
    }
  }

  #computePass(): GPUComputePassEncoder {
    if (!this.#pass) {
      this.#encoder ??= this.device.createCommandEncoder();
      this.#pass = this.#encoder.beginComputePass(this.#observer?.beginPass());
    }
    return this.#pass;
  }

  #endPass(): void {
    if (this.#pass) {
      this.#pass.end();
      this.#pass = undefined;
    }
  }

  #storageBindGroup(kernel: Kernel, bindings: readonly Binding[]): GPUBindGroup {
    let key = kernel.layoutKey;
    const entries: GPUBindGroupEntry[] = [];
    for (let i = 0; i < bindings.length; i++) {
      const b = bindings[i];
      const buffer = "id" in b ? b : b.buffer;
      const offset = "id" in b ? 0 : b.offset ?? 0;
      const size = "id" in b ? b.size : align4(b.size);
      if (size > this.limits.maxStorageBufferBindingSize) {
        throw new BindingTooLargeError(
          `kernel ${kernel.name}: binding ${i} is ${size} bytes, above this device's ` +
            `maxStorageBufferBindingSize (${this.limits.maxStorageBufferBindingSize}); the kernel must split the work`,
        );
      }
      if (offset % this.limits.minStorageBufferOffsetAlignment !== 0 || offset + size > buffer.size) {
        throw new RangeError(`kernel ${kernel.name}: binding ${i} range ${offset}+${size} is invalid`);
      }
      key += `|${buffer.id}:${offset}:${size}`;
      entries.push({ binding: i, resource: { buffer: buffer.buffer, offset, size } });
    }
    let group = this.#bindGroups.get(key);
    if (!group) {
      if (this.#bindGroups.size > 4096) this.#bindGroups.clear(); // bounded; rebuilt on demand
      group = this.device.createBindGroup({ layout: kernel.storageLayout, entries });
      this.#bindGroups.set(key, group);
      this.counters.bindGroupsCreated++;
    }
    return group;
  }

  #takeStaging(size: number): GPUBuffer {
    const index = this.#stagingFree.findIndex((b) => b.size >= size && b.size <= 4 * size + 4096);
    if (index >= 0) return this.#stagingFree.splice(index, 1)[0];
    if (this.#stagingFree.length > 8) this.#stagingFree.shift()!.destroy();
    return this.device.createBuffer({
      size: Math.max(256, size),
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      label: "staging",
    });
  }
}

/**
 * Requests an adapter and a device with the adapter's real limits and the optional features
 * (shader-f16, subgroups, timestamp-query) that it has.
 * @throws {GpuUnavailableError} with installation advice when there is no adapter.
 */
export async function createGpu(options: GpuOptions = {}): Promise<Gpu> {
  if (!("gpu" in navigator) || !navigator.gpu) {
    throw new GpuUnavailableError(`This Deno build has no WebGPU (navigator.gpu).\n${NO_ADAPTER_HELP}`);
  }
  const adapter = await navigator.gpu.requestAdapter({
    powerPreference: options.powerPreference ?? "high-performance",
  });
  if (!adapter) throw new GpuUnavailableError(NO_ADAPTER_HELP);
  const disabled = new Map<GpuFeature, string>();
  for (const f of disabledByEnvironment()) disabled.set(f, "disabled by VOXSSL_GPU_DISABLE_FEATURES");
  for (const f of options.disableFeatures ?? []) disabled.set(f, "disabled by the disableFeatures option");
  const a = adapter.limits;
  const requiredLimits: Record<string, number> = {
    maxStorageBufferBindingSize: a.maxStorageBufferBindingSize,
    maxBufferSize: a.maxBufferSize,
    maxComputeWorkgroupStorageSize: a.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: a.maxComputeInvocationsPerWorkgroup,
    maxComputeWorkgroupSizeX: a.maxComputeWorkgroupSizeX,
    maxComputeWorkgroupSizeY: a.maxComputeWorkgroupSizeY,
    maxComputeWorkgroupSizeZ: a.maxComputeWorkgroupSizeZ,
    maxComputeWorkgroupsPerDimension: a.maxComputeWorkgroupsPerDimension,
    maxStorageBuffersPerShaderStage: a.maxStorageBuffersPerShaderStage,
    maxBindGroups: a.maxBindGroups,
    minStorageBufferOffsetAlignment: a.minStorageBufferOffsetAlignment,
    minUniformBufferOffsetAlignment: a.minUniformBufferOffsetAlignment,
  };
  const { device, features, fallbacks } = await requestDeviceWithFallbacks(adapter, disabled, requiredLimits);
  const d = device.limits;
  const cap = options.maxStorageBindingBytes;
  const info = adapter.info as GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number };
  const limits: GpuLimits = {
    maxStorageBufferBindingSize: cap
      ? Math.min(cap, d.maxStorageBufferBindingSize)
      : d.maxStorageBufferBindingSize,
    maxBufferSize: d.maxBufferSize,
    maxComputeWorkgroupStorageSize: d.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: d.maxComputeInvocationsPerWorkgroup,
    maxComputeWorkgroupSizeX: d.maxComputeWorkgroupSizeX,
    maxComputeWorkgroupsPerDimension: d.maxComputeWorkgroupsPerDimension,
    maxStorageBuffersPerShaderStage: d.maxStorageBuffersPerShaderStage,
    minStorageBufferOffsetAlignment: d.minStorageBufferOffsetAlignment,
    minUniformBufferOffsetAlignment: d.minUniformBufferOffsetAlignment,
    subgroupMinSize: info.subgroupMinSize ?? 0,
    subgroupMaxSize: info.subgroupMaxSize ?? 0,
  };
  const debug = options.debug ?? envVar("VOXSSL_GPU_DEBUG") === "1";
  return new Gpu(device, adapter.info, features, limits, { ...options, debug }, fallbacks);
}
