import { type AugmentationInput, resolveAugmentation } from "../../../core/data/augment/config.ts";
import type { AugmentPlan } from "../../../core/data/augment/pipeline.ts";
import { createRng } from "../../../core/data/rng.ts";
import { cutRawCrop, cutRegion, type MaskName, type SampleSpec } from "../../../core/data/sample.ts";
import type { LoadTimings, VolumeReader } from "../../../core/data/sources.ts";
import { extractBox, type Shape3 } from "../../../core/data/volume.ts";
import { augmentBatchOnGpu } from "../../../core/train/gpu_augment.ts";
import { assert, assertEquals } from "../../assert.ts";
import { gpuTest, randomArray } from "../../helpers.ts";
import { philoxNoise } from "../../kernels/augment_ref.ts";
import { assertMaskTies, philoxNormals, stagedWithBound } from "./gpu_parity_ref.ts";

const SHAPE: Shape3 = [18, 20, 17];
const PATCH: Shape3 = [8, 8, 10];
const N = PATCH[0] * PATCH[1] * PATCH[2];
const volume = Float32Array.from(randomArray(SHAPE[0] * SHAPE[1] * SHAPE[2], 77, -1, 2));
const deface = Uint8Array.from(randomArray(volume.length, 78, 0, 2), Math.floor);

const reader: VolumeReader = {
  label: "random",
  shape: SHAPE,
  has: (a) => a === "image" || a === "anonymization",
  readRegion: (a, start, size) => extractBox(a === "image" ? volume : deface, SHAPE, start, size),
  bytes: 0,
  close() {},
};

const load = (): LoadTimings => ({ readMs: 0, decompressMs: 0, copyMs: 0, preprocessMs: 0 });

const FIRED: (keyof AugmentPlan)[] = [
  "spatial",
  "noiseSigma",
  "blurSigma",
  "brightness",
  "contrast",
  "lowresZoom",
  "gammaInverted",
  "gamma",
];

async function checkParity(
  gpu: Parameters<typeof augmentBatchOnGpu>[0],
  augmentation: AugmentationInput,
  interpolation: "linear" | "cubic",
  batch: number,
  everyTransform: false | "gamma" | "gammaInverted",
) {
  const spec: SampleSpec = {
    patch: PATCH,
    augmentation: resolveAugmentation(augmentation),
    anatomyProbability: 0,
    masks: ["deface"] as MaskName[],
    interpolation,
  };
  const seed = 1234, step = 7;
  const crops = Array.from(
    { length: batch },
    (_, b) => cutRawCrop(reader, createRng(seed, step, b), spec, load()),
  );
  const out = augmentBatchOnGpu(gpu, crops, { patch: PATCH, interpolation, padding: "zero", seed, step });
  const image = await out.image.toFloat64();
  const mask = (await out.masks[0].toArray()) as Uint8Array;
  const fired = new Set<string>();
  for (const [b, crop] of crops.entries()) {
    for (const key of FIRED) if (crop.plan[key] !== undefined) fired.add(key);
    if (crop.plan.mirror.some(Boolean)) fired.add("mirror");
    const z = philoxNoise(N, seed, step, b);
    const cpu = cutRegion(
      reader,
      crop.start,
      PATCH,
      crop.plan,
      spec.masks,
      philoxNormals(N, seed, step, b),
      load(),
      undefined,
      interpolation,
    );
    const staged = stagedWithBound(crop, interpolation, z, PATCH);
    assertEquals([...staged.image], [...cpu.image], "the staged CPU pipeline is cutRegion's");
    // the bound must stay small against the data's range (a deviation above 0.5% of it is caught), or the
    // check could not catch a wrong tap, factor or order
    const median = [...staged.bound].sort((p, q) => p - q)[N >> 1];
    const range = Math.max(...cpu.image) - Math.min(...cpu.image);
    assert(median < 5e-3 * range, `sample ${b}: median bound ${median} against a range of ${range}`);
    const got = image.subarray(b * N, (b + 1) * N);
    for (let i = 0; i < N; i++) {
      const err = Math.abs(got[i] - cpu.image[i]);
      assert(
        err <= staged.bound[i],
        `sample ${b} voxel ${i}: error ${err} > bound ${staged.bound[i]} (${JSON.stringify(crop.plan)})`,
      );
    }
    assertMaskTies(mask.subarray(b * N, (b + 1) * N), cpu.masks.deface!, crop, `sample ${b}`, PATCH);
  }
  if (everyTransform) {
    const skipped = everyTransform === "gamma" ? "gammaInverted" : "gamma";
    const expected = [...FIRED, "mirror"].filter((k) => k !== skipped);
    assertEquals([...fired].sort(), expected.sort(), "every transform fired");
  }
  out.image.dispose();
  out.masks.forEach((t) => t.dispose());
}

gpuTest("GPU augmentation matches the CPU path on the nnssl-mae preset (cubic)", async (gpu) => {
  await checkParity(gpu, "nnssl-mae", "cubic", 8, false);
});

gpuTest("GPU augmentation matches the CPU path on the nnunet preset (linear)", async (gpu) => {
  await checkParity(gpu, "nnunet", "linear", 8, false);
});

// Every transform fires, with one of the two gammas at a time: after two successive gammas the worst-case
// bound compounds (each amplifies errors near its minimum) past the point where it could catch a bug.
for (const gamma of ["gamma", "gammaInverted"] as const) {
  gpuTest(
    `GPU augmentation matches the CPU path with every nnunet transform firing (cubic, ${gamma})`,
    async (gpu) => {
      const on = { p: 1 };
      await checkParity(
        gpu,
        {
          preset: "nnunet",
          rotation: on,
          scale: on,
          noise: on,
          blur: on,
          brightness: on,
          contrast: on,
          lowres: on,
          [gamma]: on,
          [gamma === "gamma" ? "gammaInverted" : "gamma"]: { p: 0 },
        },
        "cubic",
        3,
        gamma,
      );
    },
  );
}

gpuTest(
  "GPU augmentation is a pure function of (seed, step, sample): the same batch again, others differ",
  async (gpu) => {
    const spec: SampleSpec = {
      patch: PATCH,
      augmentation: resolveAugmentation({ preset: "nnunet", noise: { p: 1 } }),
      anatomyProbability: 0,
      masks: [],
    };
    const run = async (step: number) => {
      const crops = [0, 1].map((b) => cutRawCrop(reader, createRng(5, step, b), spec, load()));
      const out = augmentBatchOnGpu(gpu, crops, {
        patch: PATCH,
        interpolation: "cubic",
        padding: "zero",
        seed: 5,
        step,
      });
      const values = await out.image.toFloat64();
      out.image.dispose();
      return values;
    };
    const first = await run(3);
    assertEquals([...await run(3)], [...first]);
    const other = await run(4);
    assert(other.some((v, i) => v !== first[i]), "another step gives another batch");
  },
);
