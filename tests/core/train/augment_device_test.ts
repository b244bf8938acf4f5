/**
 * GPU augmentation wired into a run: the device choice, the loader shipping raw crops, the upload
 * augmenting them into the same batch as the CPU path (nnssl-mae has no noise, so the two paths draw
 * the same and differ only by the spatial kernel's f32 error), and a short training run on that path.
 */
import {
  openBatchSources,
  readMetrics,
  resolveRunConfig,
  RunConfigSchema,
  runPretraining,
  VERSION,
} from "../../../mod.ts";
import { chooseAugmentationDevice } from "../../../core/train/augment_device.ts";
import { uploadBatch } from "../../../core/train/gpu_batch.ts";
import { spatialMatrix } from "../../../core/data/augment/spatial.ts";
import { assert, assertEquals, assertThrows } from "../../assert.ts";
import { affineTarget, voxelMlp } from "../../fixtures/tiny_plugins.ts";
import mae from "../../../plugins/ssl/mae/mod.ts";
import resenc from "../../../plugins/arch/resenc/mod.ts";
import { gpuTest } from "../../helpers.ts";
import { coordinateError, spatialTolerance } from "../../kernels/augment_ref.ts";

const query = {
  setting: "auto" as const,
  augmentation: "nnssl-mae" as const,
  patch: [8, 8, 8] as [number, number, number],
  batch: 2,
  masks: true,
  method: "m",
  hasSampleHook: false,
  interpolation: "linear" as const,
};

gpuTest("chooseAugmentationDevice() takes the GPU where it fits and says why not elsewhere", (gpu) => {
  assertEquals(chooseAugmentationDevice(query, gpu).device, "gpu");
  assertEquals(chooseAugmentationDevice(query, undefined).device, "cpu");
  assertEquals(chooseAugmentationDevice({ ...query, setting: "cpu" }, gpu).device, "cpu");
  assertEquals(chooseAugmentationDevice({ ...query, augmentation: "none" }, gpu).device, "cpu");
  const hook = chooseAugmentationDevice({ ...query, hasSampleHook: true }, gpu);
  assertEquals(hook.device, "cpu");
  assert(hook.reason.includes("sample() hook"), hook.reason);
  assertEquals(chooseAugmentationDevice({ ...query, patch: [3, 3, 3] }, gpu).device, "cpu");
  assertThrows(
    () => chooseAugmentationDevice({ ...query, setting: "gpu", hasSampleHook: true }, gpu),
    Error,
    'augmentationDevice "gpu": method m makes its own samples',
  );
  const huge = { ...query, patch: [4096, 4096, 4096] as [number, number, number] };
  assert(chooseAugmentationDevice(huge, gpu).reason.includes("maxStorageBufferBindingSize"));
});

function config(device: "gpu" | "cpu", out = "unused") {
  return resolveRunConfig(
    RunConfigSchema.parse({
      arch: "voxel-mlp-tiny",
      method: "affine-target",
      synthetic: { volumes: 2, size: [20, 20, 20] },
      augmentation: "nnssl-mae",
      augmentationDevice: device,
      patch: [8, 8, 8],
      batch: 2,
      epochs: 1,
      stepsPerEpoch: 3,
      logEvery: 1,
      validationBatches: 1,
      workers: 0,
      seed: 3,
      out,
    }),
    { plugin: voxelMlp, size: "tiny" },
    affineTarget,
  );
}

gpuTest(
  "with augmentationDevice gpu the loader ships raw crops and the upload matches the CPU batch",
  async (gpu) => {
    const lines: string[] = [];
    const onGpu = await openBatchSources(config("gpu"), affineTarget, { gpu, log: (l) => lines.push(l) });
    const onCpu = await openBatchSources(config("cpu"), affineTarget, { gpu });
    try {
      assert(lines.some((l) => l.startsWith("augmentation on the GPU")), lines.join("\n"));
      let spatial = 0;
      for (let step = 0; step < 6; step++) {
        const raw = await onGpu.train.batch(step);
        const cpu = await onCpu.train.batch(step);
        assert(raw.raw && raw.raw.crops.length === 2 && !raw.arrays.image, "raw crops, no stacked image");
        const image = await uploadBatch(raw, gpu, "affine-target").get("image").toFloat64();
        const expected = cpu.arrays.image.data;
        for (const [b, crop] of raw.raw.crops.entries()) {
          if (crop.plan.spatial) spatial++;
          const matrix = spatialMatrix(crop.plan.spatial ?? { angles: [0, 0, 0], scale: 1 });
          const atol = spatialTolerance(
            "linear",
            crop.image,
            coordinateError(matrix, crop.centre, [8, 8, 8]),
          );
          for (let i = b * 512; i < (b + 1) * 512; i++) {
            assert(
              Math.abs(image[i] - expected[i]) <= atol,
              `step ${step} voxel ${i}: ${image[i]} vs ${expected[i]}`,
            );
          }
        }
        // validation has no augmentation: stacked arrays from the CPU path
        assert(!(await onGpu.validation!.batch(0)).raw);
      }
      assert(spatial > 0, "some sample was rotated or scaled");
    } finally {
      for (const s of [onGpu, onCpu]) {
        await s.train.close();
        await s.validation?.close();
      }
    }
  },
);

gpuTest("a run trains with GPU augmentation", async (gpu) => {
  const out = await Deno.makeTempDir();
  const resolved = config("gpu", out);
  const sources = await openBatchSources(resolved, affineTarget, { gpu });
  try {
    await runPretraining({
      config: resolved,
      arch: voxelMlp,
      method: affineTarget,
      train: sources.train,
      validation: sources.validation,
      coreVersion: VERSION,
      gpu,
      log: () => {},
    });
  } finally {
    await sources.train.close();
    await sources.validation?.close();
  }
  const records = await readMetrics(`${out}/metrics.jsonl`);
  const train = records.filter((r) => r.kind === "train");
  assertEquals(train.length, 3);
  assert(train.every((r) => Number.isFinite(r.loss)), JSON.stringify(train));
  await Deno.remove(out, { recursive: true });
});

gpuTest(
  "MAE (a data hook declaring gpuAugmentation) gets its patch augmented on the GPU, same blocks",
  async (gpu) => {
    const resolved = (device: "gpu" | "cpu") =>
      resolveRunConfig(
        RunConfigSchema.parse({
          arch: "resenc-tiny",
          method: "mae",
          synthetic: { volumes: 2, size: [24, 24, 24] },
          augmentation: "nnssl-mae",
          augmentationDevice: device,
          patch: [16, 16, 16],
          batch: 2,
          validationBatches: 0,
          workers: 0,
          seed: 5,
          out: "unused",
        }),
        { plugin: resenc, size: "tiny" },
        mae,
      );
    const methodModule = new URL("../../../plugins/ssl/mae/mod.ts", import.meta.url).href;
    const onGpu = await openBatchSources(resolved("gpu"), mae, { gpu, methodModule });
    const onCpu = await openBatchSources(resolved("cpu"), mae, { gpu, methodModule });
    try {
      for (let step = 0; step < 3; step++) {
        const raw = await onGpu.train.batch(step);
        const cpu = await onCpu.train.batch(step);
        assert(raw.raw, "raw crops");
        assertEquals([...raw.arrays.blockMask.data], [...cpu.arrays.blockMask.data], "the hook's own draws");
        const image = await uploadBatch(raw, gpu, "mae").get("image").toFloat64();
        const n = 16 ** 3;
        for (const [b, crop] of raw.raw.crops.entries()) {
          const matrix = spatialMatrix(crop.plan.spatial ?? { angles: [0, 0, 0], scale: 1 });
          const atol = spatialTolerance(
            "linear",
            crop.image,
            coordinateError(matrix, crop.centre, [16, 16, 16]),
          );
          for (let i = b * n; i < (b + 1) * n; i++) {
            const e = cpu.arrays.image.data[i];
            assert(Math.abs(image[i] - e) <= atol, `step ${step} voxel ${i}: ${image[i]} vs ${e}`);
          }
        }
      }
    } finally {
      await onGpu.train.close();
      await onCpu.train.close();
    }
  },
);
