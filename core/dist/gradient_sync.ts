/**
 * Data-parallel gradient averaging: after backward, every packed gradient arena is cut into buckets,
 * each bucket is copied to the host (a WebGPU readback: WebGPU has no peer-to-peer or RDMA path),
 * summed over all ranks with a non-blocking `MPI_Iallreduce`, uploaded to a staging buffer and written
 * into the arena scaled by 1/size on the GPU (a fill and an accumulate dispatch: no host pass over the
 * gradients besides MPI's own).
 *
 * Overlap with backward: autograd tells {@link GradientSync.gradientReady} when a parameter's gradient
 * is complete (`backward`'s `onLeafGradient`); when every parameter of a bucket is, the bucket's GPU →
 * host copy is queued right there, between the backward kernels still to come. Recording backward is
 * quick next to running it, so by the time the trainer's gradient hook runs, the GPU is still working
 * through backward while the hook waits for the first buckets' bytes and starts their allreduce: the
 * network works while the GPU computes. (From the second step on: the first step learns the layout.)
 *
 * The buckets form a pipeline: a bucket's allreduce starts as soon as its bytes are on the host, so the
 * network works on bucket k while the copies of buckets k+1… are in flight, and the uploads of finished
 * buckets overlap the remaining reductions. Allreduces start in bucket order on every rank (MPI requires
 * one order of collectives), whatever order the readbacks finish in.
 *
 * Every rank ends with bit-identical gradients (MPI's sum is the same on every rank), so the
 * optimizer's clip coefficient, its finite check and the loss-scale decision, all computed on the GPU
 * from those gradients, are identical on every rank, and so are the parameters after the step.
 *
 * @module
 */
import type { Gpu, GpuBuffer } from "../gpu/mod.ts";
import { runAccumulate, runFill } from "../../kernels/mod.ts";
import type { ParameterGroup } from "../nn/mod.ts";
import type { Tensor } from "../tensor/mod.ts";
import type { Mpi, MpiRequest } from "./mpi.ts";

/** Options of {@link GradientSync}. */
export interface GradientSyncOptions {
  /** Bytes per bucket (default 16 MiB; rounded to whole f32 values). */
  bucketBytes?: number;
}

/** One bucket: a byte range of a gradient arena. */
interface Bucket {
  buffer: GpuBuffer;
  byteOffset: number;
  bytes: number;
}

/** Timings of the last {@link GradientSync.allreduce} (milliseconds, wall clock). */
export interface GradientSyncTimings {
  /** Buckets reduced. */
  buckets: number;
  /** Buckets whose readback was queued during backward (as soon as their gradients were complete). */
  earlyBuckets: number;
  /** Gradient bytes reduced (f32). */
  bytes: number;
  /** From the start until the last bucket was on the host. */
  readbackMs: number;
  /** Time spent waiting for reductions after the last readback (communication not hidden). */
  exposedReduceMs: number;
  /** The whole call. */
  totalMs: number;
}

const nextTurn = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

/** How long each event-loop turn drives MPI's progress engine while a readback is pending (ms). */
const PROGRESS_SLICE_MS = 0.5;

/** Averages gradient arenas over the ranks of an MPI job. */
export class GradientSync {
  readonly #mpi: Mpi;
  readonly #gpu: Gpu;
  readonly #bucketBytes: number;
  #buckets: Bucket[] | undefined;
  #groups: ParameterGroup[] | undefined;
  /** Per parameter (a leaf of backward): the buckets its gradient overlaps. */
  #bucketsOfParameter = new Map<Tensor, Bucket[]>();
  /** Per bucket: its parameters whose gradient is not complete yet in this step. */
  #waiting = new Map<Bucket, number>();
  #early = new Map<Bucket, Promise<ArrayBuffer>>();
  /** Timings of the last call (undefined before the first). */
  last: GradientSyncTimings | undefined;

  /** Gradient averaging over `mpi`'s ranks for arenas on `gpu`. */
  constructor(mpi: Mpi, gpu: Gpu, options: GradientSyncOptions = {}) {
    this.#mpi = mpi;
    this.#gpu = gpu;
    const requested = options.bucketBytes ?? 16 * 2 ** 20;
    if (!(requested >= 4)) throw new RangeError(`bucketBytes must be at least 4, got ${requested}`);
    // bucket starts must be valid binding offsets; a bucket must fit one binding
    const align = gpu.limits.minStorageBufferOffsetAlignment;
    this.#bucketBytes = Math.min(
      Math.max(align, Math.ceil(requested / align) * align),
      Math.floor(gpu.limits.maxStorageBufferBindingSize / align) * align,
    );
  }

  /** The buckets of `groups`, last group's end first (the order backward finishes them). */
  #bucketsOf(groups: ParameterGroup[]): Bucket[] {
    if (this.#groups === groups && this.#buckets) return this.#buckets;
    const buckets: Bucket[] = [];
    this.#bucketsOfParameter.clear();
    for (const g of [...groups].reverse()) {
      const whole = g.grads.whole;
      if (whole.dtype !== "f32") throw new Error(`gradient arenas must be f32, got ${whole.dtype}`);
      const bytes = whole.size * 4;
      const own: Bucket[] = [];
      for (let start = 0; start < bytes; start += this.#bucketBytes) {
        const size = Math.min(this.#bucketBytes, bytes - start);
        own.push({ buffer: whole.buffer, byteOffset: whole.byteOffset + start, bytes: size });
      }
      g.params.parts.forEach((param, i) => {
        const from = whole.byteOffset + g.grads.layout.offsets[i] * 4;
        const to = from + param.size * 4;
        const mine = own.filter((b) => b.byteOffset < to && b.byteOffset + b.bytes > from);
        this.#bucketsOfParameter.set(param, mine);
      });
      buckets.push(...own.reverse());
    }
    this.#groups = groups;
    this.#buckets = buckets;
    this.#resetWaiting();
    return buckets;
  }

  #resetWaiting(): void {
    this.#waiting.clear();
    this.#early.clear();
    for (const buckets of this.#bucketsOfParameter.values()) {
      for (const b of buckets) this.#waiting.set(b, (this.#waiting.get(b) ?? 0) + 1);
    }
  }

  /**
   * Tells the sync that `param`'s gradient is complete for this step (backward's `onLeafGradient`):
   * a bucket whose parameters are all complete has its readback queued at once. Parameters it does not
   * know (before the first {@link allreduce}, or not in the groups) are ignored.
   */
  gradientReady(param: Tensor): void {
    for (const bucket of this.#bucketsOfParameter.get(param) ?? []) {
      const left = (this.#waiting.get(bucket) ?? 0) - 1;
      this.#waiting.set(bucket, left);
      if (left === 0) this.#early.set(bucket, this.#gpu.read(bucket.buffer, bucket.byteOffset, bucket.bytes));
    }
  }

  /**
   * Replaces every gradient in `groups` by its mean over all ranks. Every rank must call it with
   * groups of the same layout, in the same step. The trainer's `gradientHook`.
   */
  async allreduce(groups: ParameterGroup[]): Promise<void> {
    const t0 = performance.now();
    const buckets = this.#bucketsOf(groups);
    const early = buckets.filter((b) => this.#early.has(b)).length;
    const reads = buckets.map((b) => this.#early.get(b) ?? this.#gpu.read(b.buffer, b.byteOffset, b.bytes));
    this.#resetWaiting();
    const inFlight: { request: MpiRequest; host: Float32Array; bucket: Bucket }[] = [];
    // MPICH advances a non-blocking collective only inside MPI calls, one schedule step per call: drive it
    // for a slice of each turn, then yield so the GPU readbacks can resolve
    const progress = () => {
      const until = performance.now() + PROGRESS_SLICE_MS;
      do {
        if (inFlight.every((f) => f.request.test())) return;
      } while (performance.now() < until);
    };
    for (const [i, read] of reads.entries()) {
      let data: ArrayBuffer | undefined;
      let failure: unknown;
      read.then((d) => data = d, (e) => failure = e ?? new Error("readback failed"));
      while (data === undefined && failure === undefined) {
        progress();
        await nextTurn();
      }
      if (failure !== undefined) throw failure;
      const host = new Float32Array(data!);
      inFlight.push({ request: this.#mpi.iallreduce(host, "sum"), host, bucket: buckets[i] });
    }
    const t1 = performance.now();
    const scale = 1 / this.#mpi.size;
    const gpu = this.#gpu;
    const staging = gpu.pool.acquire(Math.max(...buckets.map((b) => b.bytes)));
    try {
      for (const { request, host, bucket } of inFlight) {
        request.wait(); // nothing left to overlap on this thread: MPI_Wait drives the reduction fastest
        // write() submits the previous bucket's dispatches first, so reusing one staging buffer is safe
        gpu.write(staging, host);
        const target = { buffer: bucket.buffer, offset: bucket.byteOffset, size: bucket.bytes };
        runFill(gpu, target, bucket.bytes / 4, 0);
        runAccumulate(
          gpu,
          "f32",
          target,
          { buffer: staging, offset: 0, size: bucket.bytes },
          bucket.bytes / 4,
          scale,
        );
      }
      gpu.flush();
    } finally {
      gpu.pool.release(staging);
    }
    const t2 = performance.now();
    const bytes = buckets.reduce((s, b) => s + b.bytes, 0);
    this.last = {
      buckets: buckets.length,
      earlyBuckets: early,
      bytes,
      readbackMs: t1 - t0,
      exposedReduceMs: t2 - t1,
      totalMs: t2 - t0,
    };
  }
}
