/**
 * The benchmark loop with a fake runner: resumes after an abort and after SIGKILL without recomputing
 * finished cells, pretrains once per job, retries failed cells, and writes the reports (leaderboard,
 * CSV, JSON, SVG plots that parse as XML and hold the expected series).
 */
import { DOMParser } from "@xmldom/xmldom";
import { assert, assertEquals } from "../../../assert.ts";
import { parseCsvRecords } from "../../../../core/data/csv.ts";
import { expandGrid, parseBenchmarkSpec, runBenchmark } from "../../../../core/eval/benchmark/mod.ts";
import { FAKE_CASES, FAKE_SPEC, FakeRunner } from "./fake_runner.ts";

const spec = parseBenchmarkSpec(FAKE_SPEC, "fake", "/");
const TOTAL = 16;
const writer = { core: "0.2.0", commit: "feedbeef" };

Deno.test("benchmark: an aborted run resumes without recomputing finished cells", async () => {
  const out = await Deno.makeTempDir({ prefix: "voxssl-bench-" });
  const controller = new AbortController();
  const first = new FakeRunner();
  first.onCell = (_cell, call) => {
    if (call === 6) {
      controller.abort();
      throw new Error("interrupted"); // the stage sees the signal and stops mid-cell
    }
  };
  const s1 = await runBenchmark({ spec, out, runner: first, signal: controller.signal, writer });
  assertEquals([s1.computed, s1.stopped, s1.failures.length], [5, true, 0]);
  assertEquals(first.pretrainCalls.length, 1); // mae is pretrained on the first mae cell, once
  const partial = await Deno.readTextFile(`${out}/leaderboard.md`);
  assert(partial.includes("**Partial:** 5 of 16 cells finished"), partial);

  const second = new FakeRunner();
  const s2 = await runBenchmark({ spec, out, runner: second, writer });
  assertEquals([s2.computed, s2.reused, s2.stopped], [TOTAL - 5, 5, false]);
  assertEquals(second.cellCalls.length, TOTAL - 5);
  assertEquals(second.pretrainCalls.length, 0, "the finished pretraining is reused");
  const done = new Set(first.cellCalls.slice(0, 5).map((c) => c.key));
  assert(second.cellCalls.every((c) => !done.has(c.key)), "no finished cell runs twice");
  assert(
    second.checkpoints.every((c, i) =>
      (second.cellCalls[i].method === "mae") === (c === "/fake/mae-resenc-tiny.safetensors")
    ),
  );

  const third = new FakeRunner();
  const s3 = await runBenchmark({ spec, out, runner: third, writer });
  assertEquals([third.cellCalls.length, third.pretrainCalls.length, s3.reused], [0, 0, TOTAL]);
  assert(!(await Deno.readTextFile(`${out}/leaderboard.md`)).includes("Partial"));
  await Deno.remove(out, { recursive: true });
});

Deno.test("benchmark: a SIGKILLed run resumes without recomputing finished cells", async () => {
  const out = await Deno.makeTempDir({ prefix: "voxssl-bench-" });
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../../../fixtures/benchmark_kill_child.ts", import.meta.url).pathname,
      out,
      "4",
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("started 4")) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
  }
  child.kill("SIGKILL");
  await child.status;
  await reader.cancel();
  assert(text.includes("started 4"), `the child got to cell 4: ${text}`);
  const runner = new FakeRunner();
  const summary = await runBenchmark({ spec, out, runner, writer });
  assertEquals([summary.reused, runner.cellCalls.length, runner.pretrainCalls.length], [3, TOTAL - 3, 0]);
  await Deno.remove(out, { recursive: true });
});

Deno.test("benchmark: a failing cell is reported, the rest finish, and the next run retries only it", async () => {
  const out = await Deno.makeTempDir({ prefix: "voxssl-bench-" });
  const first = new FakeRunner();
  first.onCell = (cell) => {
    if (
      cell.method === "mae" && cell.seed === 1 && cell.dataset.name === "other" && cell.labelFraction === 1
    ) {
      throw new Error("out of memory (simulated)");
    }
  };
  const settled: [number, number][] = [];
  const s1 = await runBenchmark({
    spec,
    out,
    runner: first,
    writer,
    onCell: (n, total) => settled.push([n, total]),
  });
  assertEquals([s1.computed, s1.failures.length], [TOTAL - 1, 1]);
  // the progress callback counts every cell once, the failed one included
  assertEquals(settled, Array.from({ length: TOTAL }, (_, i) => [i + 1, TOTAL]));
  assert(
    s1.failures[0].error.includes("out of memory") &&
      s1.failures[0].what.includes("mae · resenc-tiny on other"),
  );
  const second = new FakeRunner();
  const resumed: number[] = [];
  await runBenchmark({ spec, out, runner: second, writer, onCell: (n) => resumed.push(n) });
  assertEquals(second.cellCalls.map((c) => c.key), [s1.failures[0].key]);
  assertEquals(resumed, [TOTAL]); // the finished cells count from the start
  await Deno.remove(out, { recursive: true });
});

Deno.test("benchmark reports: leaderboard, CSV, JSON and SVG plots that parse and hold every series", async () => {
  const out = await Deno.makeTempDir({ prefix: "voxssl-bench-" });
  await runBenchmark({ spec, out, runner: new FakeRunner(), writer });
  const grid = await expandGrid(spec);

  const csv = parseCsvRecords(await Deno.readTextFile(`${out}/results.csv`));
  assertEquals(csv.length, TOTAL * FAKE_CASES);
  assertEquals(csv[0].adapter, "fake adapter, with a comma");
  assertEquals(new Set(csv.map((r) => r.method)), new Set(["scratch", "mae"]));
  assert(csv.filter((r) => r.method === "mae").every((r) => r.plugins === "mae@1.0.0 resenc@0.1.0"));
  assert(csv.every((r) => Number(r.dice) > 0 && r.commit === "0123abc"));

  const json = JSON.parse(await Deno.readTextFile(`${out}/results.json`));
  assertEquals(json.cells.length, TOTAL);
  assertEquals(json.writer, writer);
  assertEquals(json.pretraining.length, 1);
  assertEquals(json.cells[0].result.provenance.plugins.resenc, "0.1.0");
  assertEquals(json.cells[0].result.cases[0].perClass.posterior, null);
  assertEquals(json.spec.seeds, [0, 1]);
  assertEquals(new Set(json.cells.map((c: { key: string }) => c.key)), new Set(grid.cells.map((c) => c.key)));

  const board = await Deno.readTextFile(`${out}/leaderboard.md`);
  for (
    const heading of [
      "## hippo, 25% of the training labels",
      "## other, 100% of the training labels",
      "## Summary, 100%",
    ]
  ) {
    assert(board.includes(heading), `${heading} in ${board}`);
  }
  assert(board.includes("percentile bootstrap") && board.includes("200 replicates, seed 0"));

  const parse = (text: string) =>
    new DOMParser({
      onError: (level: string, message: string) => {
        if (level !== "warning") throw new Error(message);
      },
    }).parseFromString(text, "image/svg+xml");
  const series = (doc: ReturnType<typeof parse>) =>
    Array.from(doc.getElementsByTagName("g")).filter((g) => g.getAttribute("class") === "series");

  const bars = parse(await Deno.readTextFile(`${out}/dice_per_dataset.svg`));
  assertEquals(bars.documentElement!.tagName, "svg");
  const barSeries = series(bars);
  assertEquals(barSeries.map((g) => g.getAttribute("data-series")), [
    "scratch · resenc-tiny",
    "mae · resenc-tiny",
  ]);
  for (const g of barSeries) {
    const rects = Array.from(g.getElementsByTagName("rect"));
    assertEquals(rects.map((r) => r.getAttribute("data-dataset")), ["hippo", "other"]);
    assertEquals(g.getElementsByTagName("line").length, 2); // CI whiskers
  }
  const json100 = json.leaderboard.filter((e: { labelFraction: number }) => e.labelFraction === 1);
  const maeHippo = json100.find((e: { method: string; dataset: string }) =>
    e.method === "mae" && e.dataset === "hippo"
  );
  assertEquals(
    Number(barSeries[1].getElementsByTagName("rect")[0].getAttribute("data-dice")),
    maeHippo.dice.mean,
  );

  const lines = parse(await Deno.readTextFile(`${out}/dice_vs_label_fraction.svg`));
  const panels = Array.from(lines.getElementsByTagName("g")).filter((g) =>
    g.getAttribute("class") === "panel"
  );
  assertEquals(panels.map((p) => p.getAttribute("data-dataset")), ["hippo", "other"]);
  const lineSeries = series(lines);
  assertEquals(lineSeries.length, 4); // 2 panels × 2 entries
  for (const g of lineSeries) {
    assertEquals(g.getElementsByTagName("polyline").length, 1);
    assertEquals(Array.from(g.getElementsByTagName("circle")).map((c) => c.getAttribute("data-fraction")), [
      "0.25",
      "1",
    ]);
  }
  await Deno.remove(out, { recursive: true });
});
