import { join } from "node:path";
import { listImages, readPretrainIndex } from "../../core/data/dataset_index.ts";
import { writeSyntheticDataset } from "../../core/data/synthetic_dataset.ts";
import { assert, assertEquals } from "../assert.ts";
import { tempDir, writeBadCorpus } from "../core/data/fixtures.ts";
import { voxssl } from "./cli_helpers.ts";

Deno.test("voxssl index: finishes the good files, lists every skipped file with its reason, exits 0 (1 with --strict)", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const data = join(dir, "scans");
    await writeSyntheticDataset(data, { count: 3, shape: [10, 10, 10], seed: 1, layout: "flat" });
    const bad = await writeBadCorpus(data);
    const out = join(dir, "out", "index.json");
    const run = await voxssl("index", data, "--out", out, "--check", "full");
    assertEquals(run.code, 0, run.stderr);
    assert(run.stdout.includes(`wrote ${out}: 3 images`), run.stdout);
    assert(run.stdout.includes(`index: 3 done, ${bad.length} skipped`), run.stdout);
    for (const c of bad) {
      const line = run.stdout.split("\n").find((l) => l.includes(`${c.path}: `));
      assert(line && line.includes(c.expect), `${c.name}: ${line}`);
    }
    assert(run.stderr.includes("index: ") && run.stderr.includes("(100%)"), "progress on stderr");
    assert(
      !run.stderr.includes("\r") && !run.stderr.includes("\x1b"),
      "plain progress when not on a terminal",
    );
    const images = listImages(await readPretrainIndex(out), join(dir, "out"));
    assertEquals(images.length, 3);
    assert(images.every((i) => i.path.startsWith(data)));
    const strict = await voxssl("index", data, "--out", out, "--strict", "--log", "json");
    assertEquals(strict.code, 1);
    assert(strict.stderr.includes("--strict"));
    const events = strict.stderr.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
    const total = 3 + bad.length;
    assertEquals(events.at(-1), { ...events.at(-1), event: "finish", task: "index", done: total, total });
  } finally {
    await cleanup();
  }
});

Deno.test("voxssl index --openmind-csv: builds the index from the metadata CSV and filters it", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const ds = await writeSyntheticDataset(dir, {
      count: 6,
      shape: [10, 10, 10],
      seed: 3,
      modalities: ["T1w", "T2w", "FLAIR"],
    });
    const out = join(dir, "pretrain_data.json");
    const run = await voxssl(
      "index",
      dir,
      "--out",
      out,
      "--openmind-csv",
      ds.csv!,
      "--modalities",
      "T1w,T2w",
      "--max-quality",
      "3",
    );
    assertEquals(run.code, 0, run.stderr);
    const images = listImages(await readPretrainIndex(out), dir);
    const expected = ds.files.filter((f) => f.modality !== "FLAIR" && f.qualityScore <= 3);
    assertEquals(images.map((i) => i.name).sort(), expected.map((f) => f.image.split("/").pop()!).sort());
    assert(images.every((i) => i.anatomyMask && i.anonymizationMask));
    assert(run.stdout.includes(`(${6 - expected.length} removed by filters)`), run.stdout);
  } finally {
    await cleanup();
  }
});

Deno.test("voxssl index: a missing folder or a bad option is an error of the job (exit 2)", async () => {
  const run = await voxssl("index", "/no/such/folder", "--out", "/tmp/never.json");
  assertEquals(run.code, 2);
  assert(run.stderr.includes("/no/such/folder: file not found"), run.stderr);
  const bad = await voxssl("index", "/tmp", "--out", "/tmp/never.json", "--max-quality", "good");
  assertEquals(bad.code, 2);
  assert(bad.stderr.includes("--max-quality: expected a number"), bad.stderr);
});
