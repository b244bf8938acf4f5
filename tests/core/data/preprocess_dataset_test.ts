import { join } from "node:path";
import { readCacheManifest } from "../../../core/data/cache_dataset.ts";
import type { ImageRecord } from "../../../core/data/dataset_index.ts";
import { listImages } from "../../../core/data/dataset_index.ts";
import { buildFolderIndex } from "../../../core/data/index_build.ts";
import { cacheKey } from "../../../core/data/preprocess.ts";
import { preprocessDataset, resolveTargetSpacing } from "../../../core/data/preprocess_dataset.ts";
import { writeSyntheticDataset } from "../../../core/data/synthetic_dataset.ts";
import { assert, assertEquals } from "../../assert.ts";
import { assertClose } from "../../helpers.ts";
import { tempDir, writeBadCorpus } from "./fixtures.ts";

async function syntheticRecords(
  dir: string,
  count: number,
  seed = 3,
): Promise<ImageRecord[] & { spacings: number[][] }> {
  const ds = await writeSyntheticDataset(dir, { count, shape: [14, 16, 12], seed, varyGeometry: true });
  const { index } = await buildFolderIndex(join(dir, "OpenMind"));
  return Object.assign(listImages(index, dir), { spacings: ds.files.map((f) => f.spacing) });
}

function badRecords(cases: { path: string; name: string }[]): ImageRecord[] {
  return cases.map((c) => ({
    id: `bad__${c.name}__ses__x`,
    dataset: "bad",
    subject: c.name,
    session: "ses",
    name: c.name,
    modality: "T1w",
    path: c.path,
  }));
}

Deno.test("preprocessDataset() processes good files in workers, skips bad ones with reasons, and resumes", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const good = await syntheticRecords(join(dir, "raw"), 4);
    const corpus = await writeBadCorpus(await Deno.makeTempDir({ dir }));
    const records = [...good, ...badRecords(corpus)];
    records.push({ ...good[0], id: "missing", subject: "sub-missing", path: join(dir, "nowhere.nii.gz") });
    const cache = join(dir, "cache");
    const progress: number[] = [];
    const first = await preprocessDataset(records, cache, {
      workers: 2,
      onProgress: (done) => progress.push(done),
    });
    assertEquals(first.processed, 4);
    assertEquals(first.cached, 0);
    assertEquals(first.skipped.length, corpus.length + 1);
    for (const c of corpus) {
      const s = first.skipped.find((s) => s.path === c.path);
      assert(s && s.reason.includes(c.expect), `${c.name}: ${s?.reason}`);
    }
    assert(first.skipped.some((s) => s.path.endsWith("nowhere.nii.gz") && s.reason === "file not found"));
    assertEquals(progress.length, records.length);
    assertEquals(progress.at(-1), records.length);
    const manifest = await readCacheManifest(cache);
    assertEquals(manifest.images.map((e) => e.id), good.map((r) => r.id));
    assertEquals(manifest.images[0].key, cacheKey(good[0]));
    assertEquals(manifest.skipped.length, first.skipped.length);
    assertClose(manifest.images[0].spacing, [1, 1, 1], { atol: 0.1 });

    // a second run finds everything current
    const second = await preprocessDataset(records, cache, { workers: 2 });
    assertEquals([second.processed, second.cached], [0, 4]);

    // an interrupted entry (properties missing) and a changed source are redone, the rest kept
    await Deno.remove(join(cache, cacheKey(good[1]) + ".json"));
    await Deno.utime(good[2].path, new Date(), new Date(Date.now() + 5000));
    const third = await preprocessDataset(records, cache, { workers: 0 });
    assertEquals([third.processed, third.cached], [2, 2]);

    // different parameters make every entry stale
    const fourth = await preprocessDataset(good, cache, { workers: 1, spacing: 1.5 });
    assertEquals([fourth.processed, fourth.cached], [4, 0]);
    assertClose((await readCacheManifest(cache)).images[0].spacing, [1.5, 1.5, 1.5], { atol: 0.15 });
  } finally {
    await cleanup();
  }
});

Deno.test("preprocessDataset() gives the same cache bytes in workers and in-process", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const records = await syntheticRecords(join(dir, "raw"), 3, 7);
    await preprocessDataset(records, join(dir, "a"), { workers: 2 });
    await preprocessDataset(records, join(dir, "b"), { workers: 0 });
    for (const r of records) {
      const key = cacheKey(r);
      assertEquals(
        await Deno.readFile(join(dir, "a", key + ".vxc")),
        await Deno.readFile(join(dir, "b", key + ".vxc")),
      );
    }
  } finally {
    await cleanup();
  }
});

Deno.test("resolveTargetSpacing() takes the per-axis median of the reoriented spacings", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const records = await syntheticRecords(join(dir, "raw"), 5, 11);
    const { target, skipped } = await resolveTargetSpacing(records, "median");
    assertEquals(skipped, []);
    // the generator's spacings are in canonical order: the median per axis of those (5 values: the 3rd)
    const expected = [0, 1, 2].map((a) => records.spacings.map((s) => s[a]).sort((x, y) => x - y)[2]);
    assertClose(target!, expected, { atol: 1e-5 });
    assertEquals((await resolveTargetSpacing(records, 2)).target, [2, 2, 2]);
    assertEquals((await resolveTargetSpacing(records, "none")).target, null);
    const summary = await preprocessDataset(records, join(dir, "cache"), { workers: 0, spacing: "median" });
    assertEquals(summary.targetSpacing, target);
    assertEquals(summary.manifest.parameters?.spacingMode, "median");
  } finally {
    await cleanup();
  }
});

Deno.test("readCacheManifest() rebuilds the entries from properties files when cache.json is missing", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const records = await syntheticRecords(join(dir, "raw"), 2, 5);
    const cache = join(dir, "cache");
    const summary = await preprocessDataset(records, cache, { workers: 0 });
    await Deno.remove(join(cache, "cache.json"));
    const rebuilt = await readCacheManifest(cache);
    assertEquals(rebuilt.images, summary.manifest.images);
  } finally {
    await cleanup();
  }
});
