import { resolveAugmentation } from "../../../core/data/augment/config.ts";
import { createRng } from "../../../core/data/rng.ts";
import { cutSample } from "../../../core/data/sample.ts";
import { createVolumeCache, resolveSource } from "../../../core/data/sources.ts";
import { extractBox } from "../../../core/data/volume.ts";
import { assert, assertEquals } from "../../assert.ts";

Deno.test("cutSample() without augmentation is the crop chosen by the sampler; masks match the image", async () => {
  const source = await resolveSource({
    kind: "synthetic",
    count: 1,
    shape: [24, 24, 24],
    seed: 3,
    deface: true,
  });
  const volumes = createVolumeCache(source);
  try {
    const reader = await volumes.get(0);
    const load = { readMs: 0, decompressMs: 0, copyMs: 0, preprocessMs: 0 };
    const spec = {
      patch: [10, 12, 8] as [number, number, number],
      augmentation: resolveAugmentation("none"),
      anatomyProbability: 1,
      masks: ["anatomy" as const, "deface" as const],
    };
    const cut = cutSample(reader, createRng(1, 2, 3), spec, load);
    assert(cut.centred && !cut.spatial);
    // find where the patch came from: it must equal some crop of the volume
    const full = reader.readRegion("image", [0, 0, 0], reader.shape) as Float32Array;
    let found = false;
    for (let d = -5; d < 24 && !found; d++) {
      for (let h = -6; h < 24 && !found; h++) {
        for (let w = -4; w < 24 && !found; w++) {
          const crop = extractBox(full, reader.shape, [d, h, w], spec.patch);
          if (
            crop.every((v, i) => v === cut.image[i])
          ) {
            found = true;
            const anatomy = reader.readRegion("anatomy", [d, h, w], spec.patch);
            assertEquals(cut.masks.anatomy, anatomy);
          }
        }
      }
    }
    assert(found, "the patch is a crop of the volume");
    assertEquals(cut.masks.anatomy![(5 * 12 + 6) * 8 + 4], 1); // centred on an anatomy voxel
  } finally {
    volumes.close();
  }
});

Deno.test("cutSample() with rotation reads the larger box and keeps masks binary and aligned", async () => {
  const source = await resolveSource({ kind: "synthetic", count: 1, shape: [32, 32, 32], seed: 4 });
  const volumes = createVolumeCache(source);
  try {
    const reader = await volumes.get(0);
    const load = { readMs: 0, decompressMs: 0, copyMs: 0, preprocessMs: 0 };
    const spec = {
      patch: [16, 16, 16] as [number, number, number],
      augmentation: resolveAugmentation({ rotation: { p: 1 }, scale: { p: 1 } }),
      anatomyProbability: 1,
      masks: ["anatomy" as const],
    };
    const cut = cutSample(reader, createRng(5), spec, load);
    assert(cut.spatial);
    const mask = cut.masks.anatomy!;
    assert(mask.every((v) => v === 0 || v === 1));
    // anatomy voxels carry the head's signal (z-scored background of the crop is negative)
    let inside = 0, bright = 0;
    mask.forEach((m, i) => {
      if (m) {
        inside++;
        if (cut.image[i] > -0.5) bright++;
      }
    });
    assert(inside > 100 && bright > 0.9 * inside, `${bright}/${inside}`);
  } finally {
    volumes.close();
  }
});
