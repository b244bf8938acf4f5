/**
 * Masked image modelling on a ViT from the CLI: MAE with token dropping and SimMIM pretrain Primus-tiny on
 * synthetic volumes; the loss falls, the method's modules are checkpointed beside the network (and kept out
 * of network.safetensors), and a run stopped by SIGTERM and resumed logs exactly the uninterrupted curve.
 */
import { assert, assertEquals } from "../assert.ts";
import { decodeSafetensors, loadCheckpoint, type MetricsRecord, readMetrics } from "../../mod.ts";
import { spawnVoxssl, voxssl, writeConfig } from "./cli.ts";

/** 3 epochs × 4 steps of Primus-tiny on 16³ patches (8 tokens of 8³), a fixed seed, a constant 3e-3. */
function run(method: string, out: string): Record<string, unknown> {
  return {
    arch: "primus-tiny",
    method,
    data: "synthetic",
    synthetic: { volumes: 4, size: [24, 24, 24] },
    patch: [16, 16, 16],
    batch: 2,
    epochs: 3,
    stepsPerEpoch: 4,
    logEvery: 2,
    validationBatches: 1,
    workers: 0,
    optimizer: { name: "adamw", lr: 3e-3, weightDecay: 0 },
    schedule: { name: "constant" },
    seed: 1,
    out,
  };
}

/** Runs `method` to the end, and again stopped by SIGTERM after step 2 and resumed; returns the first run's folder and metrics. */
async function trainStopResume(
  dir: string,
  method: string,
): Promise<{ out: string; metrics: MetricsRecord[] }> {
  const full = `${dir}/full`;
  const cut = `${dir}/cut`;
  await Deno.mkdir(`${dir}/f`);
  await Deno.mkdir(`${dir}/c`);
  const done = await voxssl(["pretrain", "--config", await writeConfig(`${dir}/f`, run(method, full))]);
  assertEquals(done.code, 0, done.text);
  const stopped = spawnVoxssl(["pretrain", "--config", await writeConfig(`${dir}/c`, run(method, cut))]);
  await stopped.waitFor("step 2/12");
  stopped.child.kill("SIGTERM");
  const rest = await stopped.rest();
  const status = await stopped.child.status;
  await stopped.child.stderr.cancel();
  assertEquals(status.code, 0, rest);
  assert(rest.includes("stopped by SIGTERM"), rest);
  const resumed = await voxssl(["pretrain", "--resume", cut]);
  assertEquals(resumed.code, 0, resumed.text);
  const curve = async (out: string) =>
    (await readMetrics(`${out}/metrics.jsonl`)).map((m) => `${m.kind}@${m.step}:${m.loss}`);
  assertEquals(await curve(cut), await curve(full), "the resumed run logs the uninterrupted curve");
  return { out: full, metrics: await readMetrics(`${full}/metrics.jsonl`) };
}

function assertFalls(metrics: MetricsRecord[]): void {
  const train = metrics.filter((m) => m.kind === "train").map((m) => m.loss);
  const validation = metrics.filter((m) => m.kind === "validation").map((m) => m.loss);
  assertEquals([train.length, validation.length], [6, 3]);
  const text = `train ${train.map((l) => l.toFixed(3)).join(" ")}; validation ${
    validation.map((l) => l.toFixed(3)).join(" ")
  }`;
  assert(train[4] + train[5] < train[0] + train[1] - 0.2, `training loss falls: ${text}`);
  assert(validation[2] < validation[0] - 0.1, `validation loss falls: ${text}`);
}

Deno.test("voxssl pretrain: MAE with token dropping on Primus-tiny learns, checkpoints its decoder and resumes exactly", async () => {
  const dir = await Deno.makeTempDir();
  const { out, metrics } = await trainStopResume(dir, "mae");
  assertFalls(metrics);
  const ckpt = await loadCheckpoint(`${out}/checkpoints/final.safetensors`);
  assertEquals(ckpt.meta.plugins, { architecture: "primus@2.0.0", method: "mae@3.0.0" });
  assertEquals(ckpt.weights["method.decoder.pos_embed"].shape, [1, 8, 48]);
  assertEquals(ckpt.weights["method.decoder.mask_token"].shape, [1, 1, 48]);
  assert("method.decoder.blocks.1.mlp.fc2.weight" in ckpt.weights);
  const network = decodeSafetensors(await Deno.readFile(`${out}/network.safetensors`));
  assert(!Object.keys(network.tensors).some((k) => k.includes("decoder")), "the method's decoder stays out");
  assertEquals(network.tensors["eva.pos_embed"].shape, [1, 8, 48]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("voxssl pretrain: SimMIM on Primus-tiny learns, checkpoints its mask token and resumes exactly", async () => {
  const dir = await Deno.makeTempDir();
  const { out, metrics } = await trainStopResume(dir, "simmim");
  assertFalls(metrics);
  const ckpt = await loadCheckpoint(`${out}/checkpoints/final.safetensors`);
  assertEquals(ckpt.meta.plugins, { architecture: "primus@2.0.0", method: "simmim@1.0.0" });
  assertEquals(ckpt.weights["method.mask.mask_token"].shape, [1, 1, 48]);
  const network = decodeSafetensors(await Deno.readFile(`${out}/network.safetensors`));
  assertEquals(network.tensors["mask_token"].shape, [1, 1, 48], "Primus's own all-zero buffer");
  assert([...network.tensors["mask_token"].data].every((v) => v === 0), "not SimMIM's learned token");
  await Deno.remove(dir, { recursive: true });
});
