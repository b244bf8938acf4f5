/**
 * `voxssl classify` end to end: synthetic NIfTI volumes whose class is a bright or a dark cube, a CSV
 * naming them, one from-scratch run with the smallest config; the test accuracy beats chance and the
 * same network before training (rebuilt in-process from the run's recorded config and seed), and the
 * per-case CSV and the JSON summary are well formed and agree. Then a CSV with one class only is
 * answered with a one-line error and no stack trace.
 */
import { join } from "node:path";
import { assert, assertEquals } from "../assert.ts";
import {
  classificationMethod,
  type ClassificationScores,
  type ClassificationVolume,
  loadClassificationData,
  readClassificationCsv,
  scoreClassifier,
} from "../../core/eval/mod.ts";
import type { ClassificationConfig, ClassificationHead } from "../../core/eval/mod.ts";
import { initGpu } from "../../core/gpu/mod.ts";
import { buildRun, loadCheckpoint } from "../../core/train/mod.ts";
import { VERSION } from "../../mod.ts";
import resenc from "../../plugins/arch/resenc/mod.ts";
import { gpuTest } from "../helpers.ts";
import { tempDir } from "../core/data/fixtures.ts";
import { writeCubeDataset } from "../core/eval/classification/fixtures.ts";
import { voxssl } from "./cli_helpers.ts";

/** The test accuracy of the run's network as initialised (same config, same seed), before any step. */
async function untrainedAccuracy(out: string, cases: ClassificationVolume[]): Promise<number> {
  const { config } = (await loadCheckpoint(join(out, "checkpoints", "final.safetensors"))).meta;
  const cls = config.resolvedMethod.config as ClassificationConfig;
  const { model, frozen, instance } = buildRun(
    config,
    resenc,
    classificationMethod(VERSION),
    await initGpu(),
  );
  try {
    const test = cases.filter((c) => cls.split.test.includes(c.id));
    const head = instance.modules.head as ClassificationHead;
    return (await scoreClassifier(model.network, head, test, [8, 8, 8], cls.classes)).accuracy;
  } finally {
    model.dispose();
    frozen.dispose();
  }
}

gpuTest(
  "voxssl classify: bright vs dark cubes learnt from scratch; CSV and JSON results; one class refused",
  async () => {
    const { dir, cleanup } = await tempDir("voxssl-cli-classify-");
    try {
      const csv = await writeCubeDataset(join(dir, "cubes"), { perClass: 6 });
      const out = join(dir, "run");
      const run = await voxssl(
        "classify",
        csv,
        "--arch",
        "resenc-tiny",
        "--out",
        out,
        "--spacing",
        "none",
        "--epochs",
        "4",
        "--steps",
        "5",
        "--batch",
        "4",
        "--patch",
        "8",
        "--lr",
        "3e-2",
        "--no-augmentation",
      );
      assertEquals(run.code, 0, run.stderr + run.stdout);
      assert(run.stdout.includes("classes (train/test) bright 3/3, dark 3/3"), run.stdout);
      assert(/classifier: .*final\.safetensors \(test accuracy [0-9.]+/.test(run.stdout), run.stdout);

      const scores = JSON.parse(await Deno.readTextFile(join(out, "test_scores.json"))) as Omit<
        ClassificationScores,
        "predictions"
      >;
      assertEquals([scores.classes, scores.cases, scores.support], [["bright", "dark"], 6, [3, 3]]);
      // chance is 1/2 on a balanced test set; the network before training does no better than 1/2 here
      const data = await loadClassificationData(await readClassificationCsv(csv), join(out, "data"));
      const before = await untrainedAccuracy(out, data.cases);
      console.log(`classify: test accuracy ${scores.accuracy} (untrained ${before}), AUROC ${scores.auroc}`);
      assert(scores.accuracy >= 5 / 6, `test accuracy ${scores.accuracy}`);
      assert(scores.accuracy > before, `trained ${scores.accuracy} vs untrained ${before}`);
      assert(scores.auroc !== null && scores.auroc > 0.5, `AUROC ${scores.auroc}`);

      // the per-case CSV: one row per test case, probabilities summing to 1, predicted = the most probable
      const lines = (await Deno.readTextFile(join(out, "test_predictions.csv"))).trimEnd().split("\n");
      assertEquals(lines[0], "case,path,label,predicted,p_bright,p_dark");
      assertEquals(lines.length, 1 + 6);
      const listed = new Map(
        (await Deno.readTextFile(csv)).trim().split("\n").slice(1).map((l) => {
          const [image, label] = l.split(",");
          return [join(dir, "cubes", image), label];
        }),
      );
      let right = 0;
      for (const line of lines.slice(1)) {
        const [, path, label, predicted, ...p] = line.split(",");
        assertEquals(listed.get(path), label, `${path}'s label as the input CSV has it`);
        const probabilities = p.map(Number);
        assert(Math.abs(probabilities[0] + probabilities[1] - 1) < 1e-5, line);
        assertEquals(predicted, probabilities[0] >= probabilities[1] ? "bright" : "dark", line);
        if (predicted === label) right++;
      }
      assertEquals(right / 6, scores.accuracy, "the JSON's accuracy is the CSV's");

      // bad input: a CSV with one class only
      await Deno.writeTextFile(
        join(dir, "cubes", "one.csv"),
        "image,label\nimages/case_00.nii.gz,x\nimages/case_01.nii.gz,x\n",
      );
      const bad = await voxssl(
        "classify",
        join(dir, "cubes", "one.csv"),
        "--arch",
        "resenc-tiny",
        "--out",
        join(dir, "bad"),
      );
      assertEquals(bad.code, 1);
      assert(bad.stderr.includes("one.csv: only one class (x) in the label column"), bad.stderr);
      assert(!bad.stderr.includes("    at "), "no stack trace");
    } finally {
      await cleanup();
    }
  },
);
