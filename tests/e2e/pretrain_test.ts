import { assert, assertEquals } from "../assert.ts";
import { decodeSafetensors, loadCheckpoint, readMetrics } from "../../mod.ts";
import { spawnVoxssl, tinyRun, voxssl, writeConfig } from "./cli.ts";

Deno.test("voxssl pretrain runs MAE on ResEnc and leaves metrics, plot, checkpoints and weights", async () => {
  const dir = await Deno.makeTempDir();
  const out = `${dir}/run`;
  const { code, text, stdout } = await voxssl(["pretrain", "--config", await writeConfig(dir, tinyRun(out))]);
  assertEquals(code, 0, text);
  assert(text.includes(`run folder: ${out}`), text);
  const metrics = await readMetrics(`${out}/metrics.jsonl`);
  const losses = metrics.filter((m) => m.kind === "train").map((m) => m.loss);
  assertEquals(losses.length, 6);
  assert(
    losses[4] + losses[5] < losses[0] + losses[1],
    `MAE loss falls: ${losses.map((l) => l.toFixed(3)).join(" ")}`,
  );
  assertEquals(metrics.filter((m) => m.kind === "validation").length, 2);
  assert((await Deno.readTextFile(`${out}/loss_curve.svg`)).includes("<path"));
  const ckpt = await loadCheckpoint(`${out}/checkpoints/final.safetensors`);
  assertEquals(ckpt.meta.plugins, { architecture: "resenc@2.0.0", method: "mae@3.0.0" });
  assertEquals(ckpt.meta.adaptationPlan.stemKeys, ["encoder.stem"]);
  const weights = decodeSafetensors(await Deno.readFile(`${out}/network.safetensors`));
  assert("encoder.stem.convs.0.conv.weight" in weights.tensors);
  assert("decoder.encoder.stem.convs.0.all_modules.0.weight" in weights.tensors, "reference alias keys");
  // the run report: printed last, with curves, the MAE reconstruction of each checkpoint and the viewer
  assertEquals(stdout.trim().split("\n").at(-1), `report: ${out}/report.html`);
  const html = await Deno.readTextFile(`${out}/report.html`);
  assertEquals([...html.matchAll(/<div class="slices" data-step="(\d+)"/g)].map((m) => m[1]), ["6", "3"]);
  assert(
    html.includes('class="viewer"') && html.includes('data-chart="data wait (ms per step)"'),
    "viewer, curves",
  );
  assert(metrics.every((m) => m.kind === "validation" || m.dataWaitSeconds! >= 0), "data wait logged");
  assert([...Deno.readDirSync(out)].some((e) => e.name.startsWith("events.out.tfevents.")), "tfevents");
  await Deno.remove(`${out}/report.html`);
  const report = await voxssl(["report", out]);
  assertEquals([report.code, report.stdout.trim()], [0, `report: ${out}/report.html`], report.text);
  assert((await Deno.readTextFile(`${out}/report.html`)).includes('data-step="6"'));
  const missing = await voxssl(["report", `${dir}/nothing`]);
  assert(
    missing.code === 1 && missing.stderr.includes("not a run folder") && !missing.stderr.includes("    at "),
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("voxssl pretrain --dry-run prints the resolved config and ResEnc-L's 102,348,965 parameters", async () => {
  const { code, text } = await voxssl(["pretrain", "--arch", "resenc-l", "--method", "mae", "--dry-run"]);
  assertEquals(code, 0, text);
  assert(text.includes("parameters (network): 102,348,965"), text);
  assert(text.includes('"momentum": 0.99') && text.includes('"patch": [\n    160'), text);
});

Deno.test("voxssl pretrain rejects an unknown config key naming the file and the field", async () => {
  const dir = await Deno.makeTempDir();
  const path = await writeConfig(dir, { arch: "resenc-tiny", learningRate: 3 });
  const { code, stderr } = await voxssl(["pretrain", "--config", path]);
  assertEquals(code, 1, stderr);
  assert(stderr.includes(path) && stderr.includes("learningRate"), stderr);
  assert(!stderr.includes("    at "), `no stack trace:\n${stderr}`);
  const bad = await voxssl(["pretrain", "--patch", "16,abc", "--dry-run"]);
  assert(bad.code === 1 && bad.stderr.includes("--patch"), bad.stderr);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("SIGTERM finishes the step, saves and exits 0; --resume reproduces the uninterrupted curve", async () => {
  const dir = await Deno.makeTempDir();
  const full = `${dir}/full`;
  const cut = `${dir}/cut`;
  const config = (out: string) => tinyRun(out, { epochs: 3, stepsPerEpoch: 4, logEvery: 2 });
  assertEquals((await voxssl(["pretrain", "--config", await writeConfig(dir, config(full))])).code, 0);
  await Deno.mkdir(`${dir}/c`);
  const run = spawnVoxssl(["pretrain", "--config", await writeConfig(`${dir}/c`, config(cut))]);
  await run.waitFor("step 2/12");
  run.child.kill("SIGTERM");
  const rest = await run.rest();
  const status = await run.child.status;
  await run.child.stderr.cancel();
  assertEquals(status.code, 0, rest);
  assert(rest.includes("stopped by SIGTERM"), rest);
  const resumed = await voxssl(["pretrain", "--resume", cut]);
  assertEquals(resumed.code, 0, resumed.text);
  const curve = async (out: string) =>
    (await readMetrics(`${out}/metrics.jsonl`)).map((m) => `${m.kind}@${m.step}:${m.loss}`);
  assertEquals(await curve(cut), await curve(full));
  await Deno.remove(dir, { recursive: true });
});
