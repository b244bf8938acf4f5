/**
 * The loader's GPU mode with a method's data hook: a hook that declares `gpuAugmentation` gets its
 * standard patch raw (the batch carries the raw crop under the hook's array names, with the CPU path's
 * plans), one that does not keeps the CPU path, and one that declares it but copies the image is refused.
 */
import { createPatchLoader } from "../../../core/data/loader.ts";
import { planAugmentation } from "../../../core/data/augment/pipeline.ts";
import { resolveAugmentation } from "../../../core/data/augment/config.ts";
import { createRng } from "../../../core/data/rng.ts";
import { SampleHookError } from "../../../core/data/errors.ts";
import { assert, assertEquals, assertRejects } from "../../assert.ts";

const hooks = (name: string) => new URL(`./hooks/${name}.ts`, import.meta.url);

function loader(hook: string) {
  return createPatchLoader({
    source: { kind: "synthetic", count: 2, shape: [20, 20, 20], deface: true },
    patchSize: [8, 8, 8],
    batchSize: 2,
    seed: 4,
    workers: 0,
    prefetch: 0,
    augmentation: "nnunet",
    masks: ["deface"],
    augmentOn: "gpu",
    hookModule: hooks(hook),
    onSkip: () => {},
  });
}

Deno.test("GPU mode: a hook declaring gpuAugmentation gets its standard patch as a raw crop", async () => {
  const l = await loader("gpu_patch_hook");
  try {
    for (const step of [0, 1, 2]) {
      const batch = await l.batch(step);
      assertEquals(Object.keys(batch.arrays).sort(), ["blockMask"]);
      assert(batch.raw && batch.raw.length === 2, "one raw crop per sample");
      for (const [b, raw] of batch.raw.entries()) {
        assertEquals(raw.image, "image");
        assertEquals(raw.masks, ["deface"]);
        assertEquals(raw.crop.masks.length, 1);
        const expected = planAugmentation(
          resolveAugmentation("nnunet"),
          createRng(4, step, b).fork("augment"),
        );
        assertEquals(raw.crop.plan, expected, "the CPU path's plan");
        const voxels = raw.crop.shape[0] * raw.crop.shape[1] * raw.crop.shape[2];
        assertEquals(raw.crop.image.length, voxels);
        assert(raw.crop.image.some((v) => v !== 0), "the raw crop holds the volume's data");
      }
    }
  } finally {
    l.close();
  }
});

Deno.test("GPU mode: a hook without the declaration keeps the CPU path", async () => {
  const l = await loader("gpu_patch_undeclared");
  try {
    const batch = await l.batch(0);
    assertEquals(batch.raw, undefined);
    assertEquals(Object.keys(batch.arrays).sort(), ["blockMask", "deface", "image"]);
  } finally {
    l.close();
  }
});

Deno.test("GPU mode: a hook declaring gpuAugmentation that copies the image is refused", async () => {
  const l = await loader("gpu_patch_copying");
  try {
    const error = await assertRejects(() => l.batch(0), SampleHookError);
    assert(error.message.includes("did not return context.patch()'s image"), error.message);
  } finally {
    l.close();
  }
});
