/**
 * Reading PyTorch checkpoints (`torch.save`'s zip format, torch ≥ 1.6, and torch 2.x) without Python:
 * the archive's `data.pkl` through the restricted unpickler, then each tensor's strided view copied out
 * of its storage entry into a dense row-major array of its own dtype (exact: f16 and bf16 stay 16-bit
 * until asked for as f32). Legacy (pre-1.6) and TorchScript files are refused with a clear message.
 */
import type { HostTensor } from "../safetensors.ts";
import { PthError } from "./errors.ts";
import {
  type PyValue,
  type TensorRef,
  TORCH_DTYPE_BYTES,
  type TorchDtype,
  unpickle,
} from "./pickle_reader.ts";
import { ZipReader } from "./zip.ts";

/** A dense tensor read from a checkpoint. */
export interface TorchTensor {
  /** Element type as torch names it. */
  dtype: TorchDtype;
  /** Size of each dimension. */
  shape: number[];
  /**
   * Row-major values in the dtype's own array: Float32Array, Float64Array, Float16Array, Uint16Array
   * (bfloat16 bit patterns), BigInt64Array, Int32Array, Int16Array, Int8Array, Uint8Array (uint8, bool).
   */
  data:
    | Float32Array
    | Float64Array
    | Float16Array
    | Uint16Array
    | BigInt64Array
    | Int32Array
    | Int16Array
    | Int8Array
    | Uint8Array;
}

/** An opened checkpoint: its object tree and tensor reads. */
export interface PthFile {
  /** The file (for messages). */
  source: string;
  /** The unpickled object tree; tensors are {@link TensorRef}s. */
  root: PyValue;
  /** Copies a tensor out of its storage (once per distinct view; treat it as read-only); `key` names it in errors. */
  tensor(ref: TensorRef, key: string): TorchTensor;
}

const BIG_ENDIAN_OK = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Opens checkpoint bytes: zip directory, data.pkl (CRC-checked, restricted unpickling). */
export function openPth(bytes: Uint8Array, source = "checkpoint"): PthFile {
  if (bytes.length >= 2 && bytes[0] === 0x80 && bytes[1] <= 5 && bytes[1] >= 2) {
    throw new PthError(
      `${source}: a legacy torch.save file (pickle stream, torch < 1.6 format); load and re-save it with ` +
        `a current torch (the zip format) first`,
    );
  }
  if (bytes.length < 4 || bytes[0] !== 0x50 || bytes[1] !== 0x4b) {
    throw new PthError(`${source}: not a PyTorch checkpoint (no zip signature at the start)`);
  }
  const zip = new ZipReader(bytes, source);
  const pkl = [...zip.entries.keys()].find((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (!pkl) {
    const code = [...zip.entries.keys()].some((n) => /\/constants\.pkl$/.test(n));
    throw new PthError(
      code
        ? `${source}: a TorchScript archive (torch.jit.save), not a checkpoint of weights`
        : `${source}: the archive has no <name>/data.pkl entry`,
    );
  }
  const prefix = pkl.slice(0, -"data.pkl".length);
  const order = zip.entries.has(`${prefix}byteorder`)
    ? new TextDecoder().decode(zip.read(`${prefix}byteorder`)).trim()
    : "little";
  if (order !== "little" || !BIG_ENDIAN_OK) {
    throw new PthError(`${source}: storages are ${order}-endian; voxssl reads little-endian checkpoints`);
  }
  const root = unpickle(zip.read(pkl), source);
  // one copy per distinct view: alias keys of one storage (ResEnc's state dicts) get the same tensor
  const views = new Map<string, TorchTensor>();
  return {
    source,
    root,
    tensor: (ref, key) => {
      const id = `${ref.storage.key}|${ref.storage.dtype}|${ref.offset}|${ref.shape}|${ref.stride}`;
      let t = views.get(id);
      if (!t) views.set(id, t = materialize(zip, prefix, ref, `${source}: tensor "${key}"`));
      return t;
    },
  };
}

/** Reads and opens a checkpoint file. */
export async function readPth(path: string): Promise<PthFile> {
  return openPth(await Deno.readFile(path), path);
}

function materialize(zip: ZipReader, prefix: string, ref: TensorRef, where: string): TorchTensor {
  const { storage, offset, shape, stride } = ref;
  const entry = `${prefix}data/${storage.key}`;
  if (!zip.entries.has(entry)) throw new PthError(`${where}: its storage "${entry}" is not in the archive`);
  const bytes = zip.read(entry);
  const width = TORCH_DTYPE_BYTES[storage.dtype];
  const held = Math.floor(bytes.length / width);
  if (held < storage.numel) {
    throw new PthError(
      `${where}: storage "${entry}" has ${bytes.length} bytes, fewer than the ${storage.numel} ${storage.dtype} ` +
        `elements the pickle declares`,
    );
  }
  const n = shape.reduce((a, b) => a * b, 1);
  let last = offset;
  for (let d = 0; d < shape.length; d++) last += (shape[d] - 1) * stride[d];
  if (n > 0 && last >= storage.numel) {
    throw new PthError(
      `${where}: shape [${shape}] with strides [${stride}] at offset ${offset} reaches element ${last}, ` +
        `past the ${storage.numel} elements of storage "${entry}"`,
    );
  }
  // one array holds at most 2 GiB (a view with zero strides can claim far more than its storage holds)
  if (n * width > 2 ** 31) {
    throw new PthError(
      `${where}: [${shape}] ${storage.dtype} is ${n * width} bytes, more than voxssl reads into one array`,
    );
  }
  // copy runs of raw little-endian bytes along the strided view; the run is the longest suffix of dims
  // laid out contiguously (the whole tensor for a contiguous one, one element for a transposed last dim)
  const out = new Uint8Array(n * width);
  let dims = shape.length;
  let run = 1;
  while (dims > 0 && (stride[dims - 1] === run || shape[dims - 1] === 1)) run *= shape[--dims];
  const runBytes = run * width;
  const index = new Array(dims).fill(0);
  let src = offset;
  for (let i = 0, outer = n / run; i < outer && n > 0; i++) {
    out.set(bytes.subarray(src * width, src * width + runBytes), i * runBytes);
    for (let d = dims - 1; d >= 0; d--) {
      index[d]++;
      src += stride[d];
      if (index[d] < shape[d]) break;
      src -= stride[d] * shape[d];
      index[d] = 0;
    }
  }
  return { dtype: storage.dtype, shape: [...shape], data: typedView(storage.dtype, out) };
}

function typedView(dtype: TorchDtype, b: Uint8Array): TorchTensor["data"] {
  const buf = b.buffer as ArrayBuffer;
  switch (dtype) {
    case "float32":
      return new Float32Array(buf);
    case "float64":
      return new Float64Array(buf);
    case "float16":
      return new Float16Array(buf);
    case "bfloat16":
      return new Uint16Array(buf);
    case "int64":
      return new BigInt64Array(buf);
    case "int32":
      return new Int32Array(buf);
    case "int16":
      return new Int16Array(buf);
    case "int8":
      return new Int8Array(buf);
    default:
      return b;
  }
}

/**
 * A floating-point tensor as voxssl's host tensor (float32 values; f16 and bf16 convert exactly, f64
 * rounds to nearest). Integer and bool tensors are refused, naming `key`.
 */
export function toHostTensor(t: TorchTensor, key: string): HostTensor {
  let data: Float32Array;
  switch (t.dtype) {
    case "float32":
      return { dtype: "F32", shape: t.shape, data: t.data as Float32Array };
    case "float16":
      return { dtype: "F16", shape: t.shape, data: Float32Array.from(t.data as Float16Array) };
    case "bfloat16": {
      const bits = t.data as Uint16Array;
      const wide = new Uint32Array(bits.length);
      for (let i = 0; i < bits.length; i++) wide[i] = bits[i] << 16;
      data = new Float32Array(wide.buffer);
      return { dtype: "BF16", shape: t.shape, data };
    }
    case "float64":
      return { dtype: "F32", shape: t.shape, data: Float32Array.from(t.data as Float64Array) };
    default:
      throw new PthError(`${key}: dtype ${t.dtype} where floating-point weights were expected`);
  }
}
