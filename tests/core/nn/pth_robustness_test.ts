/**
 * Bad checkpoints get a PthError naming the file and what is wrong: truncated zips, bad CRCs, unknown
 * pickle opcodes, storages shorter than their tensors, legacy files; and a seeded fuzz over corrupted
 * copies of the fixtures (byte flips, truncations) raises nothing but PthError.
 */
import { assert, assertThrows } from "../../assert.ts";
import {
  encodePth,
  openPth,
  PthError,
  readTorchCheckpoint,
  writeZip,
  ZipReader,
} from "../../../core/nn/mod.ts";

const dir = new URL("../../fixtures/pth/", import.meta.url);
const read = (name: string) => Deno.readFileSync(new URL(name, dir));
const load = (bytes: Uint8Array, name: string) => readTorchCheckpoint(openPth(bytes, name));

Deno.test("pth: a truncated zip is an error naming the file", () => {
  const bytes = read("resenc_state_dict.pth");
  assertThrows(() => load(bytes.slice(0, bytes.length - 30), "cut.pth"), PthError, "cut.pth: ");
  assertThrows(() => load(bytes.slice(0, 2000), "cut.pth"), PthError, "truncated");
});

Deno.test("pth: a corrupted storage fails its CRC, naming the entry and the tensor", () => {
  const bytes = read("dtypes.pth").slice();
  const zip = new ZipReader(bytes, "x");
  const entry = zip.entries.get("dtypes/data/0")!;
  bytes[entry.dataOffset + 1] ^= 0x40;
  const e = assertThrows(
    () => load(bytes, "flipped.pth"),
    PthError,
    `entry "dtypes/data/0" is corrupt: CRC-32`,
  );
  assert(e.message.startsWith("flipped.pth: "), e.message);
});

/** A checkpoint of one f32 tensor [2, 3] whose pickle is `pickle` and whose storage holds `storage`. */
function handMade(pickle: Uint8Array | null, storage: Uint8Array | null): Uint8Array {
  const good = new ZipReader(
    encodePth({ w: { dtype: "F32", shape: [2, 3], data: new Float32Array(6) } }),
    "x",
  );
  return writeZip([
    { name: "archive/data.pkl", data: pickle ?? good.read("archive/data.pkl") },
    { name: "archive/data/0", data: storage ?? good.read("archive/data/0") },
  ]);
}

Deno.test("pth: an unknown pickle opcode is an error naming it and its byte offset", () => {
  const bytes = handMade(Uint8Array.of(0x80, 2, 0x7d, 0xff, 0x2e), null);
  assertThrows(() => load(bytes, "op.pth"), PthError, "op.pth: data.pkl at byte 3 (opcode 0xff): unknown");
});

Deno.test("pth: a storage shorter than its tensor is an error naming the key", () => {
  const bytes = handMade(null, new Uint8Array(16));
  assertThrows(
    () => load(bytes, "short.pth"),
    PthError,
    `short.pth: tensor "w": storage "archive/data/0" has 16 bytes`,
  );
});

Deno.test("pth: legacy torch.save files and other files are refused with what they are", () => {
  assertThrows(
    () => openPth(Uint8Array.of(0x80, 2, 0x8a, 0x0a), "old.pth"),
    PthError,
    "legacy torch.save file",
  );
  assertThrows(
    () => openPth(new TextEncoder().encode("hello"), "text.pth"),
    PthError,
    "not a PyTorch checkpoint",
  );
});

/** mulberry32: a small seeded generator for the fuzz cases. */
function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

Deno.test("pth fuzz: 400 corrupted copies of the fixtures raise PthError or read, never anything else", () => {
  const fixtures = ["dtypes.pth", "nnssl_resenc_checkpoint.pth", "voxssl_written.pth", "forbidden_global.pth"]
    .map((n) => [n, read(n)] as const);
  const random = rng(14);
  let failed = 0, read_ = 0;
  for (let i = 0; i < 400; i++) {
    const [name, original] = fixtures[i % fixtures.length];
    let bytes = original.slice();
    const kind = Math.floor(random() * 3);
    if (kind !== 1) {
      // flip bytes, mostly inside data.pkl (the first entry) where the parser lives
      const flips = 1 + Math.floor(random() * 8);
      const span = random() < 0.7 ? Math.min(bytes.length, 1500) : bytes.length;
      for (let f = 0; f < flips; f++) bytes[Math.floor(random() * span)] ^= 1 << Math.floor(random() * 8);
    }
    if (kind !== 0) bytes = bytes.slice(0, Math.floor(random() * bytes.length));
    try {
      load(bytes, `${name}#${i}`);
      read_++;
    } catch (error) {
      if (!(error instanceof PthError)) {
        throw new Error(`case ${i} (${name}): ${(error as Error).name}: ${(error as Error).message}`);
      }
      assert(error.message.startsWith(`${name}#${i}: `), error.message);
      failed++;
    }
  }
  console.log(`fuzz: ${failed} clean errors, ${read_} still readable (flips in padding or unused bytes)`);
});

Deno.test("pth fuzz: 400 corrupted pickles re-zipped with valid CRCs raise PthError or read, never anything else", () => {
  const fixtures = [
    "dtypes.pth",
    "nnssl_resenc_checkpoint.pth",
    "numpy_scalars.pth",
    "nnssl_primus_evamae.pth",
  ]
    .map((n) => {
      const zip = new ZipReader(read(n), n);
      return { name: n, entries: [...zip.entries.keys()].map((e) => ({ name: e, data: zip.read(e) })) };
    });
  const random = rng(1414);
  const outcomes = new Map<string, number>();
  for (let i = 0; i < 400; i++) {
    const { name, entries } = fixtures[i % fixtures.length];
    const pkl = entries.find((e) => e.name.endsWith("/data.pkl"))!;
    let data = pkl.data.slice();
    const flips = 1 + Math.floor(random() * 4);
    for (let f = 0; f < flips; f++) data[Math.floor(random() * data.length)] ^= 1 << Math.floor(random() * 8);
    if (random() < 0.2) data = data.slice(0, Math.floor(random() * data.length));
    const bytes = writeZip(entries.map((e) => (e === pkl ? { name: e.name, data } : e)));
    try {
      load(bytes, `${name}#${i}`);
      outcomes.set("read", (outcomes.get("read") ?? 0) + 1);
    } catch (error) {
      if (!(error instanceof PthError)) {
        throw new Error(`case ${i} (${name}): ${(error as Error).name}: ${(error as Error).message}`);
      }
      const what = error.message.replace(/^.*?: (data\.pkl at byte \d+ \(opcode 0x..\): )?/, "").slice(0, 28);
      outcomes.set(what, (outcomes.get(what) ?? 0) + 1);
    }
  }
  console.log([...outcomes].sort((a, b) => b[1] - a[1]).slice(0, 8).map(([k, v]) => `${v}× ${k}`).join("\n"));
});
