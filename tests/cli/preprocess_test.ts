import { join } from "node:path";
import { readCacheManifest } from "../../core/data/cache_dataset.ts";
import { writeSyntheticDataset } from "../../core/data/synthetic_dataset.ts";
import { assert, assertEquals } from "../assert.ts";
import { tempDir, writeBadCorpus } from "../core/data/fixtures.ts";
import { voxssl } from "./cli_helpers.ts";

Deno.test("voxssl preprocess: caches the good images, skips the bad ones with reasons, resumes", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const data = join(dir, "scans");
    await writeSyntheticDataset(data, {
      count: 3,
      shape: [12, 12, 12],
      seed: 2,
      layout: "flat",
      varyGeometry: true,
    });
    const bad = await writeBadCorpus(data);
    const index = join(dir, "index.json");
    // a header-only index lets NaN voxels and a damaged gzip body through: preprocessing must catch them
    assertEquals((await voxssl("index", data, "--out", index)).code, 0);
    const cache = join(dir, "cache");
    const run = await voxssl("preprocess", index, "--out", cache, "--workers", "2");
    assertEquals(run.code, 0, run.stderr);
    assert(run.stdout.includes("3 preprocessed, 0 already done, target spacing 1×1×1 mm"), run.stdout);
    assert(run.stdout.includes("preprocess: 3 done, 2 skipped"), run.stdout);
    for (const name of ["nan_inf.nii.gz", "corrupted_body.nii.gz"]) {
      const c = bad.find((b) => b.name === name)!;
      assert(
        run.stdout.includes(`${c.path}: `) &&
          run.stdout.split("\n").some((l) => l.includes(c.path) && l.includes(c.expect)),
        run.stdout,
      );
    }
    assertEquals((await readCacheManifest(cache)).images.length, 3);
    const again = await voxssl("preprocess", index, "--out", cache, "--strict");
    assertEquals(again.code, 1);
    assert(again.stdout.includes("0 preprocessed, 3 already done"), again.stdout);
    const median = await voxssl(
      "preprocess",
      index,
      "--out",
      join(dir, "cache2"),
      "--spacing",
      "median",
      "--workers",
      "0",
    );
    assertEquals(median.code, 0, median.stderr);
    assert(median.stdout.includes("3 preprocessed"), median.stdout);
  } finally {
    await cleanup();
  }
});

Deno.test("voxssl preprocess: an index that names missing files finishes the rest and lists them", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    await writeSyntheticDataset(join(dir, "scans"), {
      count: 2,
      shape: [10, 10, 10],
      seed: 4,
      layout: "flat",
    });
    const index = join(dir, "index.json");
    assertEquals((await voxssl("index", join(dir, "scans"), "--out", index)).code, 0);
    const json = JSON.parse(await Deno.readTextFile(index));
    const images = Object.values(json.datasets.scans.subjects) as {
      sessions: Record<string, { images: { image_path: string }[] }>;
    }[];
    images[0].sessions["ses-DEFAULT"].images[0].image_path = "scans/gone.nii.gz";
    await Deno.writeTextFile(index, JSON.stringify(json));
    const run = await voxssl("preprocess", index, "--out", join(dir, "cache"));
    assertEquals(run.code, 0, run.stderr);
    assert(
      run.stdout.includes("1 preprocessed") &&
        run.stdout.includes(`${join(dir, "scans", "gone.nii.gz")}: file not found`),
      run.stdout,
    );
  } finally {
    await cleanup();
  }
});

Deno.test("voxssl preprocess: bad arguments and a missing index exit 2 with the reason", async () => {
  const bad = await voxssl("preprocess", "/no/index.json", "--out", "/tmp/x", "--spacing", "fast");
  assertEquals(bad.code, 2);
  assert(
    bad.stderr.includes('--spacing: expected a positive number, "median", "none" or sd,sh,sw; got "fast"'),
    bad.stderr,
  );
  const missing = await voxssl("preprocess", "/no/index.json", "--out", "/tmp/x");
  assertEquals(missing.code, 2);
  assert(missing.stderr.includes("/no/index.json: file not found"), missing.stderr);
});
