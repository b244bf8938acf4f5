/**
 * Classification fine-tuning on the Trainer: from a pretrained ResEnc through the sawtooth, the head
 * phase leaves the encoder bit-identical (its optimizer moments untouched) while the head trains; a run
 * stopped there and resumed ends bit-identical to one that was never stopped. A pretrained Primus (ViT:
 * the head reads the token average) loads at another patch through the position-embedding resize.
 */
import { assert, assertEquals, assertRejects } from "../../../assert.ts";
import {
  type ClassificationData,
  finetuneClassification,
  FinetuneConfigError,
} from "../../../../core/eval/mod.ts";
import { stateDict } from "../../../../core/nn/mod.ts";
import { CHECKPOINT_FORMAT, loadCheckpoint, saveCheckpoint } from "../../../../core/train/mod.ts";
import { Generator, scope, VERSION } from "../../../../mod.ts";
import primus from "../../../../plugins/arch/primus/mod.ts";
import resenc, { ResEncUNet } from "../../../../plugins/arch/resenc/mod.ts";
import { gpuTest, randomArray } from "../../../helpers.ts";

function data(size = 8): ClassificationData {
  return {
    name: "random.csv",
    classes: ["a", "b"],
    channelNames: ["image"],
    spacing: null,
    cases: Array.from({ length: 6 }, (_, i) => ({
      id: `c${i}`,
      classIndex: i % 2,
      shape: [size, size, size] as [number, number, number],
      image: [Float32Array.from(randomArray(size ** 3, 100 + i))],
    })),
    sources: {},
  };
}

gpuTest(
  "classification sawtooth: encoder bit-identical in the head phase; stop + resume = one run",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "voxssl-cls-ft-" });
    try {
      const net = scope(() =>
        new ResEncUNet(
          resenc.config.parse(resenc.sizes!.tiny),
          { inChannels: 1, outChannels: 1, patchSize: [8, 8, 8], encoderOnly: false },
          new Generator(42),
        )
      );
      const source = await stateDict(net);
      const pretrained = `${dir}/pretrained.safetensors`;
      await saveCheckpoint(pretrained, {
        meta: { format: CHECKPOINT_FORMAT, adaptationPlan: net.adaptationPlan() } as never,
        weights: Object.fromEntries(Object.entries(source).map(([k, t]) => [`network.${k}`, t])),
        optimizer: { stepState: [0, 0, 0, 0, 1, 0, 0, 0], groups: [] },
      });
      net.dispose();
      const common = {
        data: data(),
        arch: resenc,
        pretrained,
        coreVersion: VERSION,
        epochs: 2,
        stepsPerEpoch: 2,
        batch: 1,
        patch: [8, 8, 8] as [number, number, number],
        lr: 1e-2,
        schedule: { name: "sawtooth" as const, decoderWarmup: 0.25, decoderDecay: 0.25, wholeWarmup: 0.25 },
        log: () => {},
      };
      // steps 0 and 1: the head alone
      const a = await finetuneClassification({ ...common, out: `${dir}/a`, stopAfterStep: 2 });
      assertEquals([a.stoppedBy, a.steps, a.scores], ["stopAfterStep", 2, null]);
      const mid = await loadCheckpoint(a.checkpoint);
      const encoder = Object.entries(mid.weights).filter(([k]) => k.startsWith("network."));
      assertEquals(encoder.length, Object.keys(source).filter((k) => k.startsWith("encoder.")).length);
      for (const [k, t] of encoder) {
        assertEquals(
          t.data,
          source[k.slice("network.".length)].data,
          `${k} bit-identical after the head phase`,
        );
      }
      const groups = mid.meta.parameterGroups.map((g) => g.name);
      assert(
        mid.optimizer.groups[groups.indexOf("encoder")][0].every((m) => m === 0),
        "encoder moments untouched",
      );
      assert(mid.optimizer.groups[groups.indexOf("decoder")][0].some((m) => m !== 0), "head moments moved");
      assertEquals(Object.keys(mid.weights).filter((k) => k.startsWith("method.head.")).sort(), [
        "method.head.fc.bias",
        "method.head.fc.weight",
      ]);
      await assertRejects(
        () =>
          finetuneClassification({
            ...common,
            data: { ...data(), spacing: [2, 2, 2] },
            out: `${dir}/a`,
            resume: true,
          }),
        FinetuneConfigError,
        "random.csv: preprocessed at spacing 2,2,2, the run was made at none (give the run's --spacing)",
      );
      const resumed = await finetuneClassification({ ...common, out: `${dir}/a`, resume: true });
      assertEquals([resumed.steps, resumed.stoppedBy], [4, undefined]);
      assertEquals(resumed.scores?.cases, 2); // one of each class: ⌊3/2⌋ per class
      const whole = await finetuneClassification({ ...common, out: `${dir}/b`, evaluate: false });
      const [x, y] = await Promise.all([
        loadCheckpoint(resumed.checkpoint),
        loadCheckpoint(whole.checkpoint),
      ]);
      assertEquals(Object.keys(x.weights).sort(), Object.keys(y.weights).sort());
      for (const [k, t] of Object.entries(x.weights)) {
        assertEquals(
          t.data,
          y.weights[k].data,
          `${k} as one run`,
        );
      }
      assert(
        x.weights["network.encoder.stages.1.blocks.0.conv1.conv.weight"].data.some((v, i) =>
          v !== source["encoder.stages.1.blocks.0.conv1.conv.weight"].data[i]
        ),
        "the whole-network phase trains the encoder",
      );
      assertEquals(x.meta.plugins.method, `classification@${VERSION}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

gpuTest(
  "classification from a pretrained Primus: position embedding resized 2³ → 1³ tokens, token average",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "voxssl-cls-vit-" });
    try {
      const net = scope(() =>
        primus.create({
          config: primus.config.parse(primus.sizes!.tiny),
          inChannels: 1,
          outChannels: 1,
          patchSize: [16, 16, 16],
          encoderOnly: false,
          rng: new Generator(5),
        })
      );
      const pretrained = `${dir}/pretrained.safetensors`;
      await saveCheckpoint(pretrained, {
        meta: { format: CHECKPOINT_FORMAT, adaptationPlan: net.adaptationPlan() } as never,
        weights: Object.fromEntries(
          Object.entries(await stateDict(net)).map(([k, t]) => [`network.${k}`, t]),
        ),
        optimizer: { stepState: [0, 0, 0, 0, 1, 0, 0, 0], groups: [] },
      });
      net.dispose();
      const lines: string[] = [];
      const result = await finetuneClassification({
        data: data(),
        arch: primus,
        pretrained,
        coreVersion: VERSION,
        out: `${dir}/run`,
        epochs: 1,
        stepsPerEpoch: 1,
        batch: 2,
        patch: [8, 8, 8],
        log: (line) => lines.push(line),
      });
      assert(lines.some((l) => /eva\.pos_embed resized 2×2×2 → 1×1×1/.test(l)), lines.join("\n"));
      assertEquals([result.steps, result.scores?.cases], [1, 2]);
      for (const p of result.scores!.predictions) {
        assert(
          Math.abs(p.probabilities[0] + p.probabilities[1] - 1) < 1e-12 &&
            p.probabilities.every((v) => v > 0),
        );
      }
      const ckpt = await loadCheckpoint(result.checkpoint);
      assertEquals(ckpt.meta.config.resolvedArch.plugin, "primus");
      assertEquals(ckpt.weights["method.head.fc.weight"].shape, [2, 48]); // tiny's token width
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
