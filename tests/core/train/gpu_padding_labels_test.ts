/**
 * Border padding and label maps on both augmentation paths: "border" repeats the volume's edge voxel
 * (with and without a spatial transform) on the CPU path, checked against hand-clamped indices and the
 * whole-volume float64 warp; the GPU path gives the same within the f32 bound; and a multi-class label map
 * carried as a mask follows rotation, scaling, mirroring and quarter turns by nearest neighbour on the GPU
 * as on the CPU.
 */
import { resolveAugmentation } from "../../../core/data/augment/config.ts";
import { spatialMatrix, warpPatch } from "../../../core/data/augment/spatial.ts";
import { createRng } from "../../../core/data/rng.ts";
import { cutRawCrop, cutRegion, type SampleSpec } from "../../../core/data/sample.ts";
import type { Shape3 } from "../../../core/data/volume.ts";
import type { Gpu } from "../../../core/gpu/mod.ts";
import { assert, assertEquals } from "../../assert.ts";
import { gpuTest, randomArray } from "../../helpers.ts";
import { coordinateError, spatialTolerance, U } from "../../kernels/augment_ref.ts";
import { openBatchSources, resolveRunConfig, RunConfigSchema } from "../../../mod.ts";
import { uploadBatch } from "../../../core/train/gpu_batch.ts";
import { affineTarget, voxelMlp } from "../../fixtures/tiny_plugins.ts";
import { assertMaskTies, stagedWithBound } from "./gpu_parity_ref.ts";
import { arrayReader, augmentOnGpuAndRead, noLoadTime as load } from "../../_helpers/array_volume.ts";

const SHAPE: Shape3 = [9, 7, 10]; // H below the patch: boxes stick out of the volume
const PATCH: Shape3 = [8, 8, 6];
const N = PATCH[0] * PATCH[1] * PATCH[2];
const volume = Float32Array.from(randomArray(SHAPE[0] * SHAPE[1] * SHAPE[2], 31, -2, 2));
// a label map with 7 classes rides in the anatomy slot (the loader's masks are u8 maps of any values)
const labels = Uint8Array.from(randomArray(volume.length, 32, 0, 7), Math.floor);

const reader = arrayReader(SHAPE, volume, labels);
const clamp = (i: number, n: number) => Math.min(n - 1, Math.max(0, i));
const noise = createRng(0, "unused");

Deno.test("border padding without a spatial transform repeats the edge voxels (CPU path)", () => {
  const plan = { mirror: [false, false, false] as [boolean, boolean, boolean] };
  for (const start of [[-3, 5, -2], [4, -5, 7], [1, 0, 4]] as Shape3[]) {
    const cut = cutRegion(
      reader,
      start,
      PATCH,
      plan,
      ["anatomy"],
      noise,
      load(),
      undefined,
      "cubic",
      "border",
    );
    const zero = cutRegion(reader, start, PATCH, plan, ["anatomy"], noise, load());
    let outside = 0;
    for (let d = 0, i = 0; d < PATCH[0]; d++) {
      for (let h = 0; h < PATCH[1]; h++) {
        for (let w = 0; w < PATCH[2]; w++, i++) {
          const p = [start[0] + d, start[1] + h, start[2] + w];
          const j = (clamp(p[0], SHAPE[0]) * SHAPE[1] + clamp(p[1], SHAPE[1])) * SHAPE[2] +
            clamp(p[2], SHAPE[2]);
          assertEquals(cut.image[i], volume[j], `start ${start}, voxel ${[d, h, w]}`);
          assertEquals(cut.masks.anatomy![i], labels[j], `start ${start}, label ${[d, h, w]}`);
          if (p.some((c, a) => c < 0 || c >= SHAPE[a])) {
            outside++;
            assertEquals(zero.image[i], 0, "zero padding stays the default");
          }
        }
      }
    }
    assert(outside > 0, `start ${start}: the box reaches outside the volume`);
  }
});

Deno.test("border padding with rotation and scaling equals the whole-volume float64 warp (CPU path)", () => {
  const v64 = Float64Array.from(volume);
  const spatial = { angles: [0.4, -0.3, 0.25] as [number, number, number], scale: 1.3 };
  const plan = { spatial, mirror: [false, false, false] as [boolean, boolean, boolean] };
  const matrix = spatialMatrix(spatial);
  for (const order of ["linear", "cubic"] as const) {
    for (const start of [[-3, 5, -2], [2, 1, 3]] as Shape3[]) {
      const cut = cutRegion(
        reader,
        start,
        PATCH,
        plan,
        ["anatomy"],
        noise,
        load(),
        undefined,
        order,
        "border",
      );
      const centre = start.map((s, i) => s + (PATCH[i] - 1) / 2);
      const expected = warpPatch(v64, SHAPE, centre, matrix, PATCH, order, "border");
      const label = warpPatch(labels, SHAPE, centre, matrix, PATCH, "nearest", "border");
      for (let i = 0; i < N; i++) {
        // the same taps and weights in float64; the patch is rounded to f32 once
        assert(
          Math.abs(cut.image[i] - expected[i]) <= U * Math.abs(expected[i]),
          `${order} ${start} voxel ${i}: ${cut.image[i]} vs ${expected[i]}`,
        );
      }
      assertEquals([...cut.masks.anatomy!], [...label], `${order} ${start}: labels`);
      const zero = cutRegion(reader, start, PATCH, plan, [], noise, load(), undefined, order);
      assert(
        zero.image.some((v, i) => Math.abs(v - cut.image[i]) > 1e-3),
        "border differs from zero padding",
      );
    }
  }
});

/** Raw crops of `spec` on the GPU against cutRegion on the CPU: images within the f32 bound, labels up to ties. */
async function checkGpu(gpu: Gpu, spec: SampleSpec, batch: number) {
  const seed = 8, step = 2;
  const crops = Array.from(
    { length: batch },
    (_, b) => cutRawCrop(reader, createRng(seed, step, b), spec, load()),
  );
  const { image, mask } = await augmentOnGpuAndRead(gpu, crops, {
    patch: PATCH,
    interpolation: spec.interpolation ?? "linear",
    padding: spec.padding ?? "zero",
    seed,
    step,
  });
  for (const [b, crop] of crops.entries()) {
    const cpu = cutRegion(
      reader,
      crop.start,
      PATCH,
      crop.plan,
      spec.masks,
      noise,
      load(),
      undefined,
      spec.interpolation,
      spec.padding,
    );
    const staged = stagedWithBound(
      crop,
      spec.interpolation ?? "linear",
      new Float64Array(N),
      PATCH,
      spec.padding,
    );
    assertEquals([...staged.image], [...cpu.image], "the staged CPU pipeline is cutRegion's");
    const got = image.subarray(b * N, (b + 1) * N);
    for (let i = 0; i < N; i++) {
      const err = Math.abs(got[i] - cpu.image[i]);
      assert(err <= staged.bound[i], `sample ${b} voxel ${i}: error ${err} > ${staged.bound[i]}`);
    }
    assertMaskTies(mask.subarray(b * N, (b + 1) * N), cpu.masks.anatomy!, crop, `sample ${b}`, PATCH);
  }
  return crops;
}

gpuTest("GPU border padding matches the CPU path, with and without a spatial transform", async (gpu) => {
  for (const rotate of [1, 0]) {
    const crops = await checkGpu(gpu, {
      patch: PATCH,
      augmentation: resolveAugmentation({
        preset: "nnssl-mae",
        rotation: { p: rotate },
        scale: { p: rotate },
      }),
      anatomyProbability: 0,
      masks: ["anatomy"],
      interpolation: "cubic",
      padding: "border",
    }, 4);
    // H is smaller than the patch: every box reaches outside the volume
    assert(crops.some((c) => c.shape.some((s, i) => s !== PATCH[i])), "some crops are clipped to the volume");
  }
});

gpuTest(
  "a label map follows rotation, scaling, mirroring and quarter turns on the GPU as on the CPU",
  async (gpu) => {
    const crops = await checkGpu(gpu, {
      patch: PATCH,
      augmentation: resolveAugmentation({
        preset: "nnssl-mae",
        rotation: { p: 1 },
        scale: { p: 1 },
        rot90: { p: 1, axes: [0, 1], turns: [1, 3] },
      }),
      anatomyProbability: 0,
      masks: ["anatomy"],
      padding: "zero",
    }, 4);
    assert(crops.every((c) => c.plan.spatial && c.plan.rot90), "every sample rotates, scales and turns");
    assert(crops.some((c) => c.plan.rot90!.turns % 2 === 1), "an odd turn among them");
  },
);

function runConfig(device: "gpu" | "cpu", padding: "zero" | "border") {
  return resolveRunConfig(
    RunConfigSchema.parse({
      arch: "voxel-mlp-tiny",
      method: "affine-target",
      synthetic: { volumes: 2, size: [12, 12, 12] },
      augmentation: "nnssl-mae",
      augmentationDevice: device,
      padding,
      patch: [8, 8, 8],
      batch: 2,
      validationBatches: 0,
      workers: 0,
      seed: 3,
      out: "unused",
    }),
    { plugin: voxelMlp, size: "tiny" },
    affineTarget,
  );
}

gpuTest(
  "the run config's padding reaches both paths: border batches agree, and differ from zero padding",
  async (gpu) => {
    const open = (device: "gpu" | "cpu", padding: "zero" | "border") =>
      openBatchSources(runConfig(device, padding), affineTarget, { gpu });
    const [onGpu, onCpu, zero] = await Promise.all([
      open("gpu", "border"),
      open("cpu", "border"),
      open("cpu", "zero"),
    ]);
    try {
      let differs = 0;
      for (let step = 0; step < 4; step++) {
        const raw = await onGpu.train.batch(step);
        const cpu = (await onCpu.train.batch(step)).arrays.image.data;
        const zeros = (await zero.train.batch(step)).arrays.image.data;
        assertEquals(raw.raw?.augment.padding, "border");
        const uploaded = uploadBatch(raw, gpu, "affine-target");
        const image = await uploaded.get("image").toFloat64();
        for (const t of Object.values(uploaded.tensors)) t.dispose();
        for (const [b, crop] of raw.raw!.crops.entries()) {
          const matrix = spatialMatrix(crop.plan.spatial ?? { angles: [0, 0, 0], scale: 1 });
          const atol = crop.plan.spatial
            ? spatialTolerance("linear", crop.image, coordinateError(matrix, crop.centre, [8, 8, 8]))
            : 0;
          for (let i = b * 512; i < (b + 1) * 512; i++) {
            assert(Math.abs(image[i] - cpu[i]) <= atol, `step ${step} voxel ${i}: ${image[i]} vs ${cpu[i]}`);
            if (Math.abs(cpu[i] - zeros[i]) > 1e-6) differs++;
          }
        }
      }
      assert(differs > 0, "some patch reaches outside the volume, where border and zero padding differ");
    } finally {
      for (const s of [onGpu, onCpu, zero]) await s.train.close();
    }
  },
);
