/**
 * safetensors read and write (https://github.com/huggingface/safetensors, format spec): an 8-byte
 * little-endian header length, a JSON header `{ name: { dtype, shape, data_offsets: [begin, end] },
 * "__metadata__": { string: string } }` padded with spaces to a multiple of 8, then the raw little-endian
 * data with offsets relative to the end of the header. voxssl reads and writes F32, F16 and BF16 (BF16 is
 * the upper half of an f32, rounded to nearest even when writing).
 *
 * A PyTorch user loads a voxssl export with `safetensors.torch.load_file(path)` + `load_state_dict`.
 */

/** Element types voxssl stores. */
export type SafetensorsDtype = "F32" | "F16" | "BF16";

/** One tensor on the host, as float32 values. */
export interface HostTensor {
  /** How the values are (or are to be) stored in the file; `data` holds them as float32. */
  dtype: SafetensorsDtype;
  /** Size of each dimension, as in PyTorch. */
  shape: number[];
  /** The values, row-major (C order). */
  data: Float32Array;
}

const BYTES: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2 };
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

function toBf16(x: number, view: DataView, at: number): void {
  const f = new DataView(new ArrayBuffer(4));
  f.setFloat32(0, x, true);
  let bits = f.getUint32(0, true);
  if (Number.isNaN(x)) bits = 0x7fc00000;
  else bits = (bits + 0x7fff + ((bits >>> 16) & 1)) >>> 0; // round to nearest even
  view.setUint16(at, bits >>> 16, true);
}

/** Serialises tensors (and string metadata) to safetensors bytes. Names are written sorted. */
export function encodeSafetensors(
  tensors: Record<string, HostTensor>,
  metadata: Record<string, string> = {},
): Uint8Array {
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const name of names) {
    const t = tensors[name];
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) {
      throw new RangeError(`safetensors: ${name} has ${t.data.length} values for shape [${t.shape}]`);
    }
    const bytes = n * BYTES[t.dtype];
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (new TextEncoder().encode(json).length % 8)) % 8);
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  const base = 8 + headerBytes.length;
  for (const name of names) {
    const t = tensors[name];
    let at = base + (header[name] as { data_offsets: number[] }).data_offsets[0];
    if (t.dtype === "F32" && LITTLE_ENDIAN) {
      out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at); // bulk: checkpoints are GBs
      continue;
    }
    for (const x of t.data) {
      if (t.dtype === "F32") view.setFloat32(at, x, true);
      else if (t.dtype === "F16") view.setFloat16(at, x, true);
      else toBf16(x, view, at);
      at += BYTES[t.dtype];
    }
  }
  return out;
}

/** Parses safetensors bytes; every problem is reported with the file's name and the field. */
export function decodeSafetensors(
  bytes: Uint8Array,
  source = "safetensors data",
): { tensors: Record<string, HostTensor>; metadata: Record<string, string> } {
  const fail = (what: string) => {
    throw new Error(`${source}: ${what}`);
  };
  if (bytes.length < 8) fail(`file is ${bytes.length} bytes, shorter than the 8-byte header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  if (headerLength > bytes.length - 8 || headerLength > 100_000_000) {
    fail(`header length ${headerLength} does not fit a ${bytes.length}-byte file`);
  }
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength)));
  } catch (error) {
    return fail(`header is not valid JSON (${(error as Error).message})`);
  }
  const base = 8 + headerLength;
  const dataLength = bytes.length - base;
  const tensors: Record<string, HostTensor> = {};
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === "__metadata__") {
      metadata = entry as Record<string, string>;
      continue;
    }
    const e = entry as { dtype?: string; shape?: number[]; data_offsets?: number[] };
    if (e.dtype !== "F32" && e.dtype !== "F16" && e.dtype !== "BF16") {
      fail(`tensor "${name}": dtype ${e.dtype} is not supported (expected F32, F16 or BF16)`);
    }
    const dtype = e.dtype as SafetensorsDtype;
    if (!Array.isArray(e.shape) || e.shape.some((d) => !Number.isInteger(d) || d < 0)) {
      fail(`tensor "${name}": shape ${JSON.stringify(e.shape)} is not a list of sizes`);
    }
    const [begin, end] = e.data_offsets ?? [];
    const n = e.shape!.reduce((a, b) => a * b, 1);
    if (
      !Number.isInteger(begin) || !Number.isInteger(end) || begin < 0 || end > dataLength ||
      end - begin !== n * BYTES[dtype]
    ) {
      fail(
        `tensor "${name}": data_offsets ${
          JSON.stringify(e.data_offsets)
        } do not hold [${e.shape}] ${dtype} within ${dataLength} data bytes`,
      );
    }
    const data = new Float32Array(n);
    let at = base + begin;
    if (dtype === "F32" && LITTLE_ENDIAN) {
      new Uint8Array(data.buffer).set(bytes.subarray(at, at + 4 * n));
      tensors[name] = { dtype, shape: e.shape!, data };
      continue;
    }
    for (let i = 0; i < n; i++, at += BYTES[dtype]) {
      data[i] = dtype === "F32"
        ? view.getFloat32(at, true)
        : dtype === "F16"
        ? view.getFloat16(at, true)
        : new Float32Array(new Uint32Array([view.getUint16(at, true) << 16]).buffer)[0];
    }
    tensors[name] = { dtype, shape: e.shape!, data };
  }
  return { tensors, metadata };
}
