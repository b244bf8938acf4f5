import { join } from "node:path";
import { buildFolderIndex } from "../../../core/data/index_build.ts";
import { writePretrainIndex } from "../../../core/data/dataset_index.ts";
import { createPatchLoader, type PatchBatch, pickImage } from "../../../core/data/loader.ts";
import { preprocessDataset } from "../../../core/data/preprocess_dataset.ts";
import { listImages } from "../../../core/data/dataset_index.ts";
import { writeSyntheticDataset } from "../../../core/data/synthetic_dataset.ts";
import { SampleHookError, SampleTimeoutError, type SkippedFile } from "../../../core/data/errors.ts";
import { userErrorMessage } from "../../../cli/user_errors.ts";
import { assert, assertEquals, assertRejects } from "../../assert.ts";
import { calls } from "./hooks/masking_hook.ts";
import { tempDir, writeBadCorpus } from "./fixtures.ts";

const synthetic = {
  kind: "synthetic" as const,
  count: 6,
  shape: [24, 28, 22] as [number, number, number],
  seed: 5,
  deface: true,
};
const hookModule = new URL("./hooks/masking_hook.ts", import.meta.url);

function same(a: PatchBatch, b: PatchBatch) {
  assertEquals(a.arrays, b.arrays);
  assertEquals(a.sources, b.sources);
}

Deno.test("createPatchLoader() batches stack the hook's typed arrays with their dtypes and shapes", async () => {
  const loader = await createPatchLoader({
    source: synthetic,
    patchSize: [16, 12, 20],
    batchSize: 3,
    seed: 1,
    augmentation: "nnunet",
    masks: ["anatomy", "deface"],
    workers: 0,
    prefetch: 0,
    hookModule,
    hookConfig: { ratio: 0.5 },
  });
  try {
    const batch = await loader.batch(0);
    const { image, target, mask, anatomy } = batch.arrays;
    assertEquals(Object.keys(batch.arrays).sort(), ["anatomy", "deface", "image", "mask", "target"]);
    for (const a of [image, target, mask, anatomy]) assertEquals(a.shape, [3, 1, 16, 12, 20]);
    assertEquals([image.dtype, target.dtype, mask.dtype, anatomy.dtype], ["f32", "f32", "u8", "u8"]);
    assert(image.data instanceof Float32Array && mask.data instanceof Uint8Array);
    assertEquals(image.data.length, 3 * 16 * 12 * 20);
    assert(image.data.every(Number.isFinite));
    assert(anatomy.data.every((v) => v === 0 || v === 1) && anatomy.data.some((v) => v === 1));
    // the hook zeroed the masked voxels of the input and kept the original as target
    for (let i = 0; i < image.data.length; i++) {
      assertEquals(image.data[i], mask.data[i] ? 0 : target.data[i]);
    }
    assert(mask.data.some((v) => v === 1) && mask.data.some((v) => v === 0));
    assertEquals(batch.sources.length, 3);
    assert(batch.sources.every((s) => s.startsWith("synthetic:5/")));
    assert(batch.timings.totalMs > 0);
    assertEquals(loader.images, 6);
  } finally {
    loader.close();
  }
});

Deno.test("createPatchLoader() gives identical batches for any worker count, and on resume", async () => {
  const base = {
    source: synthetic,
    patchSize: [12, 12, 12] as [number, number, number],
    batchSize: 2,
    seed: 9,
    augmentation: "nnunet" as const,
    masks: ["anatomy" as const],
    hookModule,
    hookConfig: { ratio: 0.3 },
  };
  const inline = await createPatchLoader({ ...base, workers: 0, prefetch: 0 });
  const pooled = await createPatchLoader({ ...base, workers: 2, prefetch: 3 });
  const resumed = await createPatchLoader({ ...base, workers: 2, prefetch: 1 });
  try {
    const a: PatchBatch[] = [];
    for (let s = 0; s < 5; s++) a.push(await inline.batch(s));
    for (let s = 0; s < 5; s++) same(await pooled.batch(s), a[s]);
    same(await resumed.batch(3), a[3]);
    same(await resumed.batch(4), a[4]);
    same(await resumed.batch(1), a[1]); // out of order: prefetched steps are dropped
    assert(a[0].arrays.image.data.some((v, i) => v !== a[1].arrays.image.data[i]), "steps differ");
    const other = await createPatchLoader({ ...base, seed: 10, workers: 0, prefetch: 0 });
    try {
      const first = (await other.batch(0)).arrays.image.data;
      assert(first.some((v, i) => v !== a[0].arrays.image.data[i]), "seeds differ");
    } finally {
      other.close();
    }
  } finally {
    inline.close();
    pooled.close();
    resumed.close();
  }
});

Deno.test("createPatchLoader() keeps at most prefetch + 1 batches in flight", async () => {
  const loader = await createPatchLoader({
    source: synthetic,
    patchSize: [8, 8, 8],
    batchSize: 2,
    seed: 3,
    workers: 0,
    prefetch: 2,
    hookModule,
    hookConfig: { ratio: 0 },
  });
  try {
    calls.count = 0;
    await loader.batch(0);
    assertEquals(calls.count, 6); // steps 0, 1, 2
    await loader.batch(1);
    assertEquals(calls.count, 8); // step 3 added
  } finally {
    loader.close();
  }
});

Deno.test("createPatchLoader() skips bad files with their reason and keeps streaming", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    await writeSyntheticDataset(join(dir, "data"), {
      count: 3,
      shape: [16, 16, 16],
      seed: 2,
      layout: "flat",
    });
    const bad = await writeBadCorpus(join(dir, "data"));
    const indexPath = join(dir, "index.json");
    const { index, images } = await buildFolderIndex(join(dir, "data"), { check: "none" });
    await writePretrainIndex(indexPath, index);
    // "none" only checks existence: the dangling link is out, every other bad file is indexed
    assertEquals(images, 3 + bad.length - 1);
    const seen: SkippedFile[] = [];
    const base = {
      source: indexPath,
      patchSize: [8, 8, 8] as [number, number, number],
      batchSize: 4,
      seed: 7,
      augmentation: "nnssl-mae" as const,
    };
    const pooled = await createPatchLoader({ ...base, workers: 2, onSkip: (s) => seen.push(s) });
    const inline = await createPatchLoader({ ...base, workers: 0, prefetch: 0, onSkip: () => {} });
    try {
      for (let s = 0; s < 6; s++) {
        const batch = await pooled.batch(s);
        assert(batch.sources.every((p) => p.includes("case_")), `only good files: ${batch.sources}`);
        same(batch, await inline.batch(s));
      }
      assert(seen.length > 0);
      for (const s of seen) {
        const c = bad.find((b) => b.path === s.path);
        assert(c, `unexpected skip ${s.path}`);
        assert(s.reason.includes(c.expect), `${c.name}: ${s.reason}`);
      }
      assertEquals(pooled.skipped().length, seen.length);
      assertEquals(pooled.stats().skipped, seen.length);
    } finally {
      pooled.close();
      inline.close();
    }
  } finally {
    await cleanup();
  }
});

Deno.test("createPatchLoader() fails a batch clearly when no image is readable", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const bad = await writeBadCorpus(dir);
    const { index } = await buildFolderIndex(dir, { check: "none" });
    await writePretrainIndex(join(dir, "i.json"), index);
    const loader = await createPatchLoader({
      source: join(dir, "i.json"),
      patchSize: [4, 4, 4],
      batchSize: 1,
      seed: 1,
      workers: 1,
      onSkip: () => {},
    });
    try {
      await assertRejects(() => loader.batch(0), Error, "no readable image");
      assert(loader.skipped().length <= bad.length);
    } finally {
      loader.close();
    }
  } finally {
    await cleanup();
  }
});

Deno.test("createPatchLoader() reads a preprocessed cache and centres patches on anatomy", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    await writeSyntheticDataset(join(dir, "raw"), {
      count: 3,
      shape: [20, 20, 20],
      seed: 4,
      varyGeometry: true,
    });
    const { index } = await buildFolderIndex(join(dir, "raw", "OpenMind"));
    await preprocessDataset(listImages(index, dir), join(dir, "cache"), { workers: 0 });
    const loader = await createPatchLoader({
      source: join(dir, "cache"),
      patchSize: [10, 10, 10],
      batchSize: 2,
      seed: 2,
      anatomyProbability: 1,
      masks: ["anatomy", "deface"],
      workers: 1,
    });
    try {
      for (let s = 0; s < 4; s++) {
        const batch = await loader.batch(s);
        assert(batch.sources.every((p) => p.endsWith(".vxc")));
        // centred on an anatomy voxel: the centre voxel of each patch is anatomy
        const anatomy = batch.arrays.anatomy.data;
        for (let b = 0; b < 2; b++) assertEquals(anatomy[b * 1000 + (5 * 10 + 5) * 10 + 5], 1);
        assert(batch.timings.decompressMs >= 0 && batch.timings.readMs > 0);
      }
    } finally {
      loader.close();
    }
  } finally {
    await cleanup();
  }
});

Deno.test("pickImage() is a pure function of (seed, step, index, attempt)", () => {
  assertEquals(pickImage(1, 2, 3, 0, 100), pickImage(1, 2, 3, 0, 100));
  const picks = new Set(Array.from({ length: 50 }, (_, a) => pickImage(1, 2, 3, a, 100)));
  assert(picks.size > 30, "attempts explore different images");
});

const badHooks = new URL("./hooks/bad_hooks.ts", import.meta.url);

function hookLoader(mode: string, extra: Record<string, unknown> = {}) {
  return createPatchLoader({
    source: synthetic,
    patchSize: [8, 8, 8],
    batchSize: 2,
    seed: 1,
    workers: 1,
    prefetch: 0,
    hookModule: badHooks,
    hookConfig: { mode },
    hookName: "bad-hooks",
    onSkip: () => {},
    ...extra,
  });
}

Deno.test("createPatchLoader(): a hook that throws stops the batch naming the plugin (not a skipped image)", async () => {
  const loader = await hookLoader("throw");
  try {
    const error = await assertRejects(() => loader.batch(0), SampleHookError);
    assert(error.message.includes("plugin bad-hooks: sample() failed"), error.message);
    assert(error.message.includes("the hook's own bug") && error.message.includes("step 0"), error.message);
    assertEquals(loader.skipped().length, 0, "no image was blamed");
  } finally {
    loader.close();
  }
});

Deno.test("createPatchLoader(): a hook stuck in a loop is stopped after sampleTimeoutMs, naming the plugin", async () => {
  const loader = await hookLoader("hang", { sampleTimeoutMs: 1500 });
  try {
    const error = await assertRejects(() => loader.batch(0), Error, "plugin bad-hooks");
    assert(error.message.includes("took longer than 1.5 s"), error.message);
    assertEquals(loader.skipped().length, 0);
  } finally {
    loader.close();
  }
});

Deno.test("createPatchLoader(): a sample past a tiny time limit is a user error naming the sample, the limit and how to raise it", async () => {
  const loader = await createPatchLoader({
    source: { ...synthetic, shape: [48, 48, 48] },
    patchSize: [16, 16, 16],
    batchSize: 1,
    seed: 1,
    augmentation: "nnunet",
    workers: 1,
    prefetch: 0,
    sampleTimeoutMs: 1, // no worker makes a 48³ phantom and an augmented patch within 1 ms
    sampleTimeoutSetting: "runConfig.sampleTimeoutSeconds",
  });
  try {
    const error = (await assertRejects(() => loader.batch(0), SampleTimeoutError)) as SampleTimeoutError;
    assertEquals([error.who, error.limitSeconds], ["the patch loader", 0.001]);
    for (
      const part of [
        "the patch loader: making sample 0 of step 0 (synthetic:5/",
        "took longer than 0.001 s, the sample time limit",
        "raise the limit: runConfig.sampleTimeoutSeconds",
      ]
    ) assert(error.message.includes(part), error.message);
    // the CLI prints it as the user's to act on, not as "internal error … bug"
    assertEquals(userErrorMessage(error), error.message);
    assertEquals(loader.skipped().length, 0, "no image was blamed");
  } finally {
    loader.close();
  }
});

Deno.test("createPatchLoader(): untyped arrays and shapes that differ across a batch are refused clearly", async () => {
  const untyped = await hookLoader("untyped");
  try {
    await assertRejects(() => untyped.batch(0), SampleHookError, "bare typed array (its shape is unknown)");
  } finally {
    untyped.close();
  }
  const ragged = await hookLoader("ragged");
  try {
    await assertRejects(() => ragged.batch(0), Error, "every sample of a batch must agree");
  } finally {
    ragged.close();
  }
});

Deno.test("createPatchLoader(): a hook cuts several crops, turns one and reads a second volume, reproducibly", async () => {
  const pooled = await hookLoader("views");
  const inline = await hookLoader("views", { workers: 0 });
  try {
    for (let step = 0; step < 3; step++) {
      const batch = await pooled.batch(step);
      same(batch, await inline.batch(step));
      const { views, same: ids } = batch.arrays;
      assertEquals(views.shape, [2, 3, 1, 6, 6, 6]);
      assertEquals(ids.dtype, "i32");
      const flags = ids.data as Int32Array;
      assertEquals([flags[0], flags[3]], [0, 0], "the other volume differs from the sample's");
      assert(views.data.some((v) => v !== 0), "crops hold data");
    }
  } finally {
    pooled.close();
    inline.close();
  }
});
