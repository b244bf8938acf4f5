/**
 * The methods' own per-crop pipelines on the GPU (`context.augment(crop, pipeline, rng, into)` with
 * `gpuViewAugmentation`): each pipeline with every transform firing against the CPU pipeline on random
 * crops, and SimCLR, VoCo and VolumeFusion through the loader's GPU mode against their CPU mode. The CPU
 * side runs stage by stage with the GPU's Philox normals (view-keyed) and a per-voxel f32 error bound
 * (gpu_parity_ref.ts).
 */
import { type AugmentationInput, resolveAugmentation } from "../../../core/data/augment/config.ts";
import {
  applyAugmentation,
  type AugmentPlan,
  planAugmentation,
} from "../../../core/data/augment/pipeline.ts";
import { createPatchLoader, type PatchBatch } from "../../../core/data/loader.ts";
import { createRng } from "../../../core/data/rng.ts";
import type { Shape3 } from "../../../core/data/volume.ts";
import type { Gpu } from "../../../core/gpu/mod.ts";
import { tensor } from "../../../core/tensor/mod.ts";
import { augmentViewsOnGpu, type GpuView } from "../../../core/train/gpu_augment.ts";
import { uploadBatch } from "../../../core/train/gpu_batch.ts";
import { CONTRASTIVE_AUGMENTATION } from "../../../plugins/ssl/simclr/mod.ts";
import { fuse, fuseOnGpu, VOLUME_FUSION_AUGMENTATION } from "../../../plugins/ssl/volume-fusion/mod.ts";
import { assert, assertEquals, assertRejects } from "../../assert.ts";
import { SampleHookError } from "../../../core/data/errors.ts";
import { gpuTest, randomArray } from "../../helpers.ts";
import { maxAbs, philoxNoise, U } from "../../kernels/augment_ref.ts";
import { philoxNormals, stagedWithBound } from "./gpu_parity_ref.ts";

const voxels = (s: Shape3) => s[0] * s[1] * s[2];

/** Asserts |got − expected| ≤ bound per voxel and that the bound is small against the data's range. */
function assertWithin(
  got: ArrayLike<number>,
  expected: ArrayLike<number>,
  bound: ArrayLike<number>,
  label: string,
) {
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < expected.length; i++) {
    lo = Math.min(lo, expected[i]);
    hi = Math.max(hi, expected[i]);
  }
  const median = Array.from(bound).sort((p, q) => p - q)[expected.length >> 1];
  assert(median < 5e-3 * (hi - lo), `${label}: median bound ${median} against a range of ${hi - lo}`);
  for (let i = 0; i < expected.length; i++) {
    const err = Math.abs(got[i] - expected[i]);
    assert(err <= bound[i], `${label} voxel ${i}: error ${err} > bound ${bound[i]}`);
  }
}

/** Augments `views` crops of `shape` in one tensor on the GPU and checks each against the CPU pipeline. */
async function checkPipeline(gpu: Gpu, pipeline: AugmentationInput, shape: Shape3, count: number) {
  const n = voxels(shape);
  const seed = 99, step = 3, samples = 2;
  const config = resolveAugmentation(pipeline);
  const data = Float32Array.from(randomArray(samples * count * n, 41, -1, 3));
  const views: GpuView[] = [];
  for (let b = 0; b < samples; b++) {
    for (let i = 0; i < count; i++) {
      const plan = planAugmentation(config, createRng(seed, step, b, "view", i).fork("augment"));
      views.push({ base: (b * count + i) * n, shape, plan, sample: b, view: i + 1 });
    }
  }
  const t = tensor(data, [samples, count, 1, ...shape], { gpu });
  augmentViewsOnGpu(gpu, t, views, { seed, step });
  const got = await t.toFloat64();
  t.dispose();
  const fired = new Set<string>();
  for (const v of views) {
    for (const [k, value] of Object.entries(v.plan)) if (value !== undefined && k !== "mirror") fired.add(k);
    if (v.plan.mirror.some(Boolean)) fired.add("mirror");
    const raw = data.slice(v.base, v.base + n);
    const cpu = applyAugmentation(raw.slice(), shape, v.plan, philoxNormals(n, seed, step, v.sample, v.view));
    const z = philoxNoise(n, seed, step, v.sample, v.view);
    const staged = stagedWithBound({ image: raw, shape, centre: [], plan: v.plan }, "linear", z, shape);
    assertEquals([...staged.image], [...cpu], "the staged CPU pipeline is applyAugmentation's");
    assertWithin(got.subarray(v.base, v.base + n), cpu, staged.bound, `sample ${v.sample} view ${v.view}`);
  }
  return fired;
}

const on = { p: 1 };
const EVERY_TRANSFORM = ["noiseSigma", "blurSigma", "brightness", "contrast", "lowresZoom", "mirror"];

// One gamma at a time (as gpu_augment_test.ts): two in a row compound the worst-case bound past usefulness.
for (
  const [name, pipeline, turns] of [
    ["contrastive (SimCLR, VoCo)", CONTRASTIVE_AUGMENTATION, true],
    ["volume-fusion", VOLUME_FUSION_AUGMENTATION, false],
  ] as const
) {
  for (const gamma of ["gamma", "gammaInverted"] as const) {
    gpuTest(
      `GPU view augmentation matches the CPU on the ${name} pipeline, every transform firing (${gamma})`,
      async (gpu) => {
        const forced = {
          ...(pipeline as object),
          noise: on,
          blur: on,
          brightness: on,
          contrast: on,
          lowres: on,
          mirror: on,
          [gamma]: on,
          [gamma === "gamma" ? "gammaInverted" : "gamma"]: { p: 0 },
          ...(turns ? { rot90: on } : {}),
        } as AugmentationInput;
        const fired = await checkPipeline(gpu, forced, [8, 8, 6], 2);
        const expected = [...EVERY_TRANSFORM, gamma, ...(turns ? ["rot90"] : [])];
        assertEquals([...fired].sort(), expected.sort(), "every transform fired");
      },
    );
  }
}

gpuTest(
  "GPU view augmentation matches the CPU on the contrastive pipeline as configured (many views)",
  async (gpu) => {
    const fired = await checkPipeline(gpu, CONTRASTIVE_AUGMENTATION, [6, 6, 8], 12);
    assert(fired.has("rot90") && fired.has("mirror"), `a realistic mix fired: ${[...fired]}`);
  },
);

const plugin = (name: string) => new URL(`../../../plugins/ssl/${name}/mod.ts`, import.meta.url);
const PATCH: Shape3 = [8, 8, 8];
const SEED = 6;

async function batches(name: string, hookConfig: unknown, step: number): Promise<[PatchBatch, PatchBatch]> {
  const open = (augmentOn: "cpu" | "gpu") =>
    createPatchLoader({
      source: { kind: "synthetic", count: 3, shape: [20, 20, 20] },
      patchSize: PATCH,
      batchSize: 2,
      seed: SEED,
      workers: 0,
      prefetch: 0,
      augmentation: "none",
      augmentOn,
      hookModule: plugin(name),
      hookConfig,
      onSkip: () => {},
    });
  const out: PatchBatch[] = [];
  for (const device of ["cpu", "gpu"] as const) {
    const loader = await open(device);
    try {
      out.push(await loader.batch(step));
    } finally {
      loader.close();
    }
  }
  return out as [PatchBatch, PatchBatch];
}

/**
 * One method through the loader on both paths: the GPU path's batch carries the views raw where the hook
 * said; uploaded, they match the CPU pipeline with the GPU's noise; noiseless views equal the CPU path's.
 * Returns the uploaded views' CPU expectations and bounds by array and sample, for method-specific checks.
 */
async function checkMethod(
  gpu: Gpu,
  name: string,
  hookConfig: unknown,
  viewArrays: string[],
  step: number,
  sameArrays = true,
) {
  const [cpu, raw] = await batches(name, hookConfig, step);
  assert(cpu.views === undefined, "the CPU path leaves nothing for the GPU");
  assert(raw.views !== undefined && raw.views.length === 2, "the GPU path ships each sample's views");
  const batch = uploadBatch(
    { arrays: raw.arrays, views: { samples: raw.views, key: { seed: SEED, step } } },
    gpu,
    name,
  );
  const n = voxels(PATCH);
  const expected = new Map<string, { image: Float32Array; bound: Float64Array; plan: AugmentPlan }[][]>();
  let noiseless = 0;
  try {
    for (const name of viewArrays) {
      const got = await batch.get(name).toFloat64();
      const perSample = raw.arrays[name].data.length / 2;
      const list: { image: Float32Array; bound: Float64Array; plan: AugmentPlan }[][] = [[], []];
      for (const [b, views] of raw.views.entries()) {
        for (const v of views.filter((v) => v.array === name)) {
          const at = b * perSample + v.index * n;
          const rawImage = (raw.arrays[name].data as Float32Array).slice(at, at + n);
          const z = philoxNoise(n, SEED, step, b, v.view);
          const staged = stagedWithBound(
            { image: rawImage, shape: PATCH, centre: [], plan: v.plan },
            "linear",
            z,
            PATCH,
          );
          assertWithin(
            got.subarray(at, at + n),
            staged.image,
            staged.bound,
            `${name}[${b}][${v.index}] ${JSON.stringify(v.plan)}`,
          );
          if (sameArrays && v.plan.noiseSigma === undefined) {
            noiseless++;
            const cpuEntry = (cpu.arrays[name].data as Float32Array).subarray(at, at + n);
            assertEquals([...cpuEntry], [...staged.image], `${name}[${b}][${v.index}]: the CPU path's crop`);
          }
          list[b][v.index] = { image: staged.image, bound: staged.bound, plan: v.plan };
        }
      }
      expected.set(name, list);
    }
    if (sameArrays) assert(noiseless > 0, "some views to compare with the CPU path exactly");
    for (const [b, views] of raw.views.entries()) {
      assertEquals(
        views.map((v) => v.view),
        views.map((_, i) => i + 1),
        `sample ${b}: views numbered in call order`,
      );
    }
  } catch (error) {
    for (const t of Object.values(batch.tensors)) t.dispose();
    throw error;
  }
  return { cpu, raw, batch, expected };
}

gpuTest(
  "SimCLR on the GPU path: views augmented in place match the CPU path; starts identical",
  async (gpu) => {
    const config = { region: [16, 16, 8], pairsPerImage: 2, hiddenDim: 8, embeddingDim: 8 };
    const { cpu, raw, batch, expected } = await checkMethod(gpu, "simclr", config, ["views"], 2);
    assertEquals(Object.keys(raw.arrays).sort(), ["starts", "views"]);
    assertEquals(raw.arrays.starts.data, cpu.arrays.starts.data, "the same crops");
    assertEquals(expected.get("views")!.map((s) => s.length), [4, 4]);
    for (const t of Object.values(batch.tensors)) t.dispose();
  },
);

gpuTest("VoCo on the GPU path: base and target crops augmented in place match the CPU path", async (gpu) => {
  const config = { grid: [2, 2, 1], targets: 2, hiddenDim: 8, embeddingDim: 8 };
  const { cpu, raw, batch, expected } = await checkMethod(gpu, "voco", config, ["crops"], 1);
  assertEquals(raw.arrays.overlap.data, cpu.arrays.overlap.data, "the same overlaps");
  assertEquals(expected.get("crops")!.map((s) => s.length), [6, 6]);
  for (const t of Object.values(batch.tensors)) t.dispose();
});

gpuTest(
  "VolumeFusion on the GPU path: both crops augmented, fused on the GPU like fuse() on the CPU",
  async (gpu) => {
    const { cpu, raw, batch, expected } = await checkMethod(
      gpu,
      "volume-fusion",
      {},
      ["foreground", "background"],
      4,
      false,
    );
    const plans = ["foreground", "background"].flatMap((k) => expected.get(k)!.map((s) => s[0].plan));
    assert(plans.some((p) => Object.keys(p).length > 1 || p.mirror.some(Boolean)), "some crop is augmented");
    assertEquals(Object.keys(raw.arrays).sort(), ["background", "foreground", "target"]);
    assertEquals(Object.keys(cpu.arrays).sort(), ["image", "target"]);
    assertEquals(raw.arrays.target.data, cpu.arrays.target.data, "the same class map");
    const fused = fuseOnGpu(batch.get("foreground"), batch.get("background"), batch.get("target"), 5);
    const got = await fused.toFloat64();
    fused.dispose();
    const n = voxels(PATCH);
    for (let b = 0; b < 2; b++) {
      const fg = expected.get("foreground")![b][0], bg = expected.get("background")![b][0];
      const target = (raw.arrays.target.data as Uint8Array).subarray(b * n, (b + 1) * n);
      const want = fuse(fg.image, bg.image, target, 5);
      // α·fg + (1 − α)·bg: the inputs' bounds weighted, plus α's and the three operations' rounding
      const m = Math.max(maxAbs(fg.image), maxAbs(bg.image));
      const bound = Float64Array.from(target, (k, i) => {
        const a = k / 4;
        return a * fg.bound[i] + (1 - a) * bg.bound[i] + 8 * U * m;
      });
      assertWithin(got.subarray(b * n, (b + 1) * n), want, bound, `fused sample ${b}`);
      if (fg.plan.noiseSigma === undefined && bg.plan.noiseSigma === undefined) {
        const cpuImage = (cpu.arrays.image.data as Float32Array).subarray(b * n, (b + 1) * n);
        assertEquals([...cpuImage], [...want], `sample ${b}: the CPU path's fused image`);
      }
    }
    for (const t of Object.values(batch.tensors)) t.dispose();
  },
);

const fixture = new URL("../data/hooks/gpu_views_hook.ts", import.meta.url);

async function fixtureBatch(mode: string, augmentOn: "cpu" | "gpu") {
  const loader = await createPatchLoader({
    source: { kind: "synthetic", count: 2, shape: [12, 12, 12] },
    patchSize: PATCH,
    batchSize: 2,
    seed: 1,
    workers: 0,
    prefetch: 0,
    augmentOn,
    hookModule: fixture,
    hookConfig: { mode },
    onSkip: () => {},
  });
  try {
    return await loader.batch(0);
  } finally {
    loader.close();
  }
}

Deno.test("a hook declaring gpuViewAugmentation must put its raw crops where it said, once each", async () => {
  const good = await fixtureBatch("good", "gpu");
  assertEquals(good.views?.map((s) => s.map((v) => [v.array, v.index, v.view])), [
    [["views", 0, 1], ["views", 1, 2]],
    [["views", 0, 1], ["views", 1, 2]],
  ]);
  assertEquals(
    (await fixtureBatch("changed", "cpu")).views,
    undefined,
    "the CPU path augments in the worker",
  );
  for (
    const [mode, message] of [
      ["changed", 'entry 0 of "views" is not the crop augment() left raw'],
      ["twice", 'a second crop promised for entry 0 of "views"'],
      ["missing", 'the hook returned no array "other"'],
    ]
  ) {
    const error = await assertRejects(() => fixtureBatch(mode, "gpu"), SampleHookError);
    assert(
      error.message.includes("plugin gpu-views-fixture") && error.message.includes(message),
      error.message,
    );
  }
});
