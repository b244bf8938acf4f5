/**
 * Writing .pth files: the writer still makes the bytes PyTorch checked (scripts/fixtures/check_voxssl_pth.py,
 * its verdict in tests/fixtures/pth/voxssl_written_check.json): torch loads them with the weights-only
 * allowlist, zip CRCs verify, aliases share one storage, and torch's tensors are the ones voxssl meant.
 */
import { assert, assertEquals } from "../../assert.ts";
import {
  encodePth,
  type HostTensor,
  openPth,
  type PyOrderedDict,
  readTorchCheckpoint,
  toHostTensor,
  type TorchTensor,
  ZipReader,
} from "../../../core/nn/mod.ts";
import { writtenCheckpoint } from "../../fixtures/pth_written.ts";

const dir = new URL("../../fixtures/pth/", import.meta.url);
const read = (name: string) => Deno.readFileSync(new URL(name, dir));
const CHECK = JSON.parse(new TextDecoder().decode(read("voxssl_written_check.json")));

async function sha256(bytes: Uint8Array): Promise<string> {
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return [...hash].map((b) => b.toString(16).padStart(2, "0")).join("");
}
const bytesOf = (t: TorchTensor) => new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);

const written = writtenCheckpoint() as Record<string, unknown>;
const source = new Map((written.network_weights as PyOrderedDict).entries as [string, HostTensor][]);

Deno.test("pth write: the writer makes the bytes PyTorch checked (plain and zip64 layouts)", () => {
  assertEquals(encodePth(writtenCheckpoint()), read("voxssl_written.pth"));
  assertEquals(encodePth(writtenCheckpoint(), { zip64End: true }), read("voxssl_written_zip64.pth"));
  assertEquals(
    encodePth(writtenCheckpoint(), { zip64Threshold: 64 }),
    read("voxssl_written_zip64_fields.pth"),
  );
});

Deno.test("pth write: torch loaded voxssl's files with the weights-only allowlist and got voxssl's tensors", async () => {
  for (const name of ["voxssl_written.pth", "voxssl_written_zip64.pth"]) {
    const c = CHECK[name];
    assert(c.crc_ok, `${name}: Python's zipfile verified every CRC`);
    assert(/weights_only|allowlist/.test(c.loader), c.loader);
    assertEquals(c.keys, ["network_weights", "nnssl_adaptation_plan", "trainer_name", "current_epoch"]);
    assertEquals(c.network_weights_type, "OrderedDict");
    assertEquals(c.trainer_name, "voxssl:mae@3.0.0");
    assertEquals(c.current_epoch, 7);
    assertEquals(c.nnssl_adaptation_plan.recommended_downstream_patchsize, [160, 160, 160]);
    assertEquals(c.nnssl_adaptation_plan.norm_op_kwargs, { eps: 1e-5, affine: true });
    assertEquals(c.nnssl_adaptation_plan.big, 2 ** 40);
    assertEquals(c.nnssl_adaptation_plan.negative, -70000);
    assertEquals(c.nnssl_adaptation_plan.spacing, [1, 0.5, 1.25]);
    assertEquals(c.shared_storages, [[
      "encoder.stem.convs.0.conv.weight",
      "encoder.stem.convs.0.all_modules.0.weight",
    ]]);
    // torch's view of each tensor against what voxssl wrote (read back by voxssl's reader: two readers agree)
    const ours = readTorchCheckpoint(openPth(read(name), name));
    for (
      const [k, t] of Object.entries(
        c.tensors as Record<string, { dtype: string; shape: number[]; sha256: string; values?: number[] }>,
      )
    ) {
      const mine = ours.weights.get(k)!;
      assertEquals(t.shape, source.get(k)!.shape, `${k} shape`);
      assertEquals(t.sha256, await sha256(bytesOf(mine)), `${k} bytes`);
      assertEquals(t.dtype, { F32: "float32", F16: "float16", BF16: "bfloat16" }[source.get(k)!.dtype], k);
    }
    // values torch printed, against the source values rounded independently of the writer
    assertEquals(c.tensors.scalar.values, [-2.5]);
    const brain = source.get("brain")!.data;
    (c.tensors.brain.values as number[]).forEach((v, i) =>
      assert(Math.abs(v - brain[i]) <= Math.abs(brain[i]) * 2 ** -8, `bf16 ${i}: ${v} vs ${brain[i]}`)
    );
    assertEquals(
      toHostTensor(ours.weights.get("half")!, "half").data,
      source.get("half")!.data.map(Math.f16round),
    );
  }
});

Deno.test("pth write: zip64 extra fields (a > 4 GiB layout) read back by Python's zipfile and by voxssl", async () => {
  const c = CHECK["voxssl_written_zip64_fields.pth"];
  assert(c.crc_ok);
  assertEquals(c.zip64_extra_fields, 10);
  const zip = new ZipReader(read("voxssl_written_zip64_fields.pth"), "zip64");
  assertEquals([...zip.entries.keys()], Object.keys(c.entries));
  for (const [name, hash] of Object.entries(c.entries)) {
    assertEquals(await sha256(zip.read(name)), hash, name);
  }
});

Deno.test("pth write: a round trip through voxssl's reader is exact for f32 and equal tensors share storage", () => {
  const a: HostTensor = { dtype: "F32", shape: [2, 3], data: Float32Array.of(1, -2, 3.5, 1e-30, -0, 7) };
  const b: HostTensor = { dtype: "F32", shape: [3, 2], data: Float32Array.from(a.data) };
  const bytes = encodePth({ a, b, a2: a });
  const file = openPth(bytes, "roundtrip");
  const ckpt = readTorchCheckpoint(file);
  for (const k of ["a", "a2"]) assertEquals(ckpt.weights.get(k)!.data, a.data);
  assertEquals(ckpt.weights.get("b")!.shape, [3, 2]);
  const zip = new ZipReader(bytes, "roundtrip");
  assertEquals([...zip.entries.keys()].filter((n) => n.startsWith("archive/data/")), ["archive/data/0"]);
});
