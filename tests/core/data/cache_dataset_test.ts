import { join } from "node:path";
import { readCacheManifest, writeCacheManifest } from "../../../core/data/cache_dataset.ts";
import { DataFileError, type SkippedFile } from "../../../core/data/errors.ts";
import { buildFolderIndex } from "../../../core/data/index_build.ts";
import { listImages } from "../../../core/data/dataset_index.ts";
import { createPatchLoader } from "../../../core/data/loader.ts";
import { preprocessDataset } from "../../../core/data/preprocess_dataset.ts";
import { writeSyntheticDataset } from "../../../core/data/synthetic_dataset.ts";
import { PRODUCER } from "../../../core/data/version.ts";
import { assert, assertEquals, assertRejects } from "../../assert.ts";
import { tempDir } from "./fixtures.ts";
import denoJson from "../../../deno.json" with { type: "json" };

Deno.test("readCacheManifest() refuses other formats and folders that are not caches", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    await assertRejects(() => readCacheManifest(dir), DataFileError, "is not a voxssl cache");
    await writeCacheManifest(dir, {
      producer: { ...PRODUCER, cacheFormat: 99 },
      parameters: null,
      created: "",
      images: [],
      skipped: [],
    });
    await assertRejects(() => readCacheManifest(dir), DataFileError, "unsupported cache manifest (format 99");
    await assertRejects(() => readCacheManifest(join(dir, "absent")), DataFileError, "file not found");
  } finally {
    await cleanup();
  }
});

Deno.test("PRODUCER records voxssl's version from deno.json", () => {
  assertEquals(PRODUCER.name, "voxssl");
  assertEquals(PRODUCER.version, denoJson.version);
});

function assertIncludes(text: string, part: string): void {
  assert(text.includes(part), `expected "${part}" in: ${text}`);
}

/** Minimal properties of a complete cache entry (what the rebuild reads of them). */
function properties(id: string, producer: { name: string; version: string; cacheFormat: number } = PRODUCER) {
  return {
    producer,
    parameters: null,
    image: {
      id,
      dataset: "ds",
      subject: `sub-${id}`,
      session: "ses-1",
      name: `${id}.nii.gz`,
      modality: "T1w",
    },
    final: { shape: [4, 5, 6], spacing: [1, 1, 1], affine: [] },
    arrays: ["image"],
  };
}

async function writeEntry(dir: string, key: string, text: string): Promise<string> {
  const path = join(dir, `${key}.json`);
  await Deno.mkdir(join(path, ".."), { recursive: true });
  await Deno.writeTextFile(path, text);
  return path;
}

Deno.test("readCacheManifest() without cache.json reports and lists every unusable properties file with its reason", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    await writeEntry(dir, "ds/sub-a/ses-1/a", JSON.stringify(properties("a")));
    await writeEntry(dir, "ds/sub-c/ses-1/c", JSON.stringify(properties("c")));
    const truncated = await writeEntry(dir, "ds/sub-b/ses-1/b", JSON.stringify(properties("b")).slice(0, 60));
    const foreign = await writeEntry(dir, "ds/notes", JSON.stringify({ hello: "world" }));
    const older = await writeEntry(
      dir,
      "ds/sub-d/ses-1/d",
      JSON.stringify(properties("d", { name: "voxssl", version: "0.0.1", cacheFormat: 0 })),
    );
    const reported: SkippedFile[] = [];
    const manifest = await readCacheManifest(dir, { onSkip: (s) => reported.push(s) });
    assertEquals(manifest.images.map((e) => e.key), ["ds/sub-a/ses-1/a", "ds/sub-c/ses-1/c"]);
    assertEquals(manifest.skipped.map((s) => s.path), [truncated, foreign, older].sort());
    assertEquals(reported, manifest.skipped);
    const reason = (path: string) => manifest.skipped.find((s) => s.path === path)!.reason;
    assertIncludes(reason(truncated), "not valid JSON");
    assertIncludes(reason(truncated), "expected the properties of a cache entry");
    assertIncludes(reason(foreign), "lacks producer.cacheFormat, image.id");
    assertIncludes(
      reason(older),
      "another cache format (voxssl 0.0.1, format 0; this voxssl reads format 1)",
    );

    // without a callback each one is a warning naming the file
    const warnings: string[] = [];
    const warn = console.warn;
    console.warn = (...args: unknown[]) => warnings.push(args.join(" "));
    try {
      await readCacheManifest(dir);
    } finally {
      console.warn = warn;
    }
    assertEquals(warnings.length, 3);
    assert(warnings.every((w, i) => w.includes(manifest.skipped[i].path)), warnings.join("\n"));
  } finally {
    await cleanup();
  }
});

Deno.test("readCacheManifest() refuses a folder whose properties files are all unusable, naming one", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const bad = await writeEntry(dir, "ds/sub-a/ses-1/a", "{");
    await writeEntry(dir, "ds/sub-b/ses-1/b", "[]");
    const reported: SkippedFile[] = [];
    await assertRejects(
      () => readCacheManifest(dir, { onSkip: (s) => reported.push(s) }),
      DataFileError,
      `none of its 2 properties files is usable; first: ${bad}: not valid JSON`,
    );
    assertEquals(reported.length, 2);
  } finally {
    await cleanup();
  }
});

Deno.test("createPatchLoader() on a cache without cache.json reports and counts a corrupted entry, and loads the rest", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    await writeSyntheticDataset(join(dir, "raw"), { count: 2, shape: [16, 16, 16], seed: 6 });
    const { index } = await buildFolderIndex(join(dir, "raw", "OpenMind"));
    const cache = join(dir, "cache");
    const summary = await preprocessDataset(listImages(index, dir), cache, { workers: 0 });
    await Deno.remove(join(cache, "cache.json"));
    const [kept, broken] = summary.manifest.images;
    const brokenPath = join(cache, `${broken.key}.json`);
    const text = await Deno.readTextFile(brokenPath);
    await Deno.writeTextFile(brokenPath, text.slice(0, text.length >> 1)); // a half-written file
    const reported: SkippedFile[] = [];
    const loader = await createPatchLoader({
      source: cache,
      patchSize: [8, 8, 8],
      batchSize: 2,
      seed: 1,
      workers: 0,
      prefetch: 0,
      onSkip: (s) => reported.push(s),
    });
    try {
      assertEquals(loader.images, 1);
      assertEquals(reported.map((s) => s.path), [brokenPath]);
      assertIncludes(reported[0].reason, "not valid JSON");
      assertEquals(loader.skipped(), reported);
      assertEquals(loader.stats().skipped, 1);
      const batch = await loader.batch(0);
      assertEquals(batch.ids, [kept.id, kept.id]);
    } finally {
      loader.close();
    }
  } finally {
    await cleanup();
  }
});
