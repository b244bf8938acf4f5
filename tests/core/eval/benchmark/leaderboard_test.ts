/**
 * The leaderboard's numbers against a float64 reference computed here from the raw per-case scores:
 * means over seeds and cases, paired Δ to scratch, ranks; incomplete seeds use the cases all seeds share.
 */
import { assert, assertEquals } from "../../../assert.ts";
import {
  buildLeaderboard,
  type CellRecord,
  crossedBootstrap,
  expandGrid,
  leaderboardMarkdown,
  parseBenchmarkSpec,
} from "../../../../core/eval/benchmark/mod.ts";

const statistics = { confidence: 0.95, replicates: 300, seed: 4 };

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

Deno.test("leaderboard: means, Δ to scratch and ranks match a float64 reference", async () => {
  const spec = parseBenchmarkSpec(
    {
      name: "ref",
      architectures: ["a1", "a2"],
      datasets: [{ name: "d", path: "/d" }],
      seeds: [0, 1, 2],
      methods: [
        { name: "m1", pretrain: { method: "mae", data: "synthetic" } },
        { name: "m2", checkpoint: "/c", arch: "a1" },
      ],
    },
    "s",
    "/",
  );
  const grid = await expandGrid(spec);
  const rand = mulberry32(5);
  const scores = new Map<string, number[]>(); // cell key → per-case Dice (5 cases)
  const records = new Map<string, CellRecord>();
  for (const cell of grid.cells) {
    const dice = Array.from({ length: 5 }, () => 0.4 + 0.5 * rand());
    scores.set(cell.key, dice);
    records.set(cell.key, {
      key: cell.key,
      cell,
      finishedAt: "",
      result: {
        cases: dice.map((d, i) => ({ case: `c${i}`, dice: d })),
        provenance: { core: "0.2.0", plugins: {} },
        seconds: 1,
      },
    });
  }
  const board = buildLeaderboard(grid.cells, records, statistics);
  assertEquals(board.missing.length, 0);
  assertEquals(board.entries.length, 5); // a1: scratch, m1, m2; a2: scratch, m1

  // reference: plain float64 sums over the raw scores, entry by entry
  const reference = new Map<string, { mean: number; perSeed: number[][] }>();
  for (const method of ["scratch", "m1", "m2"]) {
    for (const arch of ["a1", "a2"]) {
      const cells = grid.cells.filter((c) => c.method === method && c.arch === arch).sort((a, b) =>
        a.seed - b.seed
      );
      if (cells.length === 0) continue;
      let sum = 0;
      for (const c of cells) for (const d of scores.get(c.key)!) sum += d;
      reference.set(`${method} ${arch}`, {
        mean: sum / (cells.length * 5),
        perSeed: cells.map((c) => scores.get(c.key)!),
      });
    }
  }
  for (const e of board.entries) {
    const ref = reference.get(`${e.method} ${e.arch}`)!;
    assert(Math.abs(e.dice.mean - ref.mean) < 1e-14, `${e.method} ${e.arch}: ${e.dice.mean} vs ${ref.mean}`);
    assert(e.dice.lower <= e.dice.mean && e.dice.mean <= e.dice.upper);
    assertEquals([e.seeds, e.cases], [[0, 1, 2], 5]);
    // the interval is the crossed bootstrap of the seeds × cases matrix assembled here
    assertEquals(e.dice, crossedBootstrap(ref.perSeed, statistics));
    const base = reference.get(`scratch ${e.arch}`)!;
    if (e.method === "scratch") assertEquals(e.deltaToScratch, undefined);
    else {
      let diff = 0;
      ref.perSeed.forEach((row, s) => row.forEach((v, j) => (diff += v - base.perSeed[s][j])));
      assert(Math.abs(e.deltaToScratch!.mean - diff / 15) < 1e-14, "paired Δ");
      assert(Math.abs(e.deltaToScratch!.mean - (ref.mean - base.mean)) < 1e-14);
    }
    const better = [...reference.values()].filter((r) => r.mean > ref.mean).length;
    assertEquals(e.rank, 1 + better, `${e.method} ${e.arch} rank`);
  }
  const md = leaderboardMarkdown(board, "ref", grid.cells.length);
  const best = board.entries.find((e) => e.rank === 1)!;
  assert(md.includes(`| 1 | ${best.method} | ${best.arch} | ${best.dice.mean.toFixed(3)} |`), md);
});

Deno.test("leaderboard: missing cells and seeds evaluated on different cases", async () => {
  const spec = parseBenchmarkSpec(
    {
      architectures: ["a"],
      datasets: [{ name: "d", path: "/d" }],
      seeds: [0, 1],
    },
    "s",
    "/",
  );
  const grid = await expandGrid(spec);
  assertEquals(grid.cells.length, 2); // scratch × 2 seeds
  const record = (i: number, cases: [string, number][]): CellRecord => ({
    key: grid.cells[i].key,
    cell: grid.cells[i],
    finishedAt: "",
    result: {
      cases: cases.map(([c, d]) => ({ case: c, dice: d })),
      provenance: { core: "0.2.0", plugins: {} },
      seconds: 0,
    },
  });
  const only = buildLeaderboard(
    grid.cells,
    new Map([[grid.cells[0].key, record(0, [["x", 0.5], ["y", 0.7]])]]),
    statistics,
  );
  assertEquals(only.missing.map((c) => c.key), [grid.cells[1].key]);
  assertEquals(only.entries[0].dice.mean, 0.6);
  assert(leaderboardMarkdown(only, "t", 2).includes("**Partial:** 1 of 2 cells finished"));
  const both = buildLeaderboard(
    grid.cells,
    new Map([
      [grid.cells[0].key, record(0, [["x", 0.5], ["y", 0.7]])],
      [grid.cells[1].key, record(1, [["y", 0.9], ["z", 0.1]])],
    ]),
    statistics,
  );
  // only case y is shared: (0.7 + 0.9) / 2
  assertEquals([both.entries[0].cases, both.entries[0].dice.mean], [1, 0.8]);
});
