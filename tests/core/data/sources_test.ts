import { join } from "node:path";
import { createVolumeCache, itemLabel, resolveSource } from "../../../core/data/sources.ts";
import { DataFileError } from "../../../core/data/errors.ts";
import { buildFolderIndex } from "../../../core/data/index_build.ts";
import { writePretrainIndex } from "../../../core/data/dataset_index.ts";
import { writeSyntheticDataset } from "../../../core/data/synthetic_dataset.ts";
import { preprocessDataset } from "../../../core/data/preprocess_dataset.ts";
import { listImages } from "../../../core/data/dataset_index.ts";
import { assert, assertEquals, assertRejects } from "../../assert.ts";
import { tempDir } from "./fixtures.ts";

Deno.test("resolveSource() takes a folder as a cache, a file as an index, and applies split and filters", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    await writeSyntheticDataset(join(dir, "raw"), {
      count: 8,
      shape: [12, 12, 12],
      seed: 1,
      modalities: ["T1w", "T2w"],
      subjectsPerDataset: 8,
    });
    const { index } = await buildFolderIndex(join(dir, "raw", "OpenMind"));
    await writePretrainIndex(join(dir, "index.json"), index);
    await preprocessDataset(listImages(index, dir), join(dir, "cache"), { workers: 0, spacing: "none" });
    const fromIndex = await resolveSource(join(dir, "index.json"));
    assertEquals([fromIndex.kind, fromIndex.items.length], ["index", 8]);
    const fromCache = await resolveSource(join(dir, "cache"), { filter: { modalities: ["T2w"] } });
    assertEquals([fromCache.kind, fromCache.items.length], ["cache", 4]);
    assert(itemLabel(fromCache, 0).endsWith(".vxc"));
    const val = await resolveSource(join(dir, "cache"), { split: "val" });
    assertEquals(val.items.length, 5); // 8 subjects, one image each: min(1000, max(⌊8/100⌋, 5)) = 5 in validation
    const synthetic = await resolveSource({ kind: "synthetic" });
    assertEquals(synthetic.kind === "synthetic" && [synthetic.spec.count, synthetic.spec.shape], [16, [
      64,
      64,
      64,
    ]]);
    await assertRejects(() => resolveSource(join(dir, "nope")), DataFileError, "file not found");
    await assertRejects(
      () => resolveSource(join(dir, "cache"), { filter: { modalities: ["FLAIR"] } }),
      DataFileError,
      "has no images",
    );
  } finally {
    await cleanup();
  }
});

Deno.test("createVolumeCache() keeps volumes within its memory budget and reads regions with zero padding", async () => {
  const source = await resolveSource({ kind: "synthetic", count: 3, shape: [20, 20, 20], seed: 2 });
  const cache = createVolumeCache(source, { maxBytes: 0 });
  try {
    const a = await cache.get(0);
    const b = await cache.get(0);
    assert(a !== b, "nothing is kept with a zero budget");
    const region = a.readRegion("image", [-2, -2, -2], [4, 4, 4]) as Float32Array;
    assertEquals(region[0], 0); // outside the volume
    const anatomy = a.readRegion("anatomy", [0, 0, 0], a.shape) as Uint8Array;
    assert(anatomy.some((v) => v === 1));
    assertEquals(a.has("anonymization"), false);
    assertEquals(
      (a.readRegion("anonymization", [0, 0, 0], [2, 2, 2]) as Uint8Array).every((v) => v === 0),
      true,
    );
  } finally {
    cache.close();
  }
  const keeping = createVolumeCache(source);
  try {
    assert((await keeping.get(1)) === (await keeping.get(1)), "kept within the default budget");
  } finally {
    keeping.close();
  }
});
