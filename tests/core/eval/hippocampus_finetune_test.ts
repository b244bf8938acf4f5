/**
 * Fine-tuning on a few real hippocampus cases (../shared/data/hippocampus, nnU-Net raw layout, read and
 * preprocessed by core/eval's data layer) raises the test Dice above that of the same network untrained.
 * Tiny on purpose: ResEnc-tiny, 16³ patches, 40 AdamW steps (SGD with momentum 0.99, the
 * nnssl default, needs hundreds of steps before it predicts any foreground; this test checks the
 * pipeline learns, not the recipe). Deterministic: seeded split, initialisation and batches.
 */
import { assert } from "../../assert.ts";
import {
  finetuneSegmentation,
  loadDownstreamDataset,
  preprocessNnunetDataset,
  readNnunetDataset,
  scoreCases,
} from "../../../core/eval/mod.ts";
import { Generator, scope, VERSION } from "../../../mod.ts";
import resenc from "../../../plugins/arch/resenc/mod.ts";
import { gpuTest } from "../../helpers.ts";

const root = new URL("../../../../shared/data/hippocampus", import.meta.url).pathname;
const present = await Deno.stat(`${root}/dataset.json`).then(() => true, () => false);
const name = "fine-tuning on 4 hippocampus cases beats the untrained network's test Dice";
if (!present) console.log(`ignoring "${name}": ${root} is absent`);

const archConfig = resenc.sizes!.tiny; // features 8, 16, 32
const window: [number, number, number] = [44, 60, 48]; // covers every case: one forward each
const STEPS = 40, LR = 3e-3;

if (present) {
  gpuTest(name, async () => {
    const dir = await Deno.makeTempDir();
    try {
      const raw = await readNnunetDataset(root);
      const ids = raw.training.slice(0, 6).map((c) => c.id);
      await preprocessNnunetDataset(raw, `${dir}/cache`, { spacing: "none", cases: ids });
      const dataset = await loadDownstreamDataset(`${dir}/cache`);
      const split = { train: ids.slice(0, 4), test: ids.slice(4) };
      const result = await finetuneSegmentation({
        dataset,
        arch: resenc,
        size: "tiny",
        coreVersion: VERSION,
        out: `${dir}/run`,
        epochs: 1,
        stepsPerEpoch: STEPS,
        batch: 2,
        patch: [16, 16, 16],
        optimizer: { name: "adamw", lr: LR, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0 },
        foregroundFraction: 0.5,
        split,
        scoreWindow: window,
        log: () => {},
      });
      const trained = result.scores!;
      // the same network as the run built it (seed 0), before any step
      const untrainedNet = scope(() =>
        resenc.create({
          config: resenc.config.parse(archConfig),
          inChannels: 1,
          outChannels: 3,
          patchSize: [16, 16, 16],
          encoderOnly: false,
          rng: new Generator(0),
        })
      );
      const test = dataset.cases.filter((c) => split.test.includes(c.id));
      const untrained = await scoreCases(untrainedNet, test, window, 3);
      untrainedNet.dispose();
      console.log(
        `hippocampus test Dice, untrained ${untrained.meanDice.toFixed(4)} → fine-tuned ${
          trained.meanDice.toFixed(4)
        }` +
          ` (per class ${trained.perClass.map((d) => d.toFixed(3)).join(", ")})`,
      );
      assert(trained.meanDice > untrained.meanDice, "fine-tuning raised the test Dice");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
} else {
  Deno.test({ name, ignore: true, fn: () => {} });
}
