/**
 * `voxssl benchmark` with a classification dataset, end to end as a user runs it: synthetic bright/dark
 * cube volumes and their CSV (the classify test's data), a spec with one classification dataset, scratch
 * on resenc-tiny for a handful of steps. The cell runs `voxssl classify`; the leaderboard has its row, and
 * its balanced accuracy equals the one counted here from results_classification.csv and from the run's
 * own test_predictions.csv.
 */
import { join } from "node:path";
import { assert, assertEquals } from "../assert.ts";
import { parseCsvRecords } from "../../core/data/mod.ts";
import { gpuTest } from "../helpers.ts";
import { tempDir } from "../core/data/fixtures.ts";
import { writeCubeDataset } from "../core/eval/classification/fixtures.ts";
import { voxssl } from "./cli_helpers.ts";

/** Balanced accuracy by counting: recall per class present in `label`, averaged. */
function balancedAccuracy(rows: Record<string, string>[]): number {
  const recalls = [...new Set(rows.map((r) => r.label))].map((k) => {
    const of = rows.filter((r) => r.label === k);
    return of.filter((r) => r.predicted === k).length / of.length;
  });
  return recalls.reduce((a, b) => a + b, 0) / recalls.length;
}

gpuTest(
  "voxssl benchmark: a classification dataset runs voxssl classify and gets a leaderboard row",
  async () => {
    const { dir, cleanup } = await tempDir("voxssl-cli-bench-cls-");
    try {
      const csv = await writeCubeDataset(join(dir, "cubes"), { perClass: 4 });
      assertEquals(csv, join(dir, "cubes", "labels.csv")); // the spec names it relative to its folder
      const spec = join(dir, "spec.json");
      await Deno.writeTextFile(
        spec,
        JSON.stringify({
          name: "cubes",
          out: "results",
          architectures: ["resenc-tiny"],
          datasets: [{ name: "cubes", task: "classification", csv: "cubes/labels.csv" }],
          classify: {
            epochs: 2,
            stepsPerEpoch: 3,
            batch: 4,
            patch: [8, 8, 8],
            lr: 3e-2,
            spacing: "none",
            augmentation: false,
          },
          statistics: { replicates: 200 },
        }),
      );
      const run = await voxssl("benchmark", spec);
      assertEquals(run.code, 0, run.stderr + run.stdout);
      assert(run.stdout.includes("1 cells computed, 0 reused, 0 failed"), run.stdout);
      const out = join(dir, "results");
      const rows = parseCsvRecords(await Deno.readTextFile(join(out, "results_classification.csv")));
      assertEquals(rows.length, 4, "4 test cases (stratified 50/50 of 8)");
      assert(rows.every((r) => r.method === "scratch" && r.dataset === "cubes"));
      assert(rows.every((r) => String(Number(r.predicted === r.label)) === r.correct));
      const expected = balancedAccuracy(rows);

      // the same cases and predictions as the classify run's own per-case CSV
      const work = (await Array.fromAsync(Deno.readDir(join(out, "work")))).map((e) => e.name);
      assertEquals(work.length, 1);
      const own = parseCsvRecords(
        await Deno.readTextFile(join(out, "work", work[0], "classify", "test_predictions.csv")),
      );
      assertEquals(
        own.map((r) => [r.case, r.label, r.predicted]).sort(),
        rows.map((r) => [r.case, r.label, r.predicted]).sort(),
      );

      const results = JSON.parse(await Deno.readTextFile(join(out, "results.json")));
      assertEquals(results.leaderboard, []);
      const [entry] = results.classificationLeaderboard;
      assertEquals([entry.method, entry.arch, entry.dataset, entry.cases, entry.rank], [
        "scratch",
        "resenc-tiny",
        "cubes",
        4,
        1,
      ]);
      assert(
        Math.abs(entry.balancedAccuracy.mean - expected) < 1e-12,
        `${entry.balancedAccuracy.mean} vs ${expected}`,
      );
      const board = await Deno.readTextFile(join(out, "leaderboard.md"));
      assert(board.includes("## cubes (classification), 100% of the training labels"), board);
      assert(board.includes(`| 1 | scratch | resenc-tiny | ${expected.toFixed(3)} | [`), board);

      // the HTML page has the entry in its classification table and keeps the cell out of its Dice tables
      const page = await Deno.readTextFile(join(out, "leaderboard.html"));
      assert(page.includes('data-section="classification"'), "page has a classification section");
      assert(
        page.includes(`<td class="num" data-value="${entry.balancedAccuracy.mean}">${expected.toFixed(3)} [`),
        "the entry's balanced accuracy in the page's table",
      );
      assert(entry.auroc === null || typeof entry.auroc.lower === "number", "AUROC with its interval");
      assert(!page.includes("NaN"), "no Dice computed from a classification cell");

      // a second run finds the cell finished
      const again = await voxssl("benchmark", spec, "--dry-run");
      assert(again.stdout.includes("1 cells, 1 finished"), again.stdout);

      // stopped after the final checkpoint, before the scores and the cell's record: the rerun resumes the
      // finished run, which scores the test cases again from the final weights
      const cellRun = join(out, "work", work[0], "classify");
      await Deno.remove(join(cellRun, "test_scores.json"));
      await Deno.remove(join(cellRun, "test_predictions.csv"));
      for await (const e of Deno.readDir(join(out, "cells"))) await Deno.remove(join(out, "cells", e.name));
      const resumed = await voxssl("benchmark", spec);
      assertEquals(resumed.code, 0, resumed.stderr + resumed.stdout);
      assert(resumed.stdout.includes("1 cells computed, 0 reused, 0 failed"), resumed.stdout);
      const rescored = parseCsvRecords(await Deno.readTextFile(join(cellRun, "test_predictions.csv")));
      assertEquals(
        rescored.map((r) => [r.case, r.predicted]).sort(),
        own.map((r) => [r.case, r.predicted]).sort(),
        "the same predictions from the same final weights",
      );
    } finally {
      await cleanup();
    }
  },
);
