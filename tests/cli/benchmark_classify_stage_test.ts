/**
 * The classification cell's pure parts: `classify` options (checked, segmentation-only keys named), the
 * `voxssl classify` arguments of a cell, the per-case results read back from `test_predictions.csv`,
 * and the dataset check of a classification CSV.
 */
import { join } from "node:path";
import { assert, assertEquals, assertRejects, assertThrows } from "../assert.ts";
import { checkDatasets, checkStageOptions } from "../../cli/benchmark_runner.ts";
import { classifiedCases, classifyStageArgs } from "../../cli/benchmark_classify_stage.ts";
import { ConfigError } from "../../cli/errors.ts";
import { expandGrid, parseBenchmarkSpec } from "../../core/eval/benchmark/mod.ts";
import { tempDir } from "../core/data/fixtures.ts";

const message = (f: () => unknown) => (assertThrows(f, ConfigError) as Error).message;

Deno.test("checkStageOptions: classify options checked; each task's options refused on the other, named", () => {
  checkStageOptions({
    finetune: {},
    predict: {},
    classify: { epochs: 2, labelSmoothing: 0.1, patch: [8, 8, 8], spacing: "none", schedule: "sawtooth" },
  }, "s.json");
  const wrongTask = message(() =>
    checkStageOptions(
      { finetune: { labelSmoothing: 0.1 }, predict: {}, classify: { batchDice: true, epochs: 0 } },
      "s.json",
    )
  );
  assert(wrongTask.startsWith("s.json:"), wrongTask);
  assert(wrongTask.includes("classify.batchDice: a segmentation option (finetune)"), wrongTask);
  assert(
    wrongTask.includes('finetune.labelSmoothing: a classification option: put it in "classify"'),
    wrongTask,
  );
  assert(wrongTask.includes("classify.epochs: "), "the other problems are reported with them");
  assert(!wrongTask.includes("Unrecognized"), "a misplaced option is not reported twice");
  const bad = message(() =>
    checkStageOptions(
      { finetune: {}, predict: {}, classify: { epochs: 0, labelSmoothing: 1, mirror: 1 } },
      "s",
    )
  );
  for (const field of ["classify.epochs", "classify.labelSmoothing", "classify: Unrecognized key"]) {
    assert(bad.includes(field), bad);
  }
});

Deno.test("classifyStageArgs: a cell's seed, split, fraction, encoder and options; resume continues the run", async () => {
  const spec = parseBenchmarkSpec(
    {
      architectures: ["resenc-tiny"],
      datasets: [{ name: "t", task: "classification", csv: "/d/labels.csv", splitFile: "/d/split.json" }],
      labelFractions: [0.5],
      seeds: [3],
      splitSeed: 7,
      classify: { epochs: 2, stepsPerEpoch: 4, labelSmoothing: 0, spacing: [1, 2, 3], augmentation: false },
    },
    "s",
    "/",
  );
  const [cell] = (await expandGrid(spec)).cells;
  const fresh = { cell, csv: "/d/labels.csv", out: "/w/classify", cache: "/data/t", resume: false };
  assertEquals(classifyStageArgs({ ...fresh, checkpoint: "/p/final.safetensors" }), [
    "classify",
    "/d/labels.csv",
    "--arch",
    "resenc-tiny",
    "--out",
    "/w/classify",
    "--cache",
    "/data/t",
    "--seed",
    "3",
    "--split-seed",
    "7",
    "--label-fraction",
    "0.5",
    "--pretrained",
    "/p/final.safetensors",
    "--split",
    "/d/split.json",
    "--epochs",
    "2",
    "--steps",
    "4",
    "--label-smoothing",
    "0",
    "--spacing",
    "1,2,3",
    "--no-augmentation",
  ]);
  assertEquals(classifyStageArgs({ ...fresh, resume: true }), [
    "classify",
    "/d/labels.csv",
    "--resume",
    "/w/classify",
    "--cache",
    "/data/t",
    "--spacing",
    "1,2,3",
  ]);
});

Deno.test("classifiedCases: class names to indices, sorted by case, maxTestCases; bad files named", () => {
  const csv = 'case,path,label,predicted,p_dark,p_bright\nz9,"/a,b.nii.gz",bright,dark,0.7,0.3\n' +
    "a1,/a1.nii.gz,dark,dark,0.9,0.1\nm5,/m5.nii.gz,dark,bright,0.4,0.6\n";
  const classes = ["dark", "bright"];
  assertEquals(classifiedCases(csv, classes, "t.csv"), [
    { case: "a1", label: 0, predicted: 0, probabilities: [0.9, 0.1] },
    { case: "m5", label: 0, predicted: 1, probabilities: [0.4, 0.6] },
    { case: "z9", label: 1, predicted: 0, probabilities: [0.7, 0.3] },
  ]);
  assertEquals(classifiedCases(csv, classes, "t.csv", 2).map((c) => c.case), ["a1", "m5"]);
  assertThrows(() => classifiedCases(csv, ["bright", "dark"], "t.csv"), Error, "t.csv: header");
  assertThrows(
    () => classifiedCases(csv.replace("dark,bright,0.4", "grey,bright,0.4"), classes, "t.csv"),
    Error,
    't.csv:4: class "grey"',
  );
  assertThrows(() => classifiedCases(csv.replace("0.9,", "x,"), classes, "t.csv"), Error, "t.csv:3");
});

Deno.test("checkDatasets: a classification CSV that is missing or names a missing image is refused", async () => {
  const { dir, cleanup } = await tempDir("voxssl-bench-cls-check-");
  try {
    await Deno.writeTextFile(join(dir, "labels.csv"), "image,label\nnone.nii.gz,a\nnone2.nii.gz,b\n");
    const datasets = [
      { name: "gone", task: "classification" as const, csv: join(dir, "gone.csv") },
      { name: "bad", task: "classification" as const, csv: join(dir, "labels.csv") },
    ];
    const error = await assertRejects(() => checkDatasets({ datasets }, "s.json"), ConfigError);
    const text = (error as Error).message;
    assert(text.includes(`datasets.0.csv: `) && text.includes("gone.csv"), text);
    assert(text.includes(`datasets.1.csv: `) && text.includes("none.nii.gz"), text);
  } finally {
    await cleanup();
  }
});
