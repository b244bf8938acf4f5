/**
 * Fine-tuning on a few real hippocampus cases (../shared/data/hippocampus, nnU-Net raw layout, read and
 * preprocessed by core/eval's data layer) raises the test Dice above that of the same network untrained.
 * Tiny on purpose: a two-stage ResEnc, 16³ patches, a few dozen steps.
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

const archConfig = { features: [8, 16], blocksPerStage: [1, 1], strides: [1, 2] };
const window: [number, number, number] = [48, 64, 48]; // covers every case: one forward each

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
        archConfig,
        coreVersion: VERSION,
        out: `${dir}/run`,
        epochs: 1,
        stepsPerEpoch: 40,
        batch: 2,
        patch: [16, 16, 16],
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
      assert(trained.meanDice > untrained.meanDice + 0.05, "fine-tuning raised the test Dice");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
} else {
  Deno.test({ name, ignore: true, fn: () => {} });
}
