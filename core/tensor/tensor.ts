/**
 * Tensor: a shape and a dtype over contiguous storage in a pooled GPU buffer. u8 storage is packed 4
 * elements per 32-bit word; buffers are sized, written and read in whole words, and every tensor starts
 * on a word (a byte offset that is a multiple of 4), so a u8 tensor's elements never share a word with
 * another tensor's.
 *
 * Memory is reference counted, not garbage collected (V8 does not see GPU memory): a tensor holds one
 * reference for its owner (the memory scope it was created in, or the caller) plus one per autograd node
 * that saved it for backward. Views (`reshape`) share the storage. When the last reference goes, the
 * buffer returns to the pool.
 */
import { align4, type BufferRange, type Gpu, type GpuBuffer, type OpFamily } from "../gpu/mod.ts";
import { type DType, DTYPE_BYTES, type HostArray, hostArray, toHostArray } from "./dtype.ts";
import { numel, type Shape } from "./shape.ts";
import { trackTensor } from "./scope.ts";

/** A pooled buffer shared by a tensor and its views (and by the tensors of an arena). */
export class Storage {
  refs = 1;
  constructor(readonly gpu: Gpu, readonly buffer: GpuBuffer) {}
  release(): void {
    if (--this.refs === 0) this.gpu.pool.release(this.buffer);
  }
}

/** What autograd keeps on a tensor produced by a differentiable op (see autograd.ts). */
export interface GradNode {
  readonly name: string;
  readonly inputs: readonly Tensor[];
  readonly saved: readonly Tensor[];
  readonly backward: (grad: Tensor) => readonly (Tensor | undefined)[];
  released: boolean;
  /** The op family that recorded the node; its backward rule runs in it (core/gpu/op_family.ts). */
  readonly family?: OpFamily;
}

let nextTensorId = 1;

/** An n-dimensional array on the GPU. */
export class Tensor {
  /** Unique per process, for debugging and maps. */
  readonly id = nextTensorId++;
  /** Size of each dimension, outermost first (frozen), e.g. [B, C, D, H, W] for a batch of volumes. */
  readonly shape: Shape;
  /** Element type of the storage. */
  readonly dtype: DType;
  /** Number of elements. */
  readonly size: number;
  /** The device that holds the storage. */
  readonly gpu: Gpu;
  /** Whether gradients flow to this tensor. Set it on leaves (parameters, inputs); ops propagate it. */
  requiresGrad = false;
  /** Accumulated gradient of a leaf after `backward()`. Owned by this tensor. */
  grad: Tensor | undefined;
  /**
   * The op that produced this tensor, when it is part of a graph.
   * @internal For autograd.
   */
  node: GradNode | undefined;
  #storage: Storage | undefined;
  #byteOffset: number;
  #refs = 1;

  /**
   * @internal Tensors are made by ops and factories (`tensor`, `zeros`, ...), not by `new`. The tensor
   * takes over one reference of `storage`. `byteOffset` places it inside a shared buffer (an arena); it
   * must be a multiple of the device's minStorageBufferOffsetAlignment.
   */
  constructor(gpu: Gpu, storage: Storage, shape: Shape, dtype: DType, byteOffset = 0) {
    if (byteOffset % 4 !== 0) throw new RangeError(`tensor byte offset ${byteOffset} is not a multiple of 4`);
    this.gpu = gpu;
    this.#storage = storage;
    this.#byteOffset = byteOffset;
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.size = numel(shape);
    trackTensor(this);
  }

  /** Allocates an uninitialised tensor (contents undefined). @internal for ops. */
  static empty(gpu: Gpu, shape: Shape, dtype: DType): Tensor {
    if (dtype === "f16" && !gpu.hasF16) {
      throw new TypeError("f16 tensors need the shader-f16 feature, which this device lacks; use f32");
    }
    const bytes = Math.max(16, align4(numel(shape) * DTYPE_BYTES[dtype]));
    return new Tensor(gpu, new Storage(gpu, gpu.pool.acquire(bytes)), shape, dtype);
  }

  /** A new tensor sharing this storage with another shape of the same size. @internal use `reshape`. */
  view(shape: Shape): Tensor {
    const storage = this.#live();
    if (numel(shape) !== this.size) throw new RangeError(`cannot view [${this.shape}] as [${shape}]`);
    storage.refs++;
    return new Tensor(this.gpu, storage, shape, this.dtype, this.#byteOffset);
  }

  /** Rank (number of dimensions). */
  get rank(): number {
    return this.shape.length;
  }

  /** Bytes of data (u8: one per element; the buffer holds them in whole words). */
  get byteLength(): number {
    return this.size * DTYPE_BYTES[this.dtype];
  }

  /**
   * The storage as a binding for kernels (at least 16 bytes: one vec4, for empty tensors).
   * @internal For ops and the kernel layer.
   */
  get binding(): BufferRange {
    return { buffer: this.#live().buffer, offset: this.#byteOffset, size: Math.max(16, this.byteLength) };
  }

  /**
   * The underlying pooled buffer (shared when the tensor lives in an arena: see `byteOffset`).
   * @internal For ops and the kernel layer.
   */
  get buffer(): GpuBuffer {
    return this.#live().buffer;
  }

  /** Where the data starts inside {@link buffer}. */
  get byteOffset(): number {
    return this.#byteOffset;
  }

  /** Whether the last reference is gone. */
  get disposed(): boolean {
    return this.#storage === undefined;
  }

  /** Adds a reference (each `retain` needs one `dispose`). */
  retain(): this {
    this.#live();
    this.#refs++;
    return this;
  }

  /** Drops a reference; the buffer (and this tensor's grad) is released with the last one. */
  dispose(): void {
    if (!this.#storage) return;
    if (--this.#refs > 0) return;
    this.#storage.release();
    this.#storage = undefined;
    // `node` stays: a disposed intermediate is still a path through the graph for backward (only its
    // identity and node are used; the tensors a rule needs are retained by their nodes)
    this.grad?.dispose();
    this.grad = undefined;
  }

  /** Overwrites the contents with host values (same element count; converted to this dtype). */
  write(values: ArrayLike<number>): void {
    if (values.length !== this.size) {
      throw new RangeError(`write(): ${values.length} values for ${this.toString()} (${this.size} elements)`);
    }
    if (this.size > 0) this.gpu.write(this.#live().buffer, toHostArray(this.dtype, values), this.#byteOffset);
  }

  /** Copies the data to the host (f16 as Float16Array, u8 as Uint8Array of `size`). Waits for pending GPU work. */
  async toArray(): Promise<HostArray> {
    const buffer = await this.gpu.read(this.#live().buffer, this.#byteOffset, this.byteLength);
    return hostArray(this.dtype, buffer, this.size);
  }

  /** Copies the data to the host as float64 (for comparisons with the CPU reference). */
  async toFloat64(): Promise<Float64Array> {
    return Float64Array.from(await this.toArray());
  }

  /** The single value of a one-element tensor. */
  async item(): Promise<number> {
    if (this.size !== 1) throw new RangeError(`item() needs one element, tensor has shape [${this.shape}]`);
    return (await this.toArray())[0];
  }

  /** A short description: shape, dtype, grad state. */
  toString(): string {
    return `Tensor[${this.shape.join("×")}] ${this.dtype}${this.requiresGrad ? " requiresGrad" : ""}`;
  }

  #live(): Storage {
    if (!this.#storage) throw new Error(`${this.toString()} (#${this.id}) was disposed`);
    return this.#storage;
  }
}
