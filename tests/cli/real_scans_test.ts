/**
 * The "done when": a folder of real scans indexes, preprocesses and streams augmented patches
 * through the workers. Skips (with a message) when ../shared/data is absent.
 */
import { join } from "node:path";
import { readCacheManifest } from "../../core/data/cache_dataset.ts";
import { createPatchLoader } from "../../core/data/loader.ts";
import { orientationOf } from "../../core/data/orientation.ts";
import { assert, assertEquals } from "../assert.ts";
import { assertClose } from "../helpers.ts";
import { haveFolder, sharedData, tempDir } from "../core/data/fixtures.ts";
import { voxssl } from "./cli_helpers.ts";

const nifti = sharedData("nifti");
const hippo = sharedData("hippocampus");

Deno.test({
  name:
    "real scans: voxssl index + preprocess, then the loader streams augmented patches from the cache and raw",
  ignore: !haveFolder(nifti, "real-scan end-to-end"),
  fn: async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const index = join(dir, "index.json");
      const indexed = await voxssl("index", nifti, "--out", index, "--frames", "first");
      assertEquals(indexed.code, 0, indexed.stderr);
      assert(indexed.stdout.includes("8 images"), indexed.stdout);
      const cache = join(dir, "cache");
      const pre = await voxssl("preprocess", index, "--out", cache, "--spacing", "2", "--workers", "2");
      assertEquals(pre.code, 0, pre.stderr);
      assert(pre.stdout.includes("8 preprocessed"), pre.stdout);
      const manifest = await readCacheManifest(cache);
      for (const entry of manifest.images) {
        assertClose(entry.spacing, [2, 2, 2], { atol: 0.15, label: entry.id });
        const properties = JSON.parse(await Deno.readTextFile(join(cache, entry.key + ".json")));
        assertEquals(orientationOf(properties.final.affine), "RAS");
      }
      // MNI152 is at 2 mm already: only the crop changes its shape
      const mni = manifest.images.find((e) => e.id.includes("MNI152"))!;
      const crop = JSON.parse(await Deno.readTextFile(join(cache, mni.key + ".json"))).crop;
      assertEquals(mni.shape, [0, 1, 2].map((a) => crop.end[a] - crop.start[a]));
      for (const source of [cache, index]) {
        const loader = await createPatchLoader({
          source,
          patchSize: [48, 48, 48],
          batchSize: 2,
          seed: 1,
          augmentation: "nnunet",
          workers: 2,
          masks: ["anatomy"],
        });
        try {
          for (let step = 0; step < 3; step++) {
            const batch = await loader.batch(step);
            const image = batch.arrays.image;
            assertEquals(image.shape, [2, 1, 48, 48, 48]);
            assert(image.data.every(Number.isFinite));
            let nonzero = 0;
            for (const v of image.data) if (v !== 0) nonzero++;
            assert(nonzero > image.data.length * 0.2, `step ${step}: patches hold data`);
          }
          assertEquals(loader.skipped(), []);
        } finally {
          loader.close();
        }
      }
    } finally {
      await cleanup();
    }
  },
});

Deno.test({
  name: "real scans: the hippocampus set indexes and preprocesses completely and feeds anatomy-free patches",
  ignore: !haveFolder(hippo, "hippocampus end-to-end"),
  fn: async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const index = join(dir, "hippo.json");
      assertEquals((await voxssl("index", hippo, "--out", index, "--modality", "MRI", "--strict")).code, 0);
      const cache = join(dir, "cache");
      const pre = await voxssl("preprocess", index, "--out", cache, "--strict");
      assertEquals(pre.code, 0, pre.stdout + pre.stderr);
      assert(pre.stdout.includes("129 preprocessed"), pre.stdout);
      const loader = await createPatchLoader({
        source: cache,
        patchSize: [32, 32, 32],
        batchSize: 4,
        seed: 3,
        augmentation: "nnssl-mae",
        workers: 2,
        split: "train",
      });
      try {
        assertEquals(loader.images, 129 - 5); // nnssl's split keeps 5 subjects for validation
        const batch = await loader.batch(0);
        assertEquals(batch.arrays.image.shape, [4, 1, 32, 32, 32]);
        assert(batch.sources.every((s) => s.includes("hippocampus_")));
      } finally {
        loader.close();
      }
    } finally {
      await cleanup();
    }
  },
});
