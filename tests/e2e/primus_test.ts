import { assert, assertEquals } from "../assert.ts";
import { decodeSafetensors, loadCheckpoint, readMetrics } from "../../mod.ts";
import { voxssl } from "./cli.ts";

Deno.test("voxssl pretrain runs MAE on Primus-tiny and exports the reference's state dict", async () => {
  const dir = await Deno.makeTempDir();
  const out = `${dir}/run`;
  const { code, text } = await voxssl([
    "pretrain",
    "--arch",
    "primus-tiny",
    "--method",
    "mae",
    "--patch",
    "16",
    "--epochs",
    "1",
    "--steps",
    "2",
    "--batch",
    "1",
    "--out",
    out,
  ]);
  assertEquals(code, 0, text);
  assert(text.includes("model: primus@2.0.0") && text.includes("adamw"), text);
  const metrics = await readMetrics(`${out}/metrics.jsonl`);
  assertEquals(metrics.filter((m) => m.kind === "train").length, 1);
  assert(metrics.every((m) => Number.isFinite(m.loss)), JSON.stringify(metrics));
  const ckpt = await loadCheckpoint(`${out}/checkpoints/final.safetensors`);
  assertEquals(ckpt.meta.plugins, { architecture: "primus@2.0.0", method: "mae@3.0.0" });
  assertEquals(ckpt.meta.adaptationPlan.positionEmbeddingKeys, ["eva.pos_embed"]);
  const weights = decodeSafetensors(await Deno.readFile(`${out}/network.safetensors`));
  assertEquals(weights.tensors["eva.pos_embed"].shape, [1, 8, 48]); // 16³ / 8³ tokens
  assertEquals(weights.tensors["mask_token"].shape, [1, 1, 48]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("voxssl pretrain --dry-run counts Primus-M's 151,786,529 parameters at 160³ with EvaMAE's optimizer", async () => {
  const { code, text } = await voxssl(["pretrain", "--arch", "primus-m", "--method", "mae", "--dry-run"]);
  assertEquals(code, 0, text);
  assert(text.includes("parameters (network): 151,786,529"), text);
  assert(text.includes('"name": "adamw"') && text.includes('"weightDecay": 0.05'), text);
  assert(text.includes('"patch": [\n    160'), text);
  // the position embedding follows the patch: 144,874,529 + 864 per token
  const small = await voxssl([
    "pretrain",
    "--arch",
    "primus-m",
    "--method",
    "mae",
    "--patch",
    "96",
    "--dry-run",
  ]);
  assert(
    small.text.includes(`parameters (network): ${(144_874_529 + 864 * 12 ** 3).toLocaleString("en-US")}`),
    small.text,
  );
});
