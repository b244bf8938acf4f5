/**
 * Fine-tuning on the Trainer: the sawtooth's decoder phase leaves the pretrained encoder bit-identical
 * (and its optimizer moments untouched) while nnssl's ResEnc quirk trains it; a stopped run resumes into
 * the whole-network phase; the fine-tuned checkpoint reads back with what inference needs; foreground
 * oversampling and the label's nearest-neighbour transforms on synthetic cases.
 */
import { assert, assertEquals, assertNotEquals, assertRejects } from "../../assert.ts";
import {
  cutSegmentationPatch,
  finetuneRates,
  FinetuneScheduleSchema,
  finetuneSegmentation,
  forcedForeground,
  readFinetunedCheckpoint,
  type SegmentationCase,
  type SegmentationDataset,
} from "../../../core/eval/mod.ts";
import { stateDict } from "../../../core/nn/mod.ts";
import { CHECKPOINT_FORMAT, loadCheckpoint, saveCheckpoint } from "../../../core/train/mod.ts";
import { createRng, resolveAugmentation } from "../../../core/data/mod.ts";
import { Generator, scope, VERSION } from "../../../mod.ts";
import resenc, { ResEncUNet } from "../../../plugins/arch/resenc/mod.ts";
import { gpuTest } from "../../helpers.ts";

/** A noisy sphere (class 1) in a shell (class 2), at a seeded place. */
function sphereCase(
  id: string,
  seed: number,
  shape: [number, number, number] = [12, 12, 12],
): SegmentationCase {
  const n = shape[0] * shape[1] * shape[2];
  const rng = createRng(seed, "sphere");
  const image = new Float32Array(n), label = new Uint8Array(n);
  const c = shape.map((s) => s / 2 - 2 + rng.int(4));
  for (let d = 0; d < shape[0]; d++) {
    for (let h = 0; h < shape[1]; h++) {
      for (let w = 0; w < shape[2]; w++) {
        const i = (d * shape[1] + h) * shape[2] + w;
        const r = Math.hypot(d - c[0], h - c[1], w - c[2]);
        label[i] = r < 2.5 ? 1 : r < 4 ? 2 : 0;
        image[i] = label[i] + 0.3 * rng.normal();
      }
    }
  }
  return { id, image: [image], label, shape };
}

const dataset = (count: number): SegmentationDataset => ({
  name: "spheres",
  labels: { background: 0, core: 1, shell: 2 },
  channelNames: ["t1"],
  spacing: null,
  cases: Array.from({ length: count }, (_, i) => sphereCase(`case_${i}`, i)),
});

Deno.test("forcedForeground follows nnU-Net's get_do_oversample; the sawtooth's rates and phases", () => {
  assertEquals([0, 1].map((i) => forcedForeground(i, 2, 0.33)), [false, true]);
  assertEquals([0, 1, 2].map((i) => forcedForeground(i, 3, 0.33)), [false, false, true]);
  const s = FinetuneScheduleSchema.parse({
    name: "sawtooth",
    decoderWarmup: 0.1,
    decoderDecay: 0.1,
    wholeWarmup: 0.2,
  });
  const rates = Array.from({ length: 20 }, (_, i) => finetuneRates(s, 1, i, 20));
  assertEquals(rates.slice(0, 4).map((r) => r.encoder), [null, null, null, null]);
  assertEquals(rates.slice(0, 2).map((r) => r.decoder), [0.5, 1]); // warm-up to the peak
  assertEquals(rates[2].decoder, 1); // poly from the peak …
  assert(rates[3].decoder < 1 && rates[3].decoder > 0);
  assertEquals(rates.map((r) => r.resetOptimizer).indexOf(true), 4); // … then a new optimizer
  assertEquals(rates.slice(4, 8).map((r) => r.encoder), [0.25, 0.5, 0.75, 1]);
  assert(rates[19].encoder! < 0.2);
  const quirk = FinetuneScheduleSchema.parse({ ...s, nnsslQuirk: true });
  assertEquals(finetuneRates(quirk, 1, 1, 20).encoder, 1);
});

Deno.test("patches: a forced sample is centred on foreground; the label follows rotation, mirroring and turns", () => {
  const c = sphereCase("a", 3, [20, 20, 20]);
  // no intensity transform: the image is the label plus noise, so the two must stay aligned
  c.image[0] = Float32Array.from(c.label);
  const locations = [
    new Int32Array(0),
    ...[1, 2].map((k) => {
      const out: number[] = [];
      c.label.forEach((v, i) => v === k && out.push(Math.floor(i / 400), Math.floor(i / 20) % 20, i % 20));
      return Int32Array.from(out);
    }),
  ];
  const none = {
    patch: [8, 8, 8] as [number, number, number],
    augmentation: resolveAugmentation("none"),
    foregroundFraction: 0.33,
    classes: 3,
  };
  for (let k = 0; k < 10; k++) {
    const p = cutSegmentationPatch(c, locations, none, true, createRng(k, "t"));
    assert(
      p.centredOn > 0 && p.label[(4 * 8 + 4) * 8 + 4] === p.centredOn,
      "the centre voxel has the chosen class",
    );
  }
  const spatial = {
    ...none,
    augmentation: resolveAugmentation({
      preset: "none",
      rotation: { p: 1, degrees: [-30, 30] },
      mirror: { p: 0.5, axes: [0, 1, 2] },
      rot90: { p: 1, axes: [1, 2], turns: [1, 3] },
    }),
  };
  let agree = 0, total = 0, foreground = 0;
  for (let k = 0; k < 8; k++) {
    const p = cutSegmentationPatch(c, locations, spatial, true, createRng(k, "s"));
    assert(p.label.every((v) => v <= 2), "labels stay integer classes");
    for (let i = 0; i < p.label.length; i++) {
      total++;
      if (p.label[i] > 0) foreground++;
      if (Math.round(p.image[i]) === p.label[i]) agree++;
    }
  }
  // trilinear (image) and nearest (label) differ only at class borders
  assert(agree / total > 0.85, `image and label agree on ${agree}/${total} voxels`);
  assert(foreground > 0);
});

async function writePretrained(path: string): Promise<Record<string, Float32Array>> {
  const config = resenc.config.parse(resenc.sizes!.tiny);
  const net = scope(() =>
    new ResEncUNet(
      config,
      { inChannels: 1, outChannels: 1, patchSize: [8, 8, 8], encoderOnly: false },
      new Generator(42),
    )
  );
  const weights = await stateDict(net);
  await saveCheckpoint(path, {
    meta: { format: CHECKPOINT_FORMAT, adaptationPlan: net.adaptationPlan() } as never,
    weights: Object.fromEntries(Object.entries(weights).map(([k, t]) => [`network.${k}`, t])),
    optimizer: { stepState: [0, 0, 0, 0, 1, 0, 0, 0], groups: [] },
  });
  net.dispose();
  return Object.fromEntries(Object.entries(weights).map(([k, t]) => [k, t.data]));
}

gpuTest(
  "sawtooth: encoder bit-identical through the decoder phase (nnssl's quirk trains it); resume finishes",
  async () => {
    const dir = await Deno.makeTempDir();
    try {
      const pretrained = `${dir}/pretrained.safetensors`;
      const source = await writePretrained(pretrained);
      const common = {
        dataset: dataset(4),
        arch: resenc,
        pretrained,
        coreVersion: VERSION,
        epochs: 2,
        stepsPerEpoch: 2,
        batch: 1,
        patch: [8, 8, 8] as [number, number, number],
        schedule: { name: "sawtooth" as const, decoderWarmup: 0.25, decoderDecay: 0.25, wholeWarmup: 0.25 },
        evaluate: false,
        log: () => {},
      };
      const encoderOf = (w: Record<string, { data: Float32Array }>) =>
        Object.entries(w).filter(([k]) => k.startsWith("network.encoder."));
      // decoder phase = steps 0 and 1
      const a = await finetuneSegmentation({ ...common, out: `${dir}/a`, stopAfterStep: 2 });
      assertEquals(a.stoppedBy, "stopAfterStep");
      const mid = await loadCheckpoint(a.checkpoint);
      for (const [k, t] of encoderOf(mid.weights)) {
        assertEquals(
          t.data,
          source[k.slice("network.".length)],
          `${k} bit-identical after the decoder phase`,
        );
      }
      const groups = mid.meta.parameterGroups.map((g) => g.name);
      assertEquals([...groups].sort(), ["decoder", "encoder"]);
      assert(
        mid.optimizer.groups[groups.indexOf("encoder")][0].every((m) => m === 0),
        "encoder moments untouched",
      );
      assert(
        mid.optimizer.groups[groups.indexOf("decoder")][0].some((m) => m !== 0),
        "decoder moments moved",
      );
      // resume: the whole-network phase trains the encoder
      const b = await finetuneSegmentation({ ...common, out: `${dir}/a`, resume: true });
      assertEquals([b.steps, b.stoppedBy], [4, undefined]);
      const end = await readFinetunedCheckpoint(b.checkpoint);
      assertNotEquals(
        end.weights["encoder.stages.1.blocks.0.conv1.conv.weight"].data,
        source["encoder.stages.1.blocks.0.conv1.conv.weight"],
      );
      // what predict needs
      assertEquals(end.segmentation.classes, 3);
      assertEquals(end.segmentation.labels, { background: 0, core: 1, shell: 2 });
      assertEquals([end.inChannels, end.patch, end.architecture.plugin], [1, [8, 8, 8], "resenc"]);
      assertEquals(end.segmentation.split.train.length + end.segmentation.split.test.length, 4);
      // nnssl's ResEnc quirk: the "decoder" phase moves the encoder too
      const q = await finetuneSegmentation({
        ...common,
        out: `${dir}/q`,
        stopAfterStep: 2,
        schedule: { ...common.schedule, nnsslQuirk: true },
      });
      const quirk = await loadCheckpoint(q.checkpoint);
      const moved = encoderOf(quirk.weights).filter(([k, t]) =>
        t.data.some((v, i) => v !== source[k.slice(8)][i])
      );
      assert(moved.length > 0, "with nnsslQuirk the encoder trains in the decoder phase");
      await assertRejects(
        () => readFinetunedCheckpoint(pretrained),
        Error,
        "not a fine-tuned segmentation checkpoint",
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
