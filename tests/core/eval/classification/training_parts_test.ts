/**
 * The pieces of classification fine-tuning: stratified splits and nested label fractions, the centred
 * crop on hand-made volumes, training batches (deterministic, smoothed targets, the whole case when the
 * patch covers it), soft-target cross-entropy against a float64 reference, the scores and the per-case
 * CSV on hand-made predictions, and the bad inputs a user meets (4D image, one class, a split naming an
 * unknown case), each named for the user.
 */
import { join } from "node:path";
import { assert, assertEquals, assertRejects, assertThrows } from "../../../assert.ts";
import { DataFileError, resolveAugmentation } from "../../../../core/data/mod.ts";
import { writeNifti } from "../../../../core/data/nifti_write.ts";
import {
  argmax,
  centreCrop,
  classificationBatches,
  type ClassificationData,
  type ClassificationVolume,
  finetuneClassification,
  FinetuneConfigError,
  loadClassificationData,
  predictionsCsv,
  readClassificationCsv,
  softmaxRow,
  softTargetCrossEntropy,
  stratifiedLabelFraction,
  stratifiedSplit,
  summarisePredictions,
} from "../../../../core/eval/mod.ts";
import { tensor as tensorOf } from "../../../../core/tensor/mod.ts";
import { VERSION } from "../../../../mod.ts";
import resenc from "../../../../plugins/arch/resenc/mod.ts";
import { userErrorMessage } from "../../../../cli/user_errors.ts";
import { checkOp } from "../../../op_harness.ts";
import { gpuTest, randomArray } from "../../../helpers.ts";

/** |actual − expected| ≤ tolerance. */
function near(actual: number, expected: number, tolerance: number): void {
  assert(Math.abs(actual - expected) <= tolerance, `${actual} is not within ${tolerance} of ${expected}`);
}

const cases = [
  ...Array.from({ length: 7 }, (_, i) => ({ id: `a${i}`, classIndex: 0 })),
  ...Array.from({ length: 4 }, (_, i) => ({ id: `b${i}`, classIndex: 1 })),
  ...Array.from({ length: 2 }, (_, i) => ({ id: `c${i}`, classIndex: 2 })),
];

Deno.test("stratifiedSplit: each class split ⌈n/2⌉ / ⌊n/2⌋, seeded, independent of the listing order", () => {
  const split = stratifiedSplit(cases, 3);
  const count = (ids: string[], p: string) => ids.filter((id) => id.startsWith(p)).length;
  assertEquals(["a", "b", "c"].map((p) => count(split.train, p)), [4, 2, 1]);
  assertEquals(["a", "b", "c"].map((p) => count(split.test, p)), [3, 2, 1]);
  assertEquals([...split.train, ...split.test].sort(), cases.map((c) => c.id).sort());
  assertEquals(stratifiedSplit([...cases].reverse(), 3), split);
  const seeds = new Set([0, 1, 2, 3, 4, 5].map((s) => stratifiedSplit(cases, s).train.join()));
  assert(seeds.size > 1, "other seeds draw other splits");
  assertThrows(
    () => stratifiedSplit([...cases, { id: "d0", classIndex: 3 }], 0),
    Error,
    "class index 3 has 1 case",
  );
});

Deno.test("stratifiedLabelFraction: ⌈f·n_k⌉ per class (at least one), nested across fractions", () => {
  const train = cases.filter((c) => stratifiedSplit(cases, 0).train.includes(c.id));
  const sizes = (f: number) => {
    const kept = stratifiedLabelFraction(train, f, 0);
    return ["a", "b", "c"].map((p) => kept.filter((id) => id.startsWith(p)).length);
  };
  assertEquals(sizes(1), [4, 2, 1]);
  assertEquals(sizes(0.5), [2, 1, 1]);
  assertEquals(sizes(0.05), [1, 1, 1]);
  const small = stratifiedLabelFraction(train, 0.25, 0);
  const half = stratifiedLabelFraction(train, 0.5, 0);
  assert(small.every((id) => half.includes(id)), "the 25 % subset lies inside the 50 % subset");
  assertThrows(() => stratifiedLabelFraction(train, 0, 0), RangeError);
});

Deno.test("centreCrop: hand-made volumes, a larger patch padded with zeros, a smaller one centred", () => {
  // 3×3×3 holding 1…27, two channels (the second negated)
  const values = Float32Array.from({ length: 27 }, (_, i) => i + 1);
  const volume = { image: [values, values.map((v) => -v)], shape: [3, 3, 3] as [number, number, number] };
  const big = centreCrop(volume, [5, 5, 5]);
  assertEquals(big.length, 2 * 125);
  // start −1 per axis: output voxel (d, h, w) holds source (d−1, h−1, w−1)
  assertEquals(big[(1 * 5 + 1) * 5 + 1], 1);
  assertEquals(big[(3 * 5 + 3) * 5 + 3], 27);
  assertEquals(big[(2 * 5 + 1) * 5 + 3], 1 + 9 + 0 + 2);
  assertEquals(big[0], 0);
  assertEquals(big[(4 * 5 + 4) * 5 + 4], 0);
  assertEquals(big[125 + (3 * 5 + 3) * 5 + 3], -27);
  assertEquals(big.reduce((s, v) => s + (v > 0 ? v : 0), 0), (27 * 28) / 2);
  // 4×4×4 → 2×2×2 starts at 1: the central cube
  const v4 = {
    image: [Float32Array.from({ length: 64 }, (_, i) => i)],
    shape: [4, 4, 4] as [number, number, number],
  };
  assertEquals([...centreCrop(v4, [2, 2, 2])], [21, 22, 25, 26, 37, 38, 41, 42]);
  // anisotropic: 2×4×6 → 2×2×2 starts at (0, 1, 2)
  const v246 = {
    image: [Float32Array.from({ length: 48 }, (_, i) => i)],
    shape: [2, 4, 6] as [number, number, number],
  };
  assertEquals([...centreCrop(v246, [2, 2, 2])], [8, 9, 14, 15, 32, 33, 38, 39]);
});

function volume(id: string, classIndex: number, seed: number): ClassificationVolume {
  return {
    id,
    classIndex,
    shape: [4, 4, 4],
    image: [Float32Array.from(randomArray(64, seed, -2, 2)), Float32Array.from(randomArray(64, seed + 50))],
  };
}

Deno.test("classificationBatches: pure in (seed, step), smoothed targets of the samples' classes, whole cases", async () => {
  const vols = [volume("x", 0, 1), volume("y", 2, 2), volume("z", 1, 3)];
  const spec = { patch: [4, 4, 4] as [number, number, number], augmentation: resolveAugmentation("none") };
  const source = classificationBatches(vols, { ...spec, classes: 3, labelSmoothing: 0.1 }, 5, 7);
  const a = await source.batch(4);
  const again = await classificationBatches(vols, { ...spec, classes: 3, labelSmoothing: 0.1 }, 5, 7).batch(
    4,
  );
  assertEquals(a.arrays.image.data, again.arrays.image.data);
  assertEquals(a.sources, again.sources);
  const other = await source.batch(5);
  assert(
    other.sources!.join() !== a.sources!.join() ||
      other.arrays.image.data.some((v, i) => v !== a.arrays.image.data[i]),
  );
  assertEquals(a.arrays.image.shape, [5, 2, 4, 4, 4]);
  assertEquals(a.arrays.target.shape, [5, 3]);
  const byId = new Map(vols.map((v) => [v.id, v]));
  const labels = a.sources!.map((id) => byId.get(id)!.classIndex);
  assertEquals([...(a.arrays.label.data as Int32Array)], labels);
  // ε = 0.1 over 3 classes: 0.1/3 everywhere, 0.9 + 0.1/3 on the class
  for (let i = 0; i < 5; i++) {
    for (let k = 0; k < 3; k++) {
      near(a.arrays.target.data[i * 3 + k], k === labels[i] ? 0.9 + 0.1 / 3 : 0.1 / 3, 1e-7);
    }
    // without augmentation a patch the size of the case is the case itself, channel by channel
    const v = byId.get(a.sources![i])!;
    const sample = a.arrays.image.data.subarray(i * 128, (i + 1) * 128);
    assertEquals([...sample], [...v.image[0], ...v.image[1]]);
  }
  assertThrows(
    () => classificationBatches([], { ...spec, classes: 2, labelSmoothing: 0 }, 1, 0),
    Error,
    "no training",
  );
});

gpuTest("softTargetCrossEntropy with soft rows matches the float64 reference (values and gradients)", () => {
  const raw = randomArray(12, 9, 0.05, 1);
  const q = new Float32Array(12);
  for (let i = 0; i < 3; i++) {
    const s = raw[4 * i] + raw[4 * i + 1] + raw[4 * i + 2] + raw[4 * i + 3];
    for (let k = 0; k < 4; k++) q[4 * i + k] = raw[4 * i + k] / s;
  }
  return checkOp({
    name: "soft-target CE",
    inputs: [{ shape: [3, 4], lo: -3, hi: 3 }],
    gpu: ([x]) => softTargetCrossEntropy(x, tensorOf(q, [3, 4])),
    ref: ([x]) => {
      let total = 0;
      for (let i = 0; i < 3; i++) {
        const row = Array.from(x.data.subarray(i * 4, i * 4 + 4));
        const lse = Math.log(row.reduce((s, v) => s + Math.exp(v), 0));
        for (let k = 0; k < 4; k++) total -= q[i * 4 + k] * (row[k] - lse);
      }
      return { shape: [], data: Float64Array.of(total / 3) };
    },
  });
});

Deno.test("scores and the per-case CSV on hand-made predictions; softmax and argmax", () => {
  // large logits (max subtracted, no overflow); 1000 + ln 3 is itself rounded to ~1e-13, hence 1e-12
  const p = softmaxRow([1000, 1000 + Math.log(3)]);
  near(p[0], 0.25, 1e-12);
  near(p[1], 0.75, 1e-12);
  assertEquals([argmax([0.2, 0.4, 0.4]), argmax([0.5, 0.1])], [1, 0]);
  const classes = ["AD", "CN", "MCI, early"];
  const predictions = [
    { id: "s1", label: 0, predicted: 0, probabilities: [0.7, 0.2, 0.1] },
    { id: "s2", label: 0, predicted: 1, probabilities: [0.3, 0.6, 0.1] },
    { id: "s3", label: 1, predicted: 1, probabilities: [0.1, 0.8, 0.1] },
    { id: "s4", label: 2, predicted: 2, probabilities: [0.2, 0.2, 0.6] },
  ];
  const s = summarisePredictions(predictions, classes);
  assertEquals(s.accuracy, 0.75);
  assertEquals(s.balancedAccuracy, (0.5 + 1 + 1) / 3);
  assertEquals(s.support, [2, 1, 1]);
  // one-vs-rest by hand: class 0 positives {0.7, 0.3} vs negatives {0.1, 0.2}: 4/4; class 1 {0.8} vs
  // {0.2, 0.6, 0.2}: 3/3; class 2 {0.6} vs {0.1, 0.1, 0.1}: 3/3
  assertEquals(s.aurocPerClass, [1, 1, 1]);
  assertEquals(s.auroc, 1);
  const csv = predictionsCsv(s, {
    s1: "/d/s1.nii.gz",
    s2: "/d/s,2.nii.gz",
    s3: "/d/s3.nii.gz",
    s4: "/d/s4.nii.gz",
  });
  const lines = csv.trimEnd().split("\n");
  assertEquals(lines[0], 'case,path,label,predicted,p_AD,p_CN,"p_MCI, early"');
  assertEquals(lines[2], 's2,"/d/s,2.nii.gz",AD,CN,0.300000,0.600000,0.100000');
  assertEquals(lines[4], 's4,/d/s4.nii.gz,"MCI, early","MCI, early",0.200000,0.200000,0.600000');
  // a test set without a class: its AUROC is undefined (null), the macro mean leaves it out
  const two = summarisePredictions(predictions.slice(0, 3), classes);
  assertEquals(two.aurocPerClass[2], null);
});

Deno.test("bad inputs name the file, the case and what was expected (user errors, no stack)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "voxssl-cls-bad-" });
  try {
    const affine = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1];
    const data = Float32Array.from(randomArray(2 * 27, 4, 1, 2));
    await writeNifti(join(dir, "two.nii.gz"), { data, shape: [3, 3, 3], affine }, { frames: 2 });
    await writeNifti(join(dir, "one.nii.gz"), { data: data.subarray(0, 27), shape: [3, 3, 3], affine });
    await Deno.writeTextFile(join(dir, "4d.csv"), "image,label\none.nii.gz,a\ntwo.nii.gz,b\n");
    const error = await assertRejects(
      async () =>
        loadClassificationData(await readClassificationCsv(join(dir, "4d.csv")), join(dir, "cache")),
      DataFileError,
      "case two (line 3)",
    );
    assert(error.message.includes("holds 2 volumes") && error.message.includes("4d.csv"), error.message);
    assertEquals(userErrorMessage(error), error.message);
    await Deno.writeTextFile(join(dir, "ids.csv"), "case,image,label\na b,one.nii.gz,a\na_b,one.nii.gz,b\n");
    await assertRejects(
      async () =>
        loadClassificationData(await readClassificationCsv(join(dir, "ids.csv")), join(dir, "cache")),
      DataFileError,
      'cases "a b" and "a_b" would share the cache file a_b.vxc',
    );
    await Deno.writeTextFile(join(dir, "one.csv"), "image,label\none.nii.gz,a\n");
    await assertRejects(
      async () =>
        loadClassificationData(await readClassificationCsv(join(dir, "one.csv")), join(dir, "cache")),
      DataFileError,
      "one.csv: only one class (a) in the label column; classification needs at least 2",
    );

    const vols = [volume("x", 0, 1), volume("y", 0, 2)];
    const single: ClassificationData = {
      name: "one.csv",
      classes: ["a"],
      channelNames: ["image_0000", "image_0001"],
      spacing: null,
      cases: vols,
      sources: {},
    };
    const common = { arch: resenc, size: "tiny", coreVersion: VERSION, out: join(dir, "run"), log: () => {} };
    const one = await assertRejects(
      () => finetuneClassification({ ...common, data: single }),
      FinetuneConfigError,
      "one.csv: only one class (a)",
    );
    assertEquals(userErrorMessage(one), one.message);
    const two = { ...single, classes: ["a", "b"], cases: [...vols, volume("z", 1, 3), volume("w", 1, 4)] };
    await assertRejects(
      () => finetuneClassification({ ...common, data: two, split: { train: ["x", "q"], test: ["z"] } }),
      FinetuneConfigError,
      'split: train case "q" is not in one.csv',
    );
    await assertRejects(
      () => finetuneClassification({ ...common, data: two, split: { train: ["x", "y"], test: ["z", "w"] } }),
      FinetuneConfigError,
      "the training split of one.csv holds one class only (a)",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
