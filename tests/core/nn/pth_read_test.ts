/**
 * Reading PyTorch checkpoints: every fixture of tests/fixtures/pth (written by torch.save in
 * scripts/fixtures/make_pth_fixtures.py) is read exactly: SHA-256 of each tensor's bytes, shapes, dtypes
 * and values as the script computed them with torch; refused globals; numpy scalars; nnssl's dict.
 */
import { assert, assertEquals, assertThrows } from "../../assert.ts";
import {
  openPth,
  PthError,
  readTorchCheckpoint,
  TensorRef,
  toHostTensor,
  type TorchTensor,
} from "../../../core/nn/mod.ts";

const dir = new URL("../../fixtures/pth/", import.meta.url);
const read = (name: string) => Deno.readFileSync(new URL(name, dir));
const EXPECTED = JSON.parse(new TextDecoder().decode(read("expected.json")));

interface Described {
  dtype: string;
  shape: number[];
  sha256: string;
  values?: number[];
}

async function sha256(t: TorchTensor): Promise<string> {
  const d = t.data;
  const bytes = new Uint8Array(d.buffer as ArrayBuffer, d.byteOffset, d.byteLength);
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return [...hash].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function checkTensor(t: TorchTensor, want: Described, key: string) {
  assertEquals(t.dtype, want.dtype, `${key} dtype`);
  assertEquals(t.shape, want.shape, `${key} shape`);
  assertEquals(await sha256(t), want.sha256, `${key} bytes`);
}

Deno.test("pth: a ResEnc state dict saved by torch reads exactly, aliases included", async () => {
  const file = openPth(read("resenc_state_dict.pth"), "resenc_state_dict.pth");
  const ckpt = readTorchCheckpoint(file);
  const want = EXPECTED.resenc_state_dict.tensors as Record<string, Described>;
  assertEquals(ckpt.weightsKey, null);
  assertEquals([...ckpt.weights.keys()], Object.keys(want));
  for (const [k, t] of ckpt.weights) await checkTensor(t, want[k], k);
  assert(ckpt.weights.has("decoder.encoder.stem.convs.0.all_modules.0.weight"), "alias keys are listed");
});

Deno.test("pth: nnssl's checkpoint dict gives network_weights, the adaptation plan, trainer and epoch", async () => {
  const ckpt = readTorchCheckpoint(openPth(read("nnssl_resenc_checkpoint.pth"), "nnssl.pth"));
  const want = EXPECTED.nnssl_resenc_checkpoint;
  assertEquals(ckpt.weightsKey, "network_weights");
  assertEquals(ckpt.trainerName, want.trainer_name);
  assertEquals(ckpt.currentEpoch, want.current_epoch);
  assertEquals(ckpt.adaptationPlan, want.nnssl_adaptation_plan);
  for (const [k, t] of ckpt.weights) await checkTensor(t, want.tensors[k], k);
  assertEquals(ckpt.weights.size, Object.keys(want.tensors).length);
});

Deno.test("pth: f16, bf16, f64 and integer dtypes, strided and offset views, 0-d, empty, Parameter", async () => {
  const file = openPth(read("dtypes.pth"), "dtypes.pth");
  const ckpt = readTorchCheckpoint(file);
  const want = EXPECTED.dtypes.tensors as Record<string, Described>;
  assertEquals([...ckpt.weights.keys()], Object.keys(want));
  for (const [k, t] of ckpt.weights) {
    await checkTensor(t, want[k], k);
    const values = t.dtype === "bfloat16"
      ? [...toHostTensor(t, k).data]
      : t.data instanceof BigInt64Array
      ? [...t.data].map(Number)
      : Array.from(t.data as ArrayLike<number>);
    assertEquals(values, want[k].values, `${k} values`);
  }
  // the views really were views in the file (not contiguous copies)
  const root = file.root as Map<unknown, unknown>;
  for (
    const [k, v] of Object.entries(
      EXPECTED.dtypes.views as Record<string, { offset: number; stride: number[] }>,
    )
  ) {
    const ref = root.get(k) as TensorRef;
    assert(ref instanceof TensorRef);
    assertEquals([ref.offset, ref.stride], [v.offset, v.stride], k);
  }
  // floats convert to voxssl's host form exactly
  const f16 = toHostTensor(ckpt.weights.get("f16")!, "f16");
  assertEquals([...f16.data], want.f16.values);
  assertThrows(() => toHostTensor(ckpt.weights.get("i64")!, "i64"), PthError, "int64");
});

Deno.test("pth: numpy scalars (nnU-Net-family logs) read as numbers", () => {
  const root = openPth(read("numpy_scalars.pth"), "numpy_scalars.pth").root as Map<unknown, unknown>;
  assertEquals(root.get("value"), 0.1);
  assertEquals(root.get("count"), -3);
});

Deno.test("pth: a pickle naming any other global is refused by name, before anything runs", () => {
  const error = assertThrows(
    () => openPth(read("forbidden_global.pth"), "forbidden_global.pth"),
    PthError,
    `global "${EXPECTED.forbidden_global.global}" is not allowed`,
  );
  assert(error.message.startsWith("forbidden_global.pth: "), error.message);
});
