import { join } from "node:path";
import resenc, { ResEncUNet } from "../../plugins/arch/resenc/mod.ts";
import { Generator, scope } from "../../mod.ts";
import { readNiftiHeader } from "../../core/data/nifti_read.ts";
import { stateDict } from "../../core/nn/state_dict.ts";
import { CHECKPOINT_FORMAT, type CheckpointMeta, saveCheckpoint } from "../../core/train/checkpoint.ts";
import { assert, assertEquals } from "../assert.ts";
import { gpuTest } from "../helpers.ts";
import { tempDir } from "../core/data/fixtures.ts";
import { diagonalAffine, writeTinyDataset } from "../core/eval/fixtures.ts";
import { voxssl } from "./cli_helpers.ts";
import { PredictOptionsSchema, predictStageArgs } from "../../cli/benchmark_runner.ts";

gpuTest(
  "voxssl predict then evaluate: a ResEnc checkpoint segments a 2-channel dataset; CSV + JSON written",
  async () => {
    const { dir, cleanup } = await tempDir("voxssl-cli-eval-");
    try {
      const raw = join(dir, "raw");
      await writeTinyDataset(raw, { channels: 2, shape: [5, 9, 7], affine: diagonalAffine([2, 1, 1], true) });
      const tiny = resenc.config.parse(resenc.sizes!.tiny);
      const net = scope(() =>
        new ResEncUNet(
          tiny,
          { inChannels: 2, outChannels: 3, patchSize: [8, 8, 8], encoderOnly: false },
          new Generator(4),
        )
      );
      const weights = Object.fromEntries(
        Object.entries(await stateDict(net)).map(([k, t]) => [`network.${k}`, t]),
      );
      const adaptationPlan = {
        ...net.adaptationPlan(),
        architecture: { plugin: "resenc", version: resenc.version, config: tiny },
      };
      net.dispose();
      const segmentationConfig = {
        classes: 3,
        labels: { background: 0, a: 1, b: 2 },
        channelNames: ["c0", "c1"],
        dataset: "tiny",
        spacing: [1.5, 1, 1],
        normalization: ["zscore", "zscore"],
        schedule: { name: "warmup-poly" },
        pretrained: null,
        encoderKeys: [],
        split: { train: [], test: ["case_000", "case_001"] },
        labelFraction: 1,
      };
      const ckpt = join(dir, "finetuned.safetensors");
      await saveCheckpoint(ckpt, {
        // only what predict reads: the adaptation plan
        meta: { format: CHECKPOINT_FORMAT, step: 1, adaptationPlan } as unknown as CheckpointMeta,
        weights,
        optimizer: { stepState: [0, 0, 0, 0, 0, 0, 0, 0], groups: [] },
      });
      const out = join(dir, "pred");
      const run = await voxssl(
        "predict",
        join(raw, "imagesTr"),
        "--checkpoint",
        ckpt,
        "--dataset",
        raw,
        "--out",
        out,
        "--spacing",
        "1.5,1,1",
        "--patch",
        "8,8,8",
      );
      assertEquals(run.code, 0, run.stderr + run.stdout);
      assert(run.stdout.includes("predict: 2 predicted, 0 already there"), run.stdout);
      // not a terminal: plain progress lines on stderr, never a redrawn bar
      const redrawn = run.stderr.includes("\r") || run.stderr.includes("\u001b[");
      assert(/predict: 1\/2/.test(run.stderr) && !redrawn, run.stderr);
      // a fine-tuned checkpoint (the same weights) gives channels, classes, spacing and window itself
      const finetuned = join(dir, "finetuned-run.safetensors");
      await saveCheckpoint(finetuned, {
        meta: {
          format: CHECKPOINT_FORMAT,
          step: 1,
          adaptationPlan,
          plugins: { architecture: `resenc@${resenc.version}`, method: "segmentation@0.0.0" },
          config: {
            inChannels: 2,
            patch: [8, 8, 8],
            resolvedArch: { plugin: "resenc", version: resenc.version, size: "tiny", config: tiny },
            resolvedMethod: { plugin: "segmentation", version: "0.0.0", config: segmentationConfig },
          },
        } as unknown as CheckpointMeta,
        weights,
        optimizer: { stepState: [0, 0, 0, 0, 0, 0, 0, 0], groups: [] },
      });
      const fromCheckpoint = await voxssl(
        "predict",
        join(raw, "imagesTr"),
        "--checkpoint",
        finetuned,
        "--out",
        join(dir, "pred-ft"),
      );
      assertEquals(fromCheckpoint.code, 0, fromCheckpoint.stderr + fromCheckpoint.stdout);
      for (const id of ["case_000", "case_001"]) {
        assertEquals(
          await Deno.readFile(join(dir, "pred-ft", `${id}.nii.gz`)),
          await Deno.readFile(join(out, `${id}.nii.gz`)),
          `${id}: the checkpoint's spacing 1.5,1,1 (not the images' 2,1,1) and patch 8³, as the flags gave them`,
        );
      }
      // the benchmark runner's call (cli/benchmark_runner.ts): --dataset, spacing and window left to the
      // checkpoint; it predicts, so scores, exactly as the explicit flags
      const asBenchmark = await voxssl(
        ...predictStageArgs({
          images: join(raw, "imagesTr"),
          checkpoint: finetuned,
          dataset: raw,
          out: join(dir, "pred-bench"),
          options: PredictOptionsSchema.parse({}),
        }),
      );
      assertEquals(asBenchmark.code, 0, asBenchmark.stderr + asBenchmark.stdout);
      for (const id of ["case_000", "case_001"]) {
        assertEquals(
          await Deno.readFile(join(dir, "pred-bench", `${id}.nii.gz`)),
          await Deno.readFile(join(out, `${id}.nii.gz`)),
          `${id}: the benchmark's predict call`,
        );
      }
      // a checkpoint that records no fine-tuning needs the flags: a user error saying so, exit 1
      const bare = await voxssl(
        "predict",
        join(raw, "imagesTr"),
        "--checkpoint",
        ckpt,
        "--out",
        join(dir, "p"),
      );
      assertEquals(bare.code, 1, bare.stderr);
      assert(
        bare.stderr.includes("give --dataset and --spacing") && !bare.stderr.includes("    at "),
        bare.stderr,
      );
      const written = await readNiftiHeader(join(out, "case_000.nii.gz"));
      const input = await readNiftiHeader(join(raw, "imagesTr", "case_000_0000.nii.gz"));
      assertEquals([written.shape, written.affine], [input.shape, input.affine]);
      const evaluation = await voxssl(
        "evaluate",
        out,
        join(raw, "labelsTr"),
        "--dataset",
        raw,
        "--out",
        join(dir, "ev"),
      );
      assertEquals(evaluation.code, 0, evaluation.stderr);
      assert(evaluation.stdout.includes("class 1 (a): Dice"), evaluation.stdout);
      const csv = await Deno.readTextFile(join(dir, "ev", "metrics.csv"));
      assertEquals(csv.trim().split("\n").length, 1 + 2 * 2);
      const summary = JSON.parse(await Deno.readTextFile(join(dir, "ev", "summary.json")));
      assertEquals(summary.classes, [1, 2]);
      // bad input: a user error naming the folder, no stack trace
      const bad = await voxssl("evaluate", join(dir, "nowhere"), join(raw, "labelsTr"));
      assertEquals(bad.code, 1); // the common user-error path (docs/reliability.md)
      assert(bad.stderr.includes(join(dir, "nowhere")) && !bad.stderr.includes("    at "), bad.stderr);
    } finally {
      await cleanup();
    }
  },
);
