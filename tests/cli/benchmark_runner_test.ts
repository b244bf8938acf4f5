/** The real runner's pure parts: per-case scores from `voxssl evaluate`'s summary, stage option checks. */
import { assert, assertEquals, assertRejects, assertThrows } from "../assert.ts";
import {
  caseScores,
  checkDatasets,
  checkStageOptions,
  finetuneFlags,
  keepCases,
  overlayCases,
  PredictOptionsSchema,
  predictStageArgs,
} from "../../cli/benchmark_runner.ts";
import type { PretrainIndex } from "../../core/data/mod.ts";
import { expandGrid, parseBenchmarkSpec, readBenchmarkSpec } from "../../core/eval/benchmark/mod.ts";
import { ConfigError } from "../../cli/errors.ts";

Deno.test("caseScores: mean over foreground classes, nnU-Net's NaN (empty in both) left out", () => {
  const summary = {
    classes: [1, 2],
    names: { "1": "anterior", "2": "posterior" },
    cases: [
      { name: "h_001.nii.gz", classes: { "1": { dice: 0.8 }, "2": { dice: 0.6 } } },
      { name: "h_002.nii.gz", classes: { "1": { dice: "NaN" }, "2": { dice: 0.5 } } },
      { name: "h_003.nii.gz", classes: { "1": { dice: "NaN" }, "2": { dice: "NaN" } } },
    ],
  };
  const scores = caseScores(summary);
  assertEquals(scores.map((s) => s.case), ["h_001", "h_002"]); // h_003 has no class to score
  assert(Math.abs(scores[0].dice - 0.7) < 1e-15);
  assertEquals(scores[1].dice, 0.5);
  assertEquals(scores[1].perClass, { anterior: null, posterior: 0.5 });
});

Deno.test("checkStageOptions: unknown or wrong finetune/predict options name the field", () => {
  checkStageOptions({
    finetune: { epochs: 2, patch: [32, 32, 32], spacing: "none" },
    predict: { mirroring: true },
  }, "s.json");
  const error = assertThrows(
    () => checkStageOptions({ finetune: { epochs: 0, steps: 3 }, predict: { step: 2 } }, "s.json"),
    ConfigError,
  );
  for (const part of ["s.json:", "finetune.epochs:", "finetune:", '"steps"', "predict.step:"]) {
    assert(error.message.includes(part), `${part} in ${error.message}`);
  }
});

Deno.test("finetune options become flags (optimizer, deep supervision); the shipped specs are valid", async () => {
  assertEquals(
    finetuneFlags({ epochs: 3, optimizer: "adamw", lr: 0.003, deepSupervision: true, augmentation: false }),
    ["--epochs", "3", "--lr", "0.003", "--optimizer", "adamw", "--deep-supervision", "--no-augmentation"],
  );
  const error = assertThrows(
    () => checkStageOptions({ finetune: { optimizer: "adam" }, predict: { patch: [0, 8, 8] } }, "s.json"),
    ConfigError,
  );
  for (const part of ["finetune.optimizer:", "predict.patch.0:"]) {
    assert(error.message.includes(part), `${part} in ${error.message}`);
  }
  for (const file of ["configs/benchmark.json", "bench/specs/hippocampus_scratch_vs_mae.json"]) {
    const spec = await readBenchmarkSpec(new URL(`../../${file}`, import.meta.url).pathname);
    checkStageOptions(spec, file);
  }
});

Deno.test("keepCases: the pretraining index keeps the training cases only", () => {
  const image = (name: string) => ({ name, image_path: `/d/imagesTr/${name}`, modality: "MRI" });
  const index = {
    collection_index: 0,
    collection_name: "x",
    datasets: {
      imagesTr: {
        dataset_index: "imagesTr",
        name: "imagesTr",
        dataset_info: null,
        subjects: {
          a: {
            subject_id: "a",
            subject_info: null,
            sessions: {
              s: {
                session_id: "s",
                session_info: null,
                images: [image("h_001_0000.nii.gz"), image("h_002_0000.nii.gz")],
              },
            },
          },
          b: {
            subject_id: "b",
            subject_info: null,
            sessions: { s: { session_id: "s", session_info: null, images: [image("h_003_0000.nii.gz")] } },
          },
        },
      },
    },
  } as unknown as PretrainIndex;
  const { index: kept, images } = keepCases(index, new Set(["h_002"]));
  assertEquals(images, 1);
  assertEquals(Object.keys(kept.datasets.imagesTr.subjects), ["a"]);
  assertEquals(kept.datasets.imagesTr.subjects.a.sessions.s.images.map((i) => i.name), ["h_002_0000.nii.gz"]);
  assertEquals(Object.keys(index.datasets.imagesTr.subjects).length, 2, "the input is not changed");
});

Deno.test("grid: pretraining on a benchmarked dataset holds out its test split", async () => {
  const spec = (data: string) =>
    parseBenchmarkSpec(
      {
        architectures: ["resenc-tiny"],
        datasets: [{ name: "h", path: "/data/hippo" }],
        splitSeed: 3,
        methods: [{ name: "mae", pretrain: { method: "mae", data } }],
      },
      "s",
      "/",
    );
  const same = await expandGrid(spec("/data/hippo/"));
  assertEquals(same.jobs[0].holdOut, { splitSeed: 3, splitFile: undefined });
  const other = await expandGrid(spec("/data/openmind"));
  assertEquals(other.jobs[0].holdOut, undefined);
});

Deno.test("checkDatasets: a dataset folder without dataset.json is refused, naming the field", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/dataset.json`, "{}");
  await checkDatasets({ datasets: [{ name: "a", path: dir }] }, "s.json");
  const error = await assertRejects(
    () =>
      checkDatasets({ datasets: [{ name: "a", path: dir }, { name: "b", path: `${dir}/none` }] }, "s.json"),
    ConfigError,
  );
  assert(error.message.includes(`datasets.1.path: ${dir}/none has no dataset.json`), error.message);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("overlayCases: a cell's first predicted case with its image and reference; cells without files left out", async () => {
  const root = await Deno.makeTempDir({ prefix: "voxssl-overlay-" });
  const work = `${root}/cell-a`;
  for (const d of ["predictions", "test/images", "test/labels"]) {
    await Deno.mkdir(`${work}/${d}`, { recursive: true });
  }
  for (const f of ["predictions/case_2.nii.gz", "predictions/case_1.nii.gz", "test/labels/case_1.nii.gz"]) {
    await Deno.writeFile(`${work}/${f}`, new Uint8Array([1]));
  }
  await Deno.writeFile(`${work}/test/images/case_1_0000.nii.gz`, new Uint8Array([1]));
  const cell = (method: string) => ({ method, dataset: { name: "hippo" }, labelFraction: 1, seed: 0 });
  const store = {
    cells: () =>
      Promise.resolve(
        new Map([
          ["a", { cell: cell("mae"), result: { artifacts: { predictions: `${work}/predictions` } } }],
          ["b", {
            cell: cell("scratch"),
            result: { artifacts: { predictions: `${root}/gone/predictions` } },
          }],
          ["c", { cell: cell("scratch"), result: {} }],
        ]) as never,
      ),
  };
  assertEquals(await overlayCases(store), [{
    name: "hippo / case_1 / mae (fraction 1, seed 0)",
    image: `${work}/test/images/case_1_0000.nii.gz`,
    prediction: `${work}/predictions/case_1.nii.gz`,
    reference: `${work}/test/labels/case_1.nii.gz`,
  }]);
  await Deno.remove(root, { recursive: true });
});

Deno.test("predictStageArgs: spacing and window come from the fine-tuned checkpoint; a spec's patch and mirroring pass on", () => {
  const base = {
    images: "w/test/images",
    checkpoint: "w/final.safetensors",
    dataset: "/d/hippo",
    out: "w/p",
  };
  assertEquals(predictStageArgs({ ...base, options: PredictOptionsSchema.parse({}) }), [
    "predict",
    "w/test/images",
    "--checkpoint",
    "w/final.safetensors",
    "--dataset",
    "/d/hippo",
    "--out",
    "w/p",
    "--step",
    "0.5",
  ]);
  const given = predictStageArgs({
    ...base,
    options: PredictOptionsSchema.parse({ patch: [16, 32, 24], step: 0.25, mirroring: true }),
  });
  assertEquals(given.slice(8), ["--patch", "16,32,24", "--step", "0.25", "--mirror"]);
  assert(!given.includes("--spacing"));
});
