/**
 * The Trainer's seams of contract v2, each checked through what a run writes: method metrics in
 * metrics.jsonl, parameter groups (a group with lrScale 0 does not move), frozen modules (an EMA teacher:
 * no gradients, no optimizer state, saved and restored), buffers (step and epoch counters updated by the
 * after-step and end-of-epoch hooks, continuing across a resume), and the encoder-only request.
 */
import { assert, assertEquals, assertRejects } from "../../assert.ts";
import {
  closeRun,
  getGpu,
  loadCheckpoint,
  openRun,
  readMetrics,
  resolveRunConfig,
  RunConfigSchema,
  runPretraining,
  stateDict,
  trainStep,
  VERSION,
} from "../../../mod.ts";
import { buildRun } from "../../../core/train/run_model.ts";
import { affineTarget, hookedTarget, voxelMlp } from "../../fixtures/tiny_plugins.ts";
import { randomSource } from "../../fixtures/random_source.ts";
import { gpuTest } from "../../helpers.ts";

function configFor(out: string, methodConfig: Record<string, unknown> = {}) {
  const parsed = RunConfigSchema.parse({
    arch: "voxel-mlp-tiny",
    method: "hooked-target",
    methodConfig,
    epochs: 2,
    stepsPerEpoch: 5,
    logEvery: 2,
    validationBatches: 1,
    out,
  });
  return resolveRunConfig(parsed, { plugin: voxelMlp, size: "tiny" }, hookedTarget);
}

function train(out: string, methodConfig: Record<string, unknown> = {}, extra = {}) {
  const config = configFor(out, methodConfig);
  return runPretraining({
    config,
    arch: voxelMlp,
    method: hookedTarget,
    train: randomSource(3, config.batch, config.patch),
    validation: randomSource(4, config.batch, config.patch),
    coreVersion: VERSION,
    log: () => {},
    ...extra,
  });
}

gpuTest("method metrics are averaged like the loss and logged for training and validation", async () => {
  const out = await Deno.makeTempDir();
  await train(out);
  const records = await readMetrics(`${out}/metrics.jsonl`);
  assertEquals(records.filter((r) => r.kind === "validation").length, 2);
  for (const r of records) {
    assert(r.metrics && typeof r.metrics.half === "number", `${r.kind}@${r.step} has the metric`);
    // the method's metric is half its loss: the logged means keep that relation exactly (up to f32)
    assert(
      Math.abs(r.metrics.half - r.loss / 2) <= 1e-6 * Math.abs(r.loss),
      `${r.metrics.half} vs ${r.loss}`,
    );
  }
  await Deno.remove(out, { recursive: true });
});

gpuTest("a parameter group with lrScale 0 stays at its initial values while the rest trains", async () => {
  const out = await Deno.makeTempDir();
  const config = configFor(out, { headLrScale: 0 });
  const initial = await stateDict(buildRun(config, voxelMlp, hookedTarget, getGpu()).model);
  await train(out, { headLrScale: 0 });
  const final = await loadCheckpoint(`${out}/checkpoints/final.safetensors`);
  assertEquals(final.meta.parameterGroups, [{ name: "default", count: 2 }, { name: "head", count: 2 }]);
  for (const name of ["network.fc2.weight", "network.fc2.bias"]) {
    assertEquals([...final.weights[name].data], [...initial[name].data], `${name} unchanged`);
  }
  for (const name of ["network.fc1.weight", "network.fc1.bias"]) {
    assert(final.weights[name].data.some((v, i) => v !== initial[name].data[i]), `${name} trained`);
  }
  const saved = JSON.parse(await Deno.readTextFile(`${out}/config.json`));
  assertEquals(saved.parameterGroups.map((g: { name: string }) => g.name), ["default", "head"]);
  await Deno.remove(out, { recursive: true });
});

gpuTest(
  "frozen modules and buffers are saved, updated only by the hooks, and continue across a resume",
  async () => {
    const a = await Deno.makeTempDir();
    const b = await Deno.makeTempDir();
    await train(a, { headLrScale: 1 });
    const whole = await loadCheckpoint(`${a}/checkpoints/final.safetensors`);
    assertEquals([...whole.weights["frozen.counters.steps"].data], [10]);
    assertEquals([...whole.weights["frozen.counters.epochs"].data], [2]);
    // the EMA teacher moved towards the student but is neither the student nor trained by the optimizer
    const teacher = whole.weights["frozen.teacher.fc1.weight"].data;
    const student = whole.weights["network.fc1.weight"].data;
    assert(teacher.some((v, i) => v !== student[i]), "teacher differs from the student");
    // the optimizer packs the four trainable tensors only: the teacher's four are not in any group
    assertEquals(whole.meta.parameterGroups.reduce((n, g) => n + g.count, 0), 4);
    // stopped mid-epoch and resumed: the counters and the teacher continue exactly
    await train(b, { headLrScale: 1 }, { stopAfterStep: 7 });
    const cut = await loadCheckpoint(`${b}/checkpoints/latest.safetensors`);
    assertEquals([...cut.weights["frozen.counters.steps"].data], [7]);
    assertEquals([...cut.weights["frozen.counters.epochs"].data], [1]);
    await train(b, { headLrScale: 1 }, { resume: true });
    const resumed = await loadCheckpoint(`${b}/checkpoints/final.safetensors`);
    for (const name of Object.keys(whole.weights)) {
      assertEquals([...resumed.weights[name].data], [...whole.weights[name].data], `${name} after resume`);
    }
    await Deno.remove(a, { recursive: true });
    await Deno.remove(b, { recursive: true });
  },
);

gpuTest("an architecture that ignores an encoder-only request is refused by name", async () => {
  const out = await Deno.makeTempDir();
  const encoderOnly = { ...affineTarget, name: "needs-encoder", network: { encoderOnly: true as const } };
  const parsed = RunConfigSchema.parse({ arch: "voxel-mlp-tiny", method: "needs-encoder", out });
  const config = resolveRunConfig(parsed, { plugin: voxelMlp, size: "tiny" }, encoderOnly);
  await assertRejects(
    () =>
      runPretraining({
        config,
        arch: voxelMlp,
        method: encoderOnly,
        train: randomSource(1, 2, [4, 4, 4]),
        coreVersion: VERSION,
        log: () => {},
      }),
    Error,
    "architecture voxel-mlp ignored the request for an encoder-only network (method needs-encoder)",
  );
  await Deno.remove(out, { recursive: true });
});

gpuTest("openRun() then closeRun() gives back every byte of GPU memory the run took", async (gpu) => {
  const out = await Deno.makeTempDir();
  const config = configFor(out);
  const before = gpu.pool.stats().bytesInUse;
  const run = await openRun({
    config,
    arch: voxelMlp,
    method: hookedTarget,
    train: randomSource(3, config.batch, config.patch),
    coreVersion: VERSION,
    log: () => {},
  });
  await trainStep(run, await randomSource(3, config.batch, config.patch).batch(0), 1e-2);
  assert(gpu.pool.stats().bytesInUse > before, "the run holds memory while open");
  closeRun(run);
  await gpu.sync();
  assertEquals(gpu.pool.stats().bytesInUse, before);
  await Deno.remove(out, { recursive: true });
});
