/**
 * A restricted unpickler for `data.pkl` of PyTorch checkpoints: the opcodes of pickle protocols 0–5 that
 * data needs, and only the globals a state dict or an nnssl checkpoint needs, as
 * `torch.load(weights_only=True)` allows them (tensor and parameter rebuild, typed storages,
 * OrderedDict), plus `_codecs.encode` (protocol 2's bytes) and numpy scalars (nnU-Net-family checkpoints
 * log numpy floats), both decoded as data. Any other global is refused by name before anything is built,
 * so reading a checkpoint never runs code. Tensors come back as {@link TensorRef}s to read from the
 * archive later.
 *
 * Value model: dict → Map (insertion order), list and tuple → array, int → number (bigint beyond 2^53),
 * float → number, str → string, bytes → Uint8Array, None → null.
 */
import { PthError } from "./errors.ts";

/** Element types of PyTorch storages that voxssl reads. */
export type TorchDtype =
  | "float32"
  | "float64"
  | "float16"
  | "bfloat16"
  | "int64"
  | "int32"
  | "int16"
  | "int8"
  | "uint8"
  | "bool";

/** Bytes per element of each dtype. */
export const TORCH_DTYPE_BYTES: Record<TorchDtype, number> = {
  float32: 4,
  float64: 8,
  float16: 2,
  bfloat16: 2,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
};

/** torch's legacy typed-storage class names (what `torch.save` pickles) and their dtypes. */
export const STORAGE_CLASSES: Record<string, TorchDtype> = {
  FloatStorage: "float32",
  DoubleStorage: "float64",
  HalfStorage: "float16",
  BFloat16Storage: "bfloat16",
  LongStorage: "int64",
  IntStorage: "int32",
  ShortStorage: "int16",
  CharStorage: "int8",
  ByteStorage: "uint8",
  BoolStorage: "bool",
};

/** A storage the pickle refers to: entry `data/<key>` of the archive. */
export interface StorageRef {
  /** The archive key (entry `data/<key>`). */
  key: string;
  /** Element type. */
  dtype: TorchDtype;
  /** Elements the pickle says the storage holds. */
  numel: number;
}

/** A tensor as the pickle describes it: a strided view into a storage. */
export class TensorRef {
  /** A view of `storage` starting at element `offset`. */
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}
}

/** A value of an unpickled checkpoint. */
export type PyValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | TensorRef
  | PyValue[]
  | Map<PyValue, PyValue>;

class Global {
  constructor(readonly module: string, readonly name: string) {}
  get path(): string {
    return `${this.module}.${this.name}`;
  }
}
class StorageType {
  constructor(readonly dtype: TorchDtype) {}
}
class NumpyDtype {
  order = "<";
  constructor(readonly code: string) {}
}

const UTF8 = new TextDecoder("utf-8", { fatal: true });
const LATIN1 = new TextDecoder("latin1");

/** The globals a checkpoint may name (everything else is refused). */
export const ALLOWED_GLOBALS: readonly string[] = [
  "collections.OrderedDict",
  "torch._utils._rebuild_tensor_v2",
  "torch._utils._rebuild_parameter",
  "torch._utils._rebuild_parameter_with_state",
  ...Object.keys(STORAGE_CLASSES).map((c) => `torch.${c}`),
  "_codecs.encode",
  "numpy.core.multiarray.scalar",
  "numpy._core.multiarray.scalar",
  "numpy.dtype",
];
const ALLOWED = new Set(ALLOWED_GLOBALS);

/** Unpickles `bytes` (the archive's data.pkl); `source` names the file in errors. */
export function unpickle(bytes: Uint8Array, source: string): PyValue {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // deno-lint-ignore no-explicit-any
  let stack: any[] = [];
  // deno-lint-ignore no-explicit-any
  const marks: any[][] = [];
  // deno-lint-ignore no-explicit-any
  const memo = new Map<number, any>();
  let pos = 0;
  let op = 0;
  let opAt = 0;
  const fail = (what: string): never => {
    throw new PthError(`${source}: data.pkl at byte ${opAt} (opcode 0x${hex2(op)}): ${what}`);
  };
  const need = (n: number) => {
    if (n < 0 || pos + n > bytes.length) {
      fail(`truncated pickle (needs ${n} more bytes, ${bytes.length - pos} left)`);
    }
  };
  const u8 = () => (need(1), bytes[pos++]);
  const u16 = () => (need(2), (pos += 2), view.getUint16(pos - 2, true));
  const i32 = () => (need(4), (pos += 4), view.getInt32(pos - 4, true));
  const u32 = () => (need(4), (pos += 4), view.getUint32(pos - 4, true));
  const u64 = () => {
    const lo = u32(), hi = u32();
    if (hi >= 0x200000) fail("length beyond 2^53");
    return hi * 2 ** 32 + lo;
  };
  const take = (n: number) => (need(n), (pos += n), bytes.subarray(pos - n, pos));
  const line = () => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) fail("truncated pickle (a text argument has no newline)");
    const s = LATIN1.decode(bytes.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const utf8 = (b: Uint8Array) => {
    try {
      return UTF8.decode(b);
    } catch {
      return fail("a string is not valid UTF-8");
    }
  };
  const pop = () => {
    if (stack.length === 0) fail("stack underflow");
    return stack.pop();
  };
  const top = () => {
    if (stack.length === 0) fail("stack underflow");
    return stack[stack.length - 1];
  };
  const popMark = () => {
    const items = stack;
    if (marks.length === 0) fail("no MARK on the stack");
    stack = marks.pop()!;
    return items;
  };
  const memoGet = (i: number) => {
    if (!memo.has(i)) fail(`memo entry ${i} was never stored`);
    return memo.get(i);
  };
  const global = (module: string, name: string) => {
    const g = new Global(module, name);
    if (!ALLOWED.has(g.path)) {
      fail(
        `global "${g.path}" is not allowed in a checkpoint (voxssl never runs code from a checkpoint; ` +
          `it reads tensors, storages, OrderedDict, plain containers, numbers and strings)`,
      );
    }
    const storage = module === "torch" ? STORAGE_CLASSES[name] : undefined;
    return storage ? new StorageType(storage) : g;
  };
  // deno-lint-ignore no-explicit-any
  const setItem = (dict: any, k: any, v: any) => {
    if (!(dict instanceof Map)) fail("SETITEM on something that is not a dict");
    dict.set(k, v);
  };
  // deno-lint-ignore no-explicit-any
  const call = (fn: any, args: any): any => {
    if (!(fn instanceof Global)) fail("REDUCE on something that is not an allowed global");
    if (!Array.isArray(args)) fail(`${fn.path}: arguments are not a tuple`);
    const int = (x: unknown, what: string) => {
      if (typeof x !== "number" || !Number.isInteger(x) || x < 0) fail(`${fn.path}: ${what} is not a size`);
      return x as number;
    };
    switch (fn.path) {
      case "collections.OrderedDict":
        return new Map();
      case "torch._utils._rebuild_tensor_v2": {
        const [storage, offset, size, stride] = args;
        if (!storage || typeof storage !== "object" || !("key" in storage)) {
          fail("_rebuild_tensor_v2: the first argument is not a storage");
        }
        if (!Array.isArray(size) || !Array.isArray(stride) || size.length !== stride.length) {
          fail("_rebuild_tensor_v2: size and stride are not tuples of one length");
        }
        return new TensorRef(
          storage as StorageRef,
          int(offset, "offset"),
          size.map((s: unknown) => int(s, "a size")),
          stride.map((s: unknown) => int(s, "a stride")),
        );
      }
      case "torch._utils._rebuild_parameter":
      case "torch._utils._rebuild_parameter_with_state":
        if (!(args[0] instanceof TensorRef)) fail(`${fn.path}: the first argument is not a tensor`);
        return args[0];
      case "_codecs.encode": {
        const [text, encoding] = args;
        if (typeof text !== "string" || !/^latin[-_]?1$/i.test(String(encoding))) {
          fail(`_codecs.encode: only (str, "latin1") is read`);
        }
        return Uint8Array.from(text as string, (c) => c.charCodeAt(0) & 0xff);
      }
      case "numpy.dtype":
        if (typeof args[0] !== "string") fail("numpy.dtype: the type code is not a string");
        return new NumpyDtype(args[0]);
      case "numpy.core.multiarray.scalar":
      case "numpy._core.multiarray.scalar":
        return numpyScalar(args[0], args[1], fail);
    }
    return fail(`global "${fn.path}" cannot be called`);
  };

  while (true) {
    opAt = pos;
    if (pos >= bytes.length) fail("truncated pickle (no STOP opcode)");
    op = bytes[pos++];
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) fail("pickle protocol above 5");
        break;
      case 0x95: // FRAME
        u64();
        break;
      case 0x2e: // STOP
        if (stack.length !== 1 || marks.length) fail("the stack does not hold exactly one value at STOP");
        return stack[0];
      case 0x28: // MARK
        marks.push(stack);
        stack = [];
        break;
      case 0x30: // POP
        pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x5d: // EMPTY_LIST
      case 0x29: // EMPTY_TUPLE
      case 0x8f: // EMPTY_SET
        stack.push([]);
        break;
      case 0x74: // TUPLE
      case 0x6c: // LIST
      case 0x91: { // FROZENSET
        const items = popMark(); // (not `stack.push(popMark())`: popMark replaces `stack`)
        stack.push(items);
        break;
      }
      case 0x85: // TUPLE1
        stack.push([pop()]);
        break;
      case 0x86: { // TUPLE2
        const b = pop(), a = pop();
        stack.push([a, b]);
        break;
      }
      case 0x87: { // TUPLE3
        const c = pop(), b = pop(), a = pop();
        stack.push([a, b, c]);
        break;
      }
      case 0x64: { // DICT
        const items = popMark();
        if (items.length % 2) fail("DICT with an odd number of items");
        const d = new Map();
        for (let i = 0; i < items.length; i += 2) d.set(items[i], items[i + 1]);
        stack.push(d);
        break;
      }
      case 0x61: { // APPEND
        const v = pop();
        const list = top();
        if (!Array.isArray(list)) fail("APPEND to something that is not a list");
        list.push(v);
        break;
      }
      case 0x65: // APPENDS
      case 0x90: { // ADDITEMS
        const items = popMark();
        const list = top();
        if (!Array.isArray(list)) fail("APPENDS to something that is not a list");
        for (const v of items) list.push(v);
        break;
      }
      case 0x73: { // SETITEM
        const v = pop(), k = pop();
        setItem(top(), k, v);
        break;
      }
      case 0x75: { // SETITEMS
        const items = popMark();
        if (items.length % 2) fail("SETITEMS with an odd number of items");
        const d = top();
        for (let i = 0; i < items.length; i += 2) setItem(d, items[i], items[i + 1]);
        break;
      }
      case 0x4a: // BININT
        stack.push(i32());
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x8a: // LONG1
        stack.push(long(take(u8())));
        break;
      case 0x8b: { // LONG4
        const n = i32();
        if (n < 0) fail("negative LONG4 length");
        stack.push(long(take(n)));
        break;
      }
      case 0x49: { // INT (text; also protocol 0's True/False)
        const s = line();
        if (s === "01" || s === "00") stack.push(s === "01");
        else if (/^-?\d+$/.test(s)) stack.push(intOf(BigInt(s)));
        else fail(`INT argument "${s}" is not an integer`);
        break;
      }
      case 0x4c: { // LONG (text)
        const s = line().replace(/L$/, "");
        if (!/^-?\d+$/.test(s)) fail(`LONG argument "${s}" is not an integer`);
        stack.push(intOf(BigInt(s)));
        break;
      }
      case 0x46: { // FLOAT (text)
        const x = Number(line());
        if (Number.isNaN(x)) fail("FLOAT argument is not a number");
        stack.push(x);
        break;
      }
      case 0x47: // BINFLOAT (big-endian)
        need(8);
        stack.push(view.getFloat64(pos, false));
        pos += 8;
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x58: // BINUNICODE
        stack.push(utf8(take(u32())));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(utf8(take(u8())));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(utf8(take(u64())));
        break;
      case 0x55: // SHORT_BINSTRING
        stack.push(LATIN1.decode(take(u8())));
        break;
      case 0x54: { // BINSTRING
        const n = i32();
        if (n < 0) fail("negative BINSTRING length");
        stack.push(LATIN1.decode(take(n)));
        break;
      }
      case 0x43: // SHORT_BINBYTES
        stack.push(take(u8()).slice());
        break;
      case 0x42: // BINBYTES
        stack.push(take(u32()).slice());
        break;
      case 0x8e: // BINBYTES8
        stack.push(take(u64()).slice());
        break;
      case 0x63: { // GLOBAL
        const module = line();
        stack.push(global(module, line()));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop(), module = pop();
        if (typeof module !== "string" || typeof name !== "string") {
          fail("STACK_GLOBAL names are not strings");
        }
        stack.push(global(module, name));
        break;
      }
      case 0x52: { // REDUCE
        const args = pop();
        const fn = pop();
        stack.push(call(fn, args));
        break;
      }
      case 0x62: { // BUILD
        const state = pop();
        const obj = top();
        if (obj instanceof NumpyDtype) {
          // state (version, byte order, …): only the byte order matters for a scalar
          if (Array.isArray(state) && typeof state[1] === "string") obj.order = state[1];
        } else if (obj instanceof Map || obj instanceof TensorRef) {
          // a state dict's `_metadata` (module versions) or a parameter's attributes: not needed
        } else {
          fail("BUILD on an object that takes no state");
        }
        break;
      }
      case 0x51: { // BINPERSID
        stack.push(persistentLoad(pop(), fail));
        break;
      }
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x68: // BINGET
        stack.push(memoGet(u8()));
        break;
      case 0x6a: // LONG_BINGET
        stack.push(memoGet(u32()));
        break;
      default:
        fail(`unknown or unsupported pickle opcode 0x${hex2(op)}`);
    }
  }
}

const hex2 = (x: number) => x.toString(16).padStart(2, "0");

function intOf(x: bigint): number | bigint {
  return x >= BigInt(Number.MIN_SAFE_INTEGER) && x <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(x) : x;
}

/** Little-endian two's-complement integer (LONG1/LONG4). */
function long(b: Uint8Array): number | bigint {
  if (b.length === 0) return 0;
  let x = 0n;
  for (let i = b.length - 1; i >= 0; i--) x = (x << 8n) | BigInt(b[i]);
  if (b[b.length - 1] & 0x80) x -= 1n << BigInt(8 * b.length);
  return intOf(x);
}

/** `('storage', StorageClass, key, location, numel)` → a storage reference. */
// deno-lint-ignore no-explicit-any
function persistentLoad(pid: any, fail: (what: string) => never): StorageRef {
  if (!Array.isArray(pid) || pid[0] !== "storage" || pid.length < 5) {
    fail("persistent id is not ('storage', type, key, location, numel)");
  }
  const [, type, key, , numel] = pid;
  if (!(type instanceof StorageType)) fail("persistent id names no storage type");
  if (typeof key !== "string" || !/^[\w.-]+$/.test(key)) fail("persistent id has no valid storage key");
  if (typeof numel !== "number" || !Number.isInteger(numel) || numel < 0) {
    fail("persistent id has no element count");
  }
  return { key, dtype: type.dtype, numel };
}

const NUMPY_CODES: Record<string, [number, (v: DataView, le: boolean) => number]> = {
  f8: [8, (v, le) => v.getFloat64(0, le)],
  f4: [4, (v, le) => v.getFloat32(0, le)],
  f2: [2, (v, le) => v.getFloat16(0, le)],
  i8: [8, (v, le) => Number(v.getBigInt64(0, le))],
  i4: [4, (v, le) => v.getInt32(0, le)],
  i2: [2, (v, le) => v.getInt16(0, le)],
  i1: [1, (v) => v.getInt8(0)],
  u8: [8, (v, le) => Number(v.getBigUint64(0, le))],
  u4: [4, (v, le) => v.getUint32(0, le)],
  u2: [2, (v, le) => v.getUint16(0, le)],
  u1: [1, (v) => v.getUint8(0)],
  b1: [1, (v) => v.getUint8(0)],
};

function numpyScalar(dtype: unknown, data: unknown, fail: (what: string) => never): number {
  if (!(dtype instanceof NumpyDtype) || !(data instanceof Uint8Array)) {
    fail("numpy scalar without a dtype and its bytes");
  }
  const entry = NUMPY_CODES[dtype.code];
  if (!entry) fail(`numpy scalar of dtype "${dtype.code}" is not read`);
  if (data.length !== entry[0]) fail(`numpy ${dtype.code} scalar has ${data.length} bytes`);
  return entry[1](new DataView(data.buffer, data.byteOffset, data.byteLength), dtype.order !== ">");
}
