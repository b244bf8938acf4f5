/**
 * Binding limits: on a device whose `maxStorageBufferBindingSize` is capped far below the batch and the
 * source regions, the GPU augmentation binds each sample's part of the batch and resamples regions by
 * slabs of planes, and gives exactly the batch an uncapped device gives (same f32 operations). The device
 * choice accepts such batches where one sample and one plane's region fit, and says why not otherwise.
 */
import { resolveAugmentation } from "../../../core/data/augment/config.ts";
import { planAugmentation } from "../../../core/data/augment/pipeline.ts";
import { createRng } from "../../../core/data/rng.ts";
import { cutRawCrop, cutRegion, type SampleSpec } from "../../../core/data/sample.ts";
import { spatialMatrix } from "../../../core/data/augment/spatial.ts";
import type { Shape3 } from "../../../core/data/volume.ts";
import { createGpu, type Gpu } from "../../../core/gpu/mod.ts";
import { tensor } from "../../../core/tensor/mod.ts";
import { chooseAugmentationDevice } from "../../../core/train/augment_device.ts";
import { augmentViewsOnGpu, type GpuView } from "../../../core/train/gpu_augment.ts";
import { assert, assertEquals, assertThrows } from "../../assert.ts";
import { gpuTest, randomArray } from "../../helpers.ts";
import { coordinateError, spatialTolerance } from "../../kernels/augment_ref.ts";
import { assertMaskTies } from "./gpu_parity_ref.ts";
import { arrayReader, augmentOnGpuAndRead, noLoadTime as load } from "../../_helpers/array_volume.ts";

const SHAPE: Shape3 = [26, 19, 18];
// 560 voxels: 2240 bytes a sample, not a multiple of the 256-byte offset alignment (slots start unaligned)
const PATCH: Shape3 = [14, 8, 5];
const volume = Float32Array.from(randomArray(SHAPE[0] * SHAPE[1] * SHAPE[2], 51, -1, 2));
const deface = Uint8Array.from(randomArray(volume.length, 52, 0, 5), Math.floor);
const reader = arrayReader(SHAPE, volume, deface);
const N = PATCH[0] * PATCH[1] * PATCH[2];
const noise = createRng(0, "unused");
const CAP = 12288; // above the statistics buffer (4160 bytes) and one plane's region, below the rest

async function withCappedGpu(fn: (capped: Gpu) => Promise<void>): Promise<void> {
  const capped = await createGpu({ maxStorageBindingBytes: CAP });
  try {
    await fn(capped);
    await capped.sync();
  } finally {
    capped.destroy();
  }
}

gpuTest(
  "a batch and regions above one binding are augmented by sample and by slab, matching the CPU path",
  async () => {
    const spec: SampleSpec = {
      patch: PATCH,
      // every sample rotated and zoomed out: regions of tens of KiB against a 12 KiB cap; then mirroring
      augmentation: resolveAugmentation({
        preset: "nnssl-mae",
        rotation: { p: 1, degrees: [-10, 10] },
        scale: { p: 1, range: [1.3, 1.4] },
      }),
      anatomyProbability: 0,
      masks: ["deface"],
      interpolation: "cubic",
    };
    const crops = Array.from({ length: 6 }, (_, b) => cutRawCrop(reader, createRng(4, 9, b), spec, load()));
    const large = crops.filter((c) => c.image.length * 4 > CAP).length;
    assert(large >= 3, `${large} of 6 regions exceed the cap (resampled by slabs)`);
    const options = {
      patch: PATCH,
      interpolation: "cubic" as const,
      padding: "zero" as const,
      seed: 4,
      step: 9,
    };
    await withCappedGpu(async (capped) => {
      assert(6 * N * 4 > CAP, "the batch exceeds the cap");
      const { image, mask } = await augmentOnGpuAndRead(capped, crops, options);
      for (const [b, crop] of crops.entries()) {
        const cpu = cutRegion(
          reader,
          crop.start,
          PATCH,
          crop.plan,
          ["deface"],
          noise,
          load(),
          undefined,
          "cubic",
        );
        const matrix = spatialMatrix(crop.plan.spatial!);
        // a slab's kernel adds the centre in its sub-region's coordinates, at most |c| plus the patch's
        // half extent from 0: the coordinate error bound with that centre
        const far = crop.centre.map((c, i) =>
          Math.abs(c) + [0, 1, 2].reduce((e, j) => e + Math.abs(matrix[3 * i + j]) * (PATCH[j] - 1) / 2, 0)
        );
        const atol = spatialTolerance("cubic", crop.image, coordinateError(matrix, far, PATCH));
        for (let i = 0; i < N; i++) {
          const err = Math.abs(image[b * N + i] - cpu.image[i]);
          assert(err <= atol, `sample ${b} voxel ${i}: error ${err} > ${atol}`);
        }
        assertMaskTies(
          mask.subarray(b * N, (b + 1) * N),
          cpu.masks.deface!,
          crop,
          `sample ${b}`,
          PATCH,
          far,
        );
      }
    });
  },
);

gpuTest("views in an array above one binding are augmented in place as without the cap", async (gpu) => {
  const shape: Shape3 = [5, 5, 6];
  const n = 150;
  const data = Float32Array.from(randomArray(24 * n, 53, -1, 2));
  const config = resolveAugmentation({
    preset: "nnunet",
    rotation: { p: 0 },
    scale: { p: 0 },
    noise: { p: 1 },
    blur: { p: 1 },
    rot90: { p: 1, axes: [0, 1], turns: [1, 3] },
  });
  const views: GpuView[] = Array.from({ length: 24 }, (_, i) => ({
    base: i * n,
    shape,
    plan: planAugmentation(config, createRng(7, i).fork("augment")),
    sample: i >> 2,
    view: (i & 3) + 1,
  }));
  const read = async (g: Gpu) => {
    const t = tensor(data, [6, 4, 1, ...shape], { gpu: g });
    augmentViewsOnGpu(g, t, views, { seed: 7, step: 1 });
    const values = await t.toFloat64();
    t.dispose();
    return values;
  };
  const expected = await read(gpu);
  assert(expected.some((v, i) => Math.abs(v - data[i]) > 1e-3), "the views changed");
  await withCappedGpu(async (capped) => {
    assert(24 * n * 4 > CAP, "the array exceeds the cap");
    assertEquals([...await read(capped)], [...expected]);
  });
});

Deno.test("chooseAugmentationDevice() keeps large batches on the GPU while one sample and one plane fit", () => {
  const limits = (bytes: number) =>
    ({
      limits: { maxStorageBufferBindingSize: bytes, minStorageBufferOffsetAlignment: 256 },
    }) as unknown as Gpu;
  const query = {
    setting: "auto" as const,
    augmentation: "nnssl-mae" as const,
    patch: [160, 160, 160] as Shape3,
    batch: 8,
    masks: true,
    method: "mae",
    hasSampleHook: false,
    interpolation: "cubic" as const,
  };
  // 128 MiB, WebGPU's default: a batch of eight 160³ patches is 131 MB, one sample 16.4 MB
  assertEquals(chooseAugmentationDevice(query, limits(2 ** 27)).device, "gpu");
  const small = chooseAugmentationDevice(query, limits(16_000_000));
  assertEquals(small.device, "cpu");
  assert(small.reason.includes("one sample's patch needs a binding of 16384256 bytes"), small.reason);
  const plane = chooseAugmentationDevice({ ...query, patch: [2, 100, 100] }, limits(1_000_000));
  assert(plane.reason.includes("1 plane(s) of the patch read a source region"), plane.reason);
  assertThrows(
    () => chooseAugmentationDevice({ ...query, setting: "gpu" }, limits(16_000_000)),
    Error,
    'augmentationDevice "gpu": one sample',
  );
});
