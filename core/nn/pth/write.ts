/**
 * Writing checkpoints that `torch.load(path, weights_only=True)` reads: a protocol-2 pickle the way
 * `torch.save` writes it (tensors as `torch._utils._rebuild_tensor_v2` over persistent-id storages
 * `('storage', torch.FloatStorage, key, 'cpu', numel)`, state dicts as `collections.OrderedDict`), inside
 * torch's zip layout: `archive/data.pkl`, `archive/byteorder`, `archive/data/<key>`, `archive/version`,
 * `archive/.data/serialization_id`, every entry STORED and 64-byte aligned. Tensors with equal bytes share
 * one storage (as PyTorch's aliases do), so a reference-form export is not four times its size.
 */
import type { HostTensor } from "../safetensors.ts";
import { crc32 } from "./crc32.ts";
import { PthError } from "./errors.ts";
import { writeZip, type ZipWriteOptions } from "./zip.ts";

/** A tuple (arrays are written as lists). */
export class PyTuple {
  /** The items. */
  constructor(readonly items: PickleValue[]) {}
}

/** An `collections.OrderedDict` (plain objects and Maps are written as dicts). */
export class PyOrderedDict {
  /** The entries, in order. */
  constructor(readonly entries: [string, PickleValue][]) {}
}

/** A value {@link encodePth} writes: JSON-like data, tuples, ordered dicts and host tensors. */
export type PickleValue =
  | null
  | boolean
  | number
  | string
  | HostTensor
  | PyTuple
  | PyOrderedDict
  | PickleValue[]
  | { [key: string]: PickleValue };

const STORAGE = { F32: ["FloatStorage", 4], F16: ["HalfStorage", 2], BF16: ["BFloat16Storage", 2] } as const;

class Out {
  private buf = new Uint8Array(1 << 16);
  length = 0;
  private grow(n: number) {
    if (this.length + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.length + n));
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
  }
  byte(...bs: number[]) {
    this.grow(bs.length);
    for (const b of bs) this.buf[this.length++] = b;
  }
  bytes(b: Uint8Array) {
    this.grow(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }
  u32(x: number) {
    this.byte(x & 0xff, (x >>> 8) & 0xff, (x >>> 16) & 0xff, (x >>> 24) & 0xff);
  }
  result() {
    return this.buf.slice(0, this.length);
  }
}

const isHostTensor = (v: unknown): v is HostTensor =>
  typeof v === "object" && v !== null && "data" in v && "shape" in v && "dtype" in v &&
  (v as HostTensor).data instanceof Float32Array;

/** Serialises `value` to the bytes of a `.pth` file. */
export function encodePth(value: PickleValue, options: ZipWriteOptions = {}): Uint8Array {
  const out = new Out();
  const enc = new TextEncoder();
  const storages: { key: string; data: Uint8Array }[] = [];
  const shared = new Map<HostTensor, string>();
  const byContent = new Map<string, { key: string; data: Uint8Array }[]>();
  const str = (s: string) => {
    const b = enc.encode(s);
    out.byte(0x58); // BINUNICODE
    out.u32(b.length);
    out.bytes(b);
  };
  const global = (module: string, name: string) => {
    out.byte(0x63);
    out.bytes(enc.encode(`${module}\n${name}\n`));
  };
  const int = (x: number) => {
    if (x >= 0 && x < 256) out.byte(0x4b, x);
    else if (x >= 0 && x < 65536) out.byte(0x4d, x & 0xff, x >> 8);
    else if (x >= -(2 ** 31) && x < 2 ** 31) (out.byte(0x4a)), out.u32(x >>> 0);
    else {
      // LONG1: little-endian two's complement, shortest form
      let v = BigInt(x);
      const bytes: number[] = [];
      while (true) {
        bytes.push(Number(v & 0xffn));
        v >>= 8n;
        const sign = bytes[bytes.length - 1] & 0x80;
        if ((v === 0n && !sign) || (v === -1n && sign)) break;
      }
      out.byte(0x8a, bytes.length, ...bytes);
    }
  };
  const tuple = (items: (() => void)[]) => {
    out.byte(0x28);
    for (const w of items) w();
    out.byte(0x74);
  };
  const tensor = (t: HostTensor, where: string) => {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) throw new PthError(`${where}: ${t.data.length} values for shape [${t.shape}]`);
    const [cls, width] = STORAGE[t.dtype];
    // one storage per tensor object: aliases (the same HostTensor under several keys) share it, as in torch
    // and so do equal tensors (a reference-form export repeats ResEnc's encoder under four keys)
    let key = shared.get(t);
    if (key === undefined) {
      const bytes = new Uint8Array(n * width);
      const view = new DataView(bytes.buffer);
      if (t.dtype === "F32") bytes.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
      else if (t.dtype === "F16") t.data.forEach((x, i) => view.setFloat16(2 * i, x, true));
      else t.data.forEach((x, i) => view.setUint16(2 * i, bf16Bits(x), true));
      const id = `${cls}:${bytes.length}:${crc32(bytes)}`;
      key = (byContent.get(id) ?? []).find((s) => equalBytes(s.data, bytes))?.key;
      if (key === undefined) {
        key = String(storages.length);
        storages.push({ key, data: bytes });
        byContent.set(id, [...(byContent.get(id) ?? []), { key, data: bytes }]);
      }
      shared.set(t, key);
    }
    const storageKey = key;
    const stride: number[] = [];
    for (let d = t.shape.length - 1, s = 1; d >= 0; d--) (stride[d] = s), (s *= t.shape[d]);
    global("torch._utils", "_rebuild_tensor_v2");
    tuple([
      () => {
        tuple([
          () => str("storage"),
          () => global("torch", cls),
          () => str(storageKey),
          () => str("cpu"),
          () => int(n),
        ]);
        out.byte(0x51); // BINPERSID
      },
      () => int(0),
      () => tuple(t.shape.map((s) => () => int(s))),
      () => tuple(stride.map((s) => () => int(s))),
      () => out.byte(0x89), // requires_grad False
      () => {
        global("collections", "OrderedDict");
        out.byte(0x29, 0x52); // () REDUCE
      },
    ]);
    out.byte(0x52);
  };
  const write = (v: PickleValue, where: string): void => {
    if (v === null) out.byte(0x4e);
    else if (v === true) out.byte(0x88);
    else if (v === false) out.byte(0x89);
    else if (typeof v === "number") {
      if (Number.isInteger(v) && Math.abs(v) <= Number.MAX_SAFE_INTEGER && !Object.is(v, -0)) int(v);
      else {
        out.byte(0x47);
        const b = new Uint8Array(8);
        new DataView(b.buffer).setFloat64(0, v, false);
        out.bytes(b);
      }
    } else if (typeof v === "string") str(v);
    else if (v instanceof PyTuple) {
      if (v.items.length === 0) out.byte(0x29);
      else tuple(v.items.map((x, i) => () => write(x, `${where}[${i}]`)));
    } else if (Array.isArray(v)) {
      out.byte(0x5d);
      if (v.length) {
        out.byte(0x28);
        v.forEach((x, i) => write(x, `${where}[${i}]`));
        out.byte(0x65); // APPENDS
      }
    } else if (isHostTensor(v)) tensor(v, where);
    else {
      const entries = v instanceof PyOrderedDict ? v.entries : Object.entries(v);
      if (v instanceof PyOrderedDict) {
        global("collections", "OrderedDict");
        out.byte(0x29, 0x52);
      } else out.byte(0x7d);
      if (entries.length) {
        out.byte(0x28);
        for (const [k, x] of entries) {
          str(k);
          write(x, `${where}.${k}`);
        }
        out.byte(0x75); // SETITEMS
      }
    }
  };
  out.byte(0x80, 2);
  write(value, "checkpoint");
  out.byte(0x2e);
  const text = (s: string) => new TextEncoder().encode(s);
  return writeZip([
    { name: "archive/data.pkl", data: out.result() },
    { name: "archive/byteorder", data: text("little") },
    ...storages.map((s) => ({ name: `archive/data/${s.key}`, data: s.data })),
    { name: "archive/version", data: text("3\n") },
    { name: "archive/.data/serialization_id", data: text(serializationId(storages.length)) },
  ], options);
}

/** torch writes a random 40-digit id; voxssl writes a deterministic one (same input, same file). */
function serializationId(n: number): string {
  return String(n).padStart(40, "0");
}

function bf16Bits(x: number): number {
  const f = new DataView(new ArrayBuffer(4));
  f.setFloat32(0, x, true);
  let bits = f.getUint32(0, true);
  if (Number.isNaN(x)) bits = 0x7fc00000;
  else bits = (bits + 0x7fff + ((bits >>> 16) & 1)) >>> 0; // round to nearest even
  return bits >>> 16;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
