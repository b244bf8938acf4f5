/**
 * The leaderboard page's classification section, from a results.json the benchmark's own code assembles
 * (hand-made per-case results of a mixed spec: a segmentation and a classification dataset, scratch and
 * m1, 2 seeds): a table per dataset with every entry's rank and intervals as the entries hold them, a
 * per-seed plot whose dots are the seeds' balanced accuracies counted here from the predictions, the
 * segmentation sections byte for byte as without the classification dataset, and a classification-only
 * page without Dice sections.
 */
import { assert, assertEquals } from "../../assert.ts";
import {
  buildLeaderboard,
  type CellRecord,
  expandGrid,
  parseBenchmarkSpec,
  resultsDocument,
} from "../../../core/eval/benchmark/mod.ts";
import { type LeaderboardResults, renderLeaderboard } from "../../../cli/report/leaderboard.ts";

const labels = [0, 0, 0, 1, 2];
/** Predicted class per (method, seed, case). */
const predicted: Record<string, number[][]> = {
  scratch: [[0, 0, 0, 0, 0], [0, 1, 0, 0, 2]],
  m1: [[0, 0, 1, 1, 2], [0, 0, 0, 1, 1]],
};

const segmentationSpec = {
  name: "mix",
  architectures: ["a"],
  datasets: [{ name: "hippo", path: "/h" }],
  seeds: [0, 1],
  methods: [{ name: "m1", checkpoint: "/c.safetensors", arch: "a" }],
  statistics: { replicates: 300 },
};
const tumour = { name: "tumour", task: "classification", csv: "/t.csv" };

async function resultsOf(value: unknown): Promise<LeaderboardResults> {
  const spec = parseBenchmarkSpec(value, "s", "/");
  const grid = await expandGrid(spec);
  const records = new Map<string, CellRecord>();
  for (const cell of grid.cells) {
    const classification = cell.dataset.task === "classification";
    const p = predicted[cell.method]?.[cell.seed];
    records.set(cell.key, {
      key: cell.key,
      cell,
      finishedAt: "",
      result: classification
        ? {
          task: "classification",
          classes: ["a", "b", "c"],
          cases: labels.map((label, i) => {
            const probabilities = [0.2, 0.2, 0.2];
            probabilities[p[i]] = 0.6 - 0.05 * ((i + cell.seed) % 3);
            return { case: `t${i}`, label, predicted: p[i], probabilities };
          }),
          provenance: { core: "0.2.0", plugins: {} },
          seconds: 1,
        }
        : {
          cases: [0, 1, 2].map((i) => ({
            case: `h${i}`,
            dice: 0.5 + 0.1 * i * (cell.method === "m1" ? 1.2 : 1) - 0.03 * cell.seed,
          })),
          provenance: { core: "0.2.0", plugins: {} },
          seconds: 1,
        },
    });
  }
  const board = buildLeaderboard(grid.cells, records, spec.statistics);
  const document = resultsDocument({
    spec,
    cells: grid.cells,
    records,
    pretraining: [],
    leaderboard: board,
    writer: { core: "0.2.0" },
    now: new Date("2026-01-01T00:00:00Z"),
  });
  return JSON.parse(JSON.stringify(document)); // as the page reads it from results.json
}

/** The `<section data-section="id">…</section>` of a page, or undefined. */
function section(html: string, id: string): string | undefined {
  return html.match(new RegExp(`<section id="${id}" data-section="${id}">[\\s\\S]*?</section>`))?.[0];
}

/** Balanced accuracy by counting: recall per class present, averaged. */
function balancedAccuracy(pred: number[]): number {
  const recalls = [...new Set(labels)].map((k) => {
    const of = labels.flatMap((l, i) => (l === k ? [i] : []));
    return of.filter((i) => pred[i] === k).length / of.length;
  });
  return recalls.reduce((a, b) => a + b, 0) / recalls.length;
}

Deno.test("leaderboard page: a classification table and per-seed plot per dataset; segmentation sections unchanged", async () => {
  const alone = renderLeaderboard(await resultsOf(segmentationSpec));
  const mixedResults = await resultsOf({
    ...segmentationSpec,
    datasets: [...segmentationSpec.datasets, tumour],
    classify: { epochs: 1 },
  });
  const mixed = renderLeaderboard(mixedResults);
  assert(section(alone, "classification") === undefined);
  for (const id of ["plots", "per-case", "cells"]) {
    assert(section(alone, id), id);
    assertEquals(
      section(mixed, id),
      section(alone, id),
      `section ${id} as without the classification dataset`,
    );
  }
  assertEquals(
    section(mixed, "leaderboard")!.replace(/<p class="muted">2 classification entries: .*?<\/p>/, ""),
    section(alone, "leaderboard"),
  );

  const cls = section(mixed, "classification")!;
  const entries = mixedResults.classificationLeaderboard!;
  assertEquals(entries.map((e) => [e.method, e.rank]), [["m1", 1], ["scratch", 2]]);
  assertEquals((cls.match(/<table class="sortable classification"/g) ?? []).length, 1);
  const rows = [...cls.matchAll(/<tr><td class="num">(\d+)<\/td><td>([^<]+)<\/td>(.*?)<\/tr>/g)];
  assertEquals(rows.map((r) => [r[1], r[2]]), [["1", "m1"], ["2", "scratch"]]);
  for (const [i, e] of entries.entries()) {
    const values = [...rows[i][3].matchAll(/data-value="([^"]*)"/g)].map((m) => m[1]);
    const auroc = e.auroc as { mean: number; lower: number; upper: number };
    assertEquals(values, [
      String(e.balancedAccuracy.mean),
      e.deltaToScratch ? String(e.deltaToScratch.mean) : "",
      String(e.accuracy.mean),
      String(auroc.mean),
      e.aurocDeltaToScratch ? String(e.aurocDeltaToScratch.mean) : "",
    ]);
    const ba = e.balancedAccuracy;
    assert(rows[i][3].includes(`${ba.mean.toFixed(3)} [${ba.lower.toFixed(3)}, ${ba.upper.toFixed(3)}]`));
    assert(
      rows[i][3].includes(`${auroc.mean.toFixed(3)} [${auroc.lower.toFixed(3)}, ${auroc.upper.toFixed(3)}]`),
    );
  }
  assert(rows[0][3].includes("+") && rows[1][3].includes(">–<"), "Δ for m1, a dash for scratch");

  // the per-seed plot: one dot per seed at its balanced accuracy, counted here from the predictions
  assert(cls.includes('data-chart="tumour: balanced accuracy per seed, 100% labels"'), cls);
  for (const method of ["m1", "scratch"]) {
    const series = cls.match(new RegExp(`<g class="series" data-series="${method} · a">.*?</g>`))![0];
    const dots = [...series.matchAll(/class="seed" data-seed="(\d)" data-value="([^"]+)"/g)];
    assertEquals(dots.map((d) => d[1]), ["0", "1"]);
    for (const d of dots) {
      const expected = balancedAccuracy(predicted[method][Number(d[1])]);
      assert(Math.abs(Number(d[2]) - expected) < 1e-12, `${method} seed ${d[1]}: ${d[2]} vs ${expected}`);
    }
  }
});

Deno.test("leaderboard page: classification only, no Dice sections; an AUROC without interval still shown", async () => {
  const results = await resultsOf({ ...segmentationSpec, datasets: [tumour], classify: { epochs: 1 } });
  const html = renderLeaderboard(results);
  for (const id of ["plots", "per-case"]) assert(section(html, id) === undefined, id);
  assert(section(html, "classification") && !html.includes("No finished cells yet"));
  // results.json written before AUROC had an interval: a bare mean; undefined AUROC: a dash
  const [first, second] = results.classificationLeaderboard!;
  const old = renderLeaderboard({
    ...results,
    classificationLeaderboard: [{ ...first, auroc: 0.8125, perSeed: undefined }, { ...second, auroc: null }],
  });
  const cls = section(old, "classification")!;
  assert(cls.includes('<td class="num" data-value="0.8125">0.813</td>'), cls);
  assert(!cls.includes('data-series="m1 · a"'), "no per-seed dots without per-seed scores");
  assert(!old.includes("NaN") && !old.includes("undefined"));
});
