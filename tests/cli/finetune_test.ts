/**
 * `voxssl finetune` end to end on a tiny 2-channel nnU-Net raw dataset: preprocessed into a downstream
 * cache, a 1-channel pretrained ResEnc loaded (stem repeated over 2 channels), trained, checkpointed and
 * scored; and a bad flag answered with a one-line error.
 */
import { join } from "node:path";
import { assert, assertEquals } from "../assert.ts";
import { readFinetunedCheckpoint } from "../../core/eval/mod.ts";
import { stateDict } from "../../core/nn/mod.ts";
import { CHECKPOINT_FORMAT, saveCheckpoint } from "../../core/train/mod.ts";
import { Generator, scope } from "../../mod.ts";
import resenc, { ResEncUNet } from "../../plugins/arch/resenc/mod.ts";
import { gpuTest } from "../helpers.ts";
import { tempDir } from "../core/data/fixtures.ts";
import { diagonalAffine, writeTinyDataset } from "../core/eval/fixtures.ts";
import { voxssl } from "./cli_helpers.ts";

gpuTest(
  "voxssl finetune: a 1-channel pretrained ResEnc on a 2-channel raw dataset, then a bad flag",
  async () => {
    const { dir, cleanup } = await tempDir("voxssl-cli-finetune-");
    try {
      const raw = join(dir, "raw");
      await writeTinyDataset(raw, {
        cases: 4,
        channels: 2,
        shape: [8, 10, 9],
        affine: diagonalAffine([1, 1, 1]),
      });
      const net = scope(() =>
        new ResEncUNet(
          resenc.config.parse(resenc.sizes!.tiny),
          { inChannels: 1, outChannels: 1, patchSize: [8, 8, 8], encoderOnly: false },
          new Generator(3),
        )
      );
      const pretrained = join(dir, "pretrained.safetensors");
      await saveCheckpoint(pretrained, {
        meta: { format: CHECKPOINT_FORMAT, adaptationPlan: net.adaptationPlan() } as never,
        weights: Object.fromEntries(
          Object.entries(await stateDict(net)).map(([k, t]) => [`network.${k}`, t]),
        ),
        optimizer: { stepState: [0, 0, 0, 0, 1, 0, 0, 0], groups: [] },
      });
      net.dispose();
      const out = join(dir, "run");
      const common = ["finetune", raw, "--pretrained", pretrained, "--spacing", "none", "--out", out];
      const run = await voxssl(
        ...common,
        "--epochs",
        "1",
        "--steps",
        "2",
        "--batch",
        "1",
        "--patch",
        "8",
        "--label-fraction",
        "0.5",
      );
      assertEquals(run.code, 0, run.stderr + run.stdout);
      assert(run.stdout.includes("encoder.stem.convs.0.conv.weight repeated over 2 channels"), run.stdout);
      assert(/fine-tuned: .*final\.safetensors \(test mean Dice [0-9.]+\)/.test(run.stdout), run.stdout);
      const model = await readFinetunedCheckpoint(join(out, "checkpoints", "final.safetensors"));
      assertEquals([model.inChannels, model.segmentation.classes, model.step], [2, 3, 2]);
      assertEquals([model.segmentation.split.train.length, model.segmentation.split.test.length], [1, 2]);
      assert(await Deno.stat(join(out, "test_scores.json")).then(() => true));
      const bad = await voxssl(...common, "--label-fraction", "2");
      assertEquals(bad.code, 1);
      assert(
        bad.stderr.includes('voxssl: --label-fraction: expected a number in (0, 1], got "2"'),
        bad.stderr,
      );
      assert(!bad.stderr.includes("    at "), "no stack trace");
    } finally {
      await cleanup();
    }
  },
);
