/**
 * SimCLR: NT-Xent against a float64 reference (values and finite-difference gradients), the crop-pair
 * rule over many draws, the data hook's arrays, and a short run on synthetic volumes in which the loss
 * falls.
 */
import { assert, assertEquals } from "../../assert.ts";
import simclr, {
  CONTRASTIVE_AUGMENTATION,
  drawCropPairs,
  ntXent,
  ntXentRef,
  offsetRange,
} from "../../../plugins/ssl/simclr/mod.ts";
import resenc from "../../../plugins/arch/resenc/mod.ts";
import primus from "../../../plugins/arch/primus/mod.ts";
import {
  type ArchitecturePlugin,
  createRng,
  loadCheckpoint,
  openBatchSources,
  readMetrics,
  resolveAugmentation,
  type ResolvedRunConfig,
  resolveRunConfig,
  RunConfigSchema,
  runPretraining,
  validatePlugin,
  VERSION,
} from "../../../mod.ts";
import { checkOp } from "../../../testing.ts";
import { createSampleRunner } from "../../../core/data/sample_runner.ts";
import { resolveSource } from "../../../core/data/sources.ts";
import { gpuTest } from "../../helpers.ts";

Deno.test("simclr is a valid plugin for this core, asks for the encoder alone, and its augmentation resolves", () => {
  validatePlugin(simclr, VERSION, "plugins/ssl/simclr");
  assertEquals(simclr.network, { encoderOnly: true });
  const a = resolveAugmentation(CONTRASTIVE_AUGMENTATION);
  assertEquals([a.rotation.p, a.scale.p, a.noise.p, a.blur.p, a.lowres.p, a.gamma.p, a.rot90.p], [
    0,
    0,
    0.1,
    0.2,
    0.1,
    0.3,
    0.3,
  ]);
});

for (const [m, d, t] of [[8, 5, 0.5], [12, 7, 0.1], [4, 3, 1]] as const) {
  gpuTest(`ntXent() matches the float64 reference, gradients included (M ${m}, d ${d}, τ ${t})`, async () => {
    await checkOp({
      name: `ntXent M${m} d${d} τ${t}`,
      inputs: [{ shape: [m, d] }],
      gpu: ([z]) => ntXent(z, t).loss,
      ref: ([z]) => ({ shape: [], data: Float64Array.of(ntXentRef(z.data, m, d, t)) }),
      rtol: 2e-5,
      atol: 2e-6,
    });
  });
}

Deno.test("ntXentRef() reaches its bounds: log(M − 1) for identical rows, → 0 for separated pairs", () => {
  const same = new Float64Array(6 * 4).fill(1);
  assert(Math.abs(ntXentRef(same, 6, 4, 0.5) - Math.log(5)) < 1e-12);
  const pairs = new Float64Array(4 * 4);
  [0, 0, 1, 1].forEach((axis, row) => (pairs[row * 4 + axis * 2] = 1)); // rows 0,1 on axis 0; rows 2,3 on axis 2
  assert(ntXentRef(pairs, 4, 4, 0.05) < 1e-6);
});

Deno.test("drawCropPairs(): over many draws every partner overlaps its reference by at least 50% per axis, inside the region", () => {
  const rng = createRng(7, "pairs");
  const cases: [number[], number[]][] = [[[192, 192, 64], [64, 64, 64]], [[40, 33, 20], [16, 16, 16]], [[
    10,
    12,
    9,
  ], [16, 8, 16]]];
  for (const [region, crop] of cases) {
    const shift = crop.map((c) => Math.floor(c / 2));
    const { lo, hi } = offsetRange(region, crop);
    const seen = {
      loRef: [false, false, false],
      hiRef: [false, false, false],
      maxShift: [false, false, false],
    };
    for (let draw = 0; draw < 3000; draw++) {
      for (const { reference, partner } of drawCropPairs(region, crop, 2, shift, rng)) {
        for (let a = 0; a < 3; a++) {
          assert(reference[a] >= lo[a] && reference[a] <= hi[a], `reference ${reference} in ${region}`);
          assert(partner[a] >= lo[a] && partner[a] <= hi[a], `partner ${partner} in ${region}`);
          const overlap = crop[a] - Math.abs(partner[a] - reference[a]);
          assert(overlap / crop[a] >= 0.5, `axis ${a}: overlap ${overlap} of ${crop[a]}`);
          if (reference[a] === lo[a]) seen.loRef[a] = true;
          if (reference[a] === hi[a]) seen.hiRef[a] = true;
          // the largest shift the region allows: the full shift, or the region's width when that is narrower
          if (Math.abs(partner[a] - reference[a]) === Math.min(shift[a], hi[a] - lo[a])) {
            seen.maxShift[a] = true;
          }
        }
      }
    }
    // the draws cover the whole range, not a corner of it
    for (let a = 0; a < 3; a++) {
      assert(seen.loRef[a] && seen.hiRef[a], `axis ${a}: both ends of [${lo[a]}, ${hi[a]}] drawn`);
      assert(seen.maxShift[a], `axis ${a}: the largest possible shift drawn`);
    }
  }
});

Deno.test("simclr's sample hook returns 2·pairs augmented crops and their starts, pairs overlapping", async () => {
  const source = await resolveSource({ kind: "synthetic", count: 3, shape: [40, 40, 40], seed: 2 });
  const runner = await createSampleRunner({
    source,
    spec: { patch: [8, 8, 8], augmentation: resolveAugmentation("none"), anatomyProbability: 0, masks: [] },
    seed: 3,
    training: true,
    hookModule: new URL("../../../plugins/ssl/simclr/mod.ts", import.meta.url).href,
    hookConfig: { region: [20, 20, 8], pairsPerImage: 3 },
  });
  try {
    for (let step = 0; step < 5; step++) {
      const { arrays } = (await runner.run({ step, index: 0, item: step % 3 })).result;
      assertEquals(arrays.views.shape, [6, 1, 8, 8, 8]);
      assertEquals([arrays.starts.dtype, ...arrays.starts.shape], ["i32", 6, 3]);
      const s = arrays.starts.data as Int32Array;
      for (let k = 0; k < 3; k++) {
        for (let a = 0; a < 3; a++) {
          assert(Math.abs(s[(2 * k + 1) * 3 + a] - s[2 * k * 3 + a]) <= 4, `pair ${k}`);
        }
        assertEquals(
          s[2 * k * 3 + 2],
          s[(2 * k + 1) * 3 + 2],
          "no shift along the region's last axis (8 = the crop)",
        );
      }
      assert(arrays.views.data.some((v) => v !== 0), "crops hold data");
    }
  } finally {
    runner.close();
  }
});

/** Runs SimCLR with the real loader (its sample hook in a worker) to the end. */
async function runSimclr(config: ResolvedRunConfig, arch: ArchitecturePlugin) {
  const sources = await openBatchSources(config, simclr, {
    methodModule: new URL("../../../plugins/ssl/simclr/mod.ts", import.meta.url).href,
  });
  try {
    return await runPretraining({
      config,
      arch,
      method: simclr,
      train: sources.train,
      validation: sources.validation,
      coreVersion: VERSION,
      log: () => {},
    });
  } finally {
    await sources.train.close();
    await sources.validation?.close();
  }
}

gpuTest("a short SimCLR run on synthetic volumes (ResEnc encoder only): the loss falls", async () => {
  const out = await Deno.makeTempDir();
  const parsed = RunConfigSchema.parse({
    arch: "resenc-tiny",
    method: "simclr",
    methodConfig: { region: [16, 16, 8], hiddenDim: 64, embeddingDim: 64 },
    data: "synthetic",
    synthetic: { volumes: 8, size: [40, 40, 40] },
    patch: [8, 8, 8],
    batch: 4,
    epochs: 3,
    stepsPerEpoch: 12,
    logEvery: 6,
    validationBatches: 1,
    workers: 1,
    optimizer: { name: "adamw", lr: 1e-3, weightDecay: 0 },
    clipGradNorm: 0,
    schedule: { name: "constant" },
    out,
  });
  await runSimclr(resolveRunConfig(parsed, { plugin: resenc, size: "tiny" }, simclr), resenc);
  const records = await readMetrics(`${out}/metrics.jsonl`);
  const train = records.filter((r) => r.kind === "train").map((r) => r.loss);
  const val = records.filter((r) => r.kind === "validation").map((r) => r.loss);
  // 16 crops per batch: an untrained embedding scores log(15) ≈ 2.708
  assert(Math.abs(train[0] - Math.log(15)) < 0.05, `starts near log(15): ${train[0]}`);
  assert(train.at(-1)! < train[0] - 0.1, `training loss falls: ${train.map((l) => l.toFixed(3)).join(" ")}`);
  assert(val.at(-1)! < val[0], `validation loss falls: ${val.map((l) => l.toFixed(3)).join(" ")}`);
  assert(records.every((r) => typeof r.metrics?.positiveCosine === "number"), "positive cosine logged");
  await Deno.remove(out, { recursive: true });
});

gpuTest("SimCLR trains a Primus encoder too (ViT family: GAP of the token grid, encoder only)", async () => {
  const out = await Deno.makeTempDir();
  const parsed = RunConfigSchema.parse({
    arch: "primus-tiny",
    method: "simclr",
    methodConfig: { region: [32, 32, 16], hiddenDim: 32, embeddingDim: 32 },
    data: "synthetic",
    synthetic: { volumes: 4, size: [40, 40, 40] },
    patch: [16, 16, 16],
    batch: 2,
    epochs: 1,
    stepsPerEpoch: 2,
    logEvery: 1,
    validationBatches: 1,
    workers: 1,
    out,
  });
  const config = resolveRunConfig(parsed, { plugin: primus, size: "tiny" }, simclr);
  assertEquals(config.optimizer.name, "adamw", "the ViT defaults");
  assertEquals(config.clipGradNorm, 1);
  const summary = await runSimclr(config, primus);
  assert(
    Number.isFinite(summary.lastLoss) && Number.isFinite(summary.bestValidationLoss),
    JSON.stringify(summary),
  );
  const ckpt = await loadCheckpoint(`${out}/checkpoints/final.safetensors`);
  assert(!Object.keys(ckpt.weights).some((k) => k.startsWith("network.up_projection")), "no decoder stored");
  assert("method.projector.fc1.weight" in ckpt.weights);
  assertEquals(ckpt.meta.adaptationPlan.patchSize, [16, 16, 16]);
  await Deno.remove(out, { recursive: true });
});
