/**
 * Classification datasets in the benchmark: the spec (both tasks, errors naming the field), the grid's
 * keys (segmentation's unchanged), and the classification leaderboard on hand-made per-case results
 * against references computed here: balanced accuracy, accuracy and AUROC by direct counting, the
 * crossed bootstrap of balanced accuracy and of its paired Δ against their exact distributions
 * enumerated over every resample of a 2 seeds × 5 cases design, and the stratified bootstrap of AUROC and
 * of its paired Δ against theirs (every seed draw × every within-class draw of the cases).
 */
import { assert, assertEquals, assertThrows } from "../../../assert.ts";
import {
  bootstrapReplicates,
  buildLeaderboard,
  type CellRecord,
  type ClassificationDesign,
  classificationResultsCsv,
  crossedBootstrapStatistic,
  expandGrid,
  leaderboardMarkdown,
  pairedBalancedAccuracyDelta,
  parseBenchmarkSpec,
  resultsCsv,
} from "../../../../core/eval/benchmark/mod.ts";

const classificationSpec = {
  name: "cls",
  architectures: ["a"],
  datasets: [{ name: "tumour", task: "classification", csv: "data/labels.csv" }],
  seeds: [0, 1],
  methods: [{ name: "m1", checkpoint: "/c.safetensors", arch: "a" }],
  classify: { epochs: 2 },
};

Deno.test("benchmark spec: classification datasets, relative csv resolved, default task segmentation", () => {
  const spec = parseBenchmarkSpec(classificationSpec, "s", "/base");
  assertEquals(spec.datasets[0], {
    name: "tumour",
    task: "classification",
    csv: "/base/data/labels.csv",
    splitFile: undefined,
  });
  const mixed = parseBenchmarkSpec(
    {
      ...classificationSpec,
      datasets: [...classificationSpec.datasets, { name: "hippo", path: "hippo" }],
      finetune: { epochs: 1 },
      predict: { mirroring: true },
    },
    "s",
    "/base",
  );
  assertEquals(mixed.datasets[1], { name: "hippo", path: "/base/hippo", splitFile: undefined });
  assertEquals(mixed.datasets[1].task, undefined);
});

Deno.test("benchmark spec: each task's fields refused on the other, naming the field", () => {
  const fails = (value: unknown, ...parts: string[]) => {
    const error = assertThrows(() => parseBenchmarkSpec(value, "spec.json", "/"));
    for (const p of parts) assert((error as Error).message.includes(p), (error as Error).message);
  };
  const dataset = classificationSpec.datasets[0];
  fails(
    { ...classificationSpec, datasets: [{ ...dataset, path: "/nnunet" }] },
    "datasets.0.path: a classification dataset reads its cases from",
  );
  fails(
    { ...classificationSpec, datasets: [{ name: "t", task: "classification" }] },
    "datasets.0.csv: a classification dataset needs a CSV",
  );
  fails(
    { ...classificationSpec, datasets: [{ name: "h", path: "/h", csv: "/x.csv" }] },
    'datasets.0.csv: "csv" is for classification datasets',
  );
  fails({ ...classificationSpec, datasets: [{ name: "h" }] }, "datasets.0.path: expected an nnU-Net raw");
  fails({ ...classificationSpec, datasets: [{ ...dataset, task: "detection" }] }, "datasets.0.task");
  fails({ ...classificationSpec, predict: { mirroring: true } }, "predict: options of voxssl predict");
  fails({ ...classificationSpec, finetune: { epochs: 3 } }, "finetune: options of voxssl finetune");
  fails(
    { ...classificationSpec, datasets: [{ name: "h", path: "/h" }] },
    'classify: options of voxssl classify, but no dataset has "task": "classification"',
  );
});

Deno.test("benchmark grid: classification cells keyed by classify options; segmentation keys unchanged", async () => {
  const keysOf = async (value: unknown) =>
    (await expandGrid(parseBenchmarkSpec(value, "s", "/"))).cells.map((c) => c.key);
  // computed by main before classification datasets existed: old results folders stay valid
  const segmentation = {
    architectures: ["resenc-tiny"],
    datasets: [{ name: "d", path: "/data/d", maxTestCases: 3 }],
    seeds: [0],
    finetune: { epochs: 1 },
  };
  assertEquals(await keysOf(segmentation), ["0aba4cdbf1c8e141"]);
  assertEquals(
    await keysOf({ ...segmentation, datasets: [{ ...segmentation.datasets[0], task: "segmentation" }] }),
    ["0aba4cdbf1c8e141"],
  );
  const grid = await expandGrid(parseBenchmarkSpec(classificationSpec, "s", "/"));
  assertEquals(grid.cells.length, 4);
  assert(grid.cells.every((c) => c.finetune.epochs === 2 && Object.keys(c.predict).length === 0));
  const longer = await keysOf({ ...classificationSpec, classify: { epochs: 3 } });
  assert(longer.every((k) => !grid.cells.some((c) => c.key === k)), "a changed classify option, new cells");
});

// ---------------------------------------------------------------------------------------------------
// The leaderboard maths on hand-made results: 3 classes, 5 test cases, 2 seeds, scratch and m1.

const classes = ["a", "b", "c"];
const labels = [0, 0, 0, 1, 2];
/** Predicted class per (method, seed, case). */
const predicted: Record<string, number[][]> = {
  scratch: [[0, 0, 0, 0, 0], [0, 1, 0, 0, 2]],
  m1: [[0, 0, 1, 1, 2], [0, 0, 0, 1, 1]],
};
/** Probabilities: the predicted class gets 0.5 + ((case + seed + [m1]) % 3) / 10, the rest split the rest. */
function probabilities(method: string, seed: number, i: number): number[] {
  const top = 0.5 + ((i + seed + (method === "m1" ? 1 : 0)) % 3) / 10;
  const p = [0, 0, 0].map(() => (1 - top) / 2);
  p[predicted[method][seed][i]] = top;
  return p;
}

async function handMade() {
  const spec = parseBenchmarkSpec(
    { ...classificationSpec, statistics: { replicates: 20000, seed: 2, confidence: 0.9 } },
    "s",
    "/",
  );
  const grid = await expandGrid(spec);
  const records = new Map<string, CellRecord>();
  for (const cell of grid.cells) {
    records.set(cell.key, {
      key: cell.key,
      cell,
      finishedAt: "",
      result: {
        task: "classification",
        classes,
        // listed out of order: the design sorts by case id
        cases: [4, 2, 0, 3, 1].map((i) => ({
          case: `case${i}`,
          label: labels[i],
          predicted: predicted[cell.method][cell.seed][i],
          probabilities: probabilities(cell.method, cell.seed, i),
        })),
        provenance: { core: "0.2.0", plugins: {} },
        seconds: 1,
      },
    });
  }
  return { spec, grid, records };
}

/** Balanced accuracy of one seed by counting: recall per class present, averaged. */
function balancedAccuracyRef(pred: number[], ref: number[]): number {
  const recalls: number[] = [];
  for (const k of new Set(ref)) {
    const of = ref.flatMap((l, i) => (l === k ? [i] : []));
    recalls.push(of.filter((i) => pred[i] === k).length / of.length);
  }
  return recalls.reduce((a, b) => a + b, 0) / recalls.length;
}

/**
 * AUROC of one seed on a list of cases (repeats count as separate cases): one-vs-rest over every
 * (positive, negative) pair of list positions, ties ½, macro over classes.
 */
function aurocRef(method: string, seed: number, cases = [0, 1, 2, 3, 4]): number {
  const per = classes.map((_, k) => {
    let wins = 0;
    let pairs = 0;
    for (const i of cases) {
      for (const j of cases) {
        if (labels[i] !== k || labels[j] === k) continue;
        const a = probabilities(method, seed, i)[k];
        const b = probabilities(method, seed, j)[k];
        wins += a > b ? 1 : a === b ? 0.5 : 0;
        pairs++;
      }
    }
    return wins / pairs;
  });
  return per.reduce((a, b) => a + b, 0) / per.length;
}

/** Every ordered tuple of `n` indices in [0, n). */
function tuples(n: number): number[][] {
  let out: number[][] = [[]];
  for (let k = 0; k < n; k++) out = out.flatMap((t) => Array.from({ length: n }, (_, i) => [...t, i]));
  return out;
}

/**
 * The exact crossed-bootstrap distribution (sorted) of `stat(seeds drawn, cases drawn)` where stat is
 * balanced accuracy of the pooled resample: seed s's prediction of case i counted once per draw.
 */
function exactDistribution(stat: (rows: number[], cols: number[]) => number): number[] {
  const out: number[] = [];
  for (const rows of tuples(2)) for (const cols of tuples(5)) out.push(stat(rows, cols));
  return out.sort((a, b) => a - b);
}

/**
 * The exact stratified crossed-bootstrap distribution (sorted) of `stat(seeds drawn, cases drawn)`: 2
 * seeds drawn with replacement; class a's cases 0, 1, 2 drawn three times with replacement from
 * themselves, classes b and c (one case each) keep theirs.
 */
function exactStratified(stat: (rows: number[], cols: number[]) => number): number[] {
  const out: number[] = [];
  for (const rows of tuples(2)) for (const a of tuples(3)) out.push(stat(rows, [...a, 3, 4]));
  return out.sort((x, y) => x - y);
}

/** Mean over the drawn seeds of each one's AUROC on the drawn cases, by pair counting. */
function resampledAurocRef(method: string, rows: number[], cols: number[]): number {
  return rows.reduce((sum, s) => sum + aurocRef(method, s, cols), 0) / rows.length;
}

/** Pooled balanced accuracy by listing every (drawn seed, drawn case) prediction and counting. */
function pooledRef(method: string, rows: number[], cols: number[]): number {
  const pred: number[] = [];
  const ref: number[] = [];
  for (const s of rows) {
    for (const i of cols) {
      pred.push(predicted[method][s][i]);
      ref.push(labels[i]);
    }
  }
  return balancedAccuracyRef(pred, ref);
}

function checkAgainstExact(
  interval: { lower: number; upper: number },
  exact: number[],
  confidence: number,
  replicates: number,
) {
  const alpha = 1 - confidence;
  for (const [bound, p] of [[interval.lower, alpha / 2], [interval.upper, 1 - alpha / 2]] as const) {
    const tol = 4 * Math.sqrt(p * (1 - p) / replicates);
    const below = exact.filter((v) => v < bound - 1e-12).length / exact.length;
    const at = exact.filter((v) => v <= bound + 1e-12).length / exact.length;
    assert(below <= p + tol && at >= p - tol, `bound ${bound}: exact CDF ${below}..${at} vs ${p}`);
  }
}

Deno.test("classification leaderboard: balanced accuracy, accuracy, AUROC, Δ and ranks against references", async () => {
  const { spec, grid, records } = await handMade();
  const board = buildLeaderboard(grid.cells, records, spec.statistics);
  assertEquals(board.entries, []);
  assertEquals(board.missing, []);
  const entries = board.classification!.entries;
  assertEquals(board.classification!.segmentation, false);
  assertEquals(entries.map((e) => [e.method, e.rank, e.cases, e.seeds]), [
    ["m1", 1, 5, [0, 1]],
    ["scratch", 2, 5, [0, 1]],
  ]);
  for (const e of entries) {
    const m = e.method;
    const ba = (balancedAccuracyRef(predicted[m][0], labels) + balancedAccuracyRef(predicted[m][1], labels)) /
      2;
    assert(Math.abs(e.balancedAccuracy.mean - ba) < 1e-15, `${m}: ${e.balancedAccuracy.mean} vs ${ba}`);
    const right = predicted[m].flat().filter((p, j) => p === labels[j % 5]).length;
    assert(Math.abs(e.accuracy.mean - right / 10) < 1e-15);
    const roc = (aurocRef(m, 0) + aurocRef(m, 1)) / 2;
    assert(Math.abs(e.auroc!.mean - roc) < 1e-12, `${m}: AUROC ${e.auroc!.mean} vs ${roc}`);
    checkAgainstExact(
      e.auroc!,
      exactStratified((rows, cols) => resampledAurocRef(m, rows, cols)),
      0.9,
      20000,
    );
    assertEquals(e.perSeed.map((p) => p.seed), [0, 1]);
    for (const p of e.perSeed) {
      const pred = predicted[m][p.seed];
      assert(Math.abs(p.balancedAccuracy - balancedAccuracyRef(pred, labels)) < 1e-15);
      assert(Math.abs(p.accuracy - pred.filter((c, i) => c === labels[i]).length / 5) < 1e-15);
      assert(Math.abs(p.auroc! - aurocRef(m, p.seed)) < 1e-12, `${m} seed ${p.seed}: ${p.auroc}`);
    }
    checkAgainstExact(
      e.balancedAccuracy,
      exactDistribution((rows, cols) => pooledRef(m, rows, cols)),
      0.9,
      20000,
    );
  }
  // hand check of one value: m1 seed 0 recalls a 2/3, b 1, c 1; seed 1 a 1, b 1, c 0 → (8/9 + 2/3) / 2
  assert(Math.abs(entries[0].balancedAccuracy.mean - 7 / 9) < 1e-15);
  const delta = entries[0].deltaToScratch!;
  const deltaRef = (rows: number[], cols: number[]) =>
    pooledRef("m1", rows, cols) - pooledRef("scratch", rows, cols);
  assert(Math.abs(delta.mean - deltaRef([0, 1], [0, 1, 2, 3, 4])) < 1e-15);
  checkAgainstExact(delta, exactDistribution(deltaRef), 0.9, 20000);
  assertEquals(entries[1].deltaToScratch, undefined);
  const aurocDelta = entries[0].aurocDeltaToScratch!;
  const aurocDeltaRef = (rows: number[], cols: number[]) =>
    resampledAurocRef("m1", rows, cols) - resampledAurocRef("scratch", rows, cols);
  assert(Math.abs(aurocDelta.mean - aurocDeltaRef([0, 1], [0, 1, 2, 3, 4])) < 1e-12);
  checkAgainstExact(aurocDelta, exactStratified(aurocDeltaRef), 0.9, 20000);
  assertEquals(entries[1].aurocDeltaToScratch, undefined);

  const md = leaderboardMarkdown(board, "cls", grid.cells.length);
  assert(!md.includes("Mean Dice"), "no segmentation datasets: no Dice explanation");
  assert(md.includes("## tumour (classification), 100% of the training labels"), md);
  assert(md.includes(`| 1 | m1 | a | ${(7 / 9).toFixed(3)} | [`), md);
  const csv = classificationResultsCsv(grid.cells, records).trim().split("\n");
  assertEquals(csv.length, 1 + 4 * 5);
  assert(csv[1].startsWith("tumour,scratch,a,scratch,1,0,0,case4,c,a,0,a=0.6 b=0.2 c=0.2,"), csv[1]);
  assertEquals(resultsCsv(grid.cells, records).trim().split("\n").length, 1, "no Dice rows");
});

Deno.test("crossed bootstrap of a statistic draws as the mean's bootstrap does", () => {
  const values = [[0.1, 0.7, 0.4, 0.9], [0.3, 0.8, 0.2, 0.6], [0.5, 0.1, 0.4, 0.3]];
  const options = { confidence: 0.95, replicates: 300, seed: 5 };
  const mean = crossedBootstrapStatistic(3, 4, (rows, columns) => {
    let sum = 0;
    for (const r of rows) for (const c of columns) sum += values[r][c];
    return sum / 12;
  }, options);
  const reference = bootstrapReplicates(values, options);
  for (let b = 0; b < 300; b++) assert(Math.abs(mean[b] - reference[b]) < 1e-15);
  assertThrows(() => crossedBootstrapStatistic(2, 2, () => NaN, options), Error, "not finite");
});

Deno.test("a mixed spec: segmentation entries as without the classification dataset; both explained", async () => {
  const { records: clsRecords } = await handMade();
  const segmentationOnly = {
    name: "mix",
    architectures: ["a"],
    datasets: [{ name: "hippo", path: "/h" }],
    seeds: [0, 1],
    methods: [{ name: "m1", checkpoint: "/c.safetensors", arch: "a" }],
    statistics: { replicates: 200 },
  };
  const mixed = {
    ...segmentationOnly,
    datasets: [...segmentationOnly.datasets, classificationSpec.datasets[0]],
    classify: classificationSpec.classify,
  };
  const dice = (cell: { method: string; seed: number }, i: number) =>
    0.5 + 0.1 * i * (cell.method === "m1" ? 1.2 : 1) - 0.03 * cell.seed;
  const board = async (value: unknown) => {
    const spec = parseBenchmarkSpec(value, "s", "/");
    const grid = await expandGrid(spec);
    const records = new Map<string, CellRecord>();
    for (const cell of grid.cells) {
      const own = clsRecords.get(cell.key);
      if (own) records.set(cell.key, own);
      else if (cell.dataset.task === undefined) {
        records.set(cell.key, {
          key: cell.key,
          cell,
          finishedAt: "",
          result: {
            cases: [0, 1, 2].map((i) => ({ case: `h${i}`, dice: dice(cell, i) })),
            provenance: { core: "0.2.0", plugins: {} },
            seconds: 1,
          },
        });
      }
    }
    return { board: buildLeaderboard(grid.cells, records, spec.statistics), grid };
  };
  const alone = await board(segmentationOnly);
  const both = await board(mixed);
  assertEquals(both.board.entries, alone.board.entries);
  assertEquals(alone.board.classification, undefined);
  assertEquals(both.board.classification!.segmentation, true);
  // the classification records were made for the other spec's cells: same keys (names and settings agree)
  assertEquals(both.board.classification!.entries.length, 2);
  const md = leaderboardMarkdown(both.board, "mix", both.grid.cells.length);
  assert(md.includes("Mean Dice (foreground classes") && md.includes("ranked by balanced accuracy"), md);
  assert(md.indexOf("## hippo, 100%") < md.indexOf("## tumour (classification)"), md);
});

Deno.test("classification Δ: entries whose class lists differ (labels index other classes) are not paired", () => {
  const design = (classes: string[]): ClassificationDesign => ({
    seeds: [0, 1],
    cases: ["a", "b", "c", "d"],
    classes,
    labels: [0, 1, 0, 1],
    correct: [[1, 0, 1, 1], [0, 1, 1, 0]],
    probabilities: [0, 1].map(() => [0, 1, 2, 3].map(() => [0.5, 0.5])),
  });
  const statistics = { replicates: 50, confidence: 0.95, seed: 1 };
  assert(pairedBalancedAccuracyDelta(design(["x", "y"]), design(["x", "y"]), statistics) !== undefined);
  assertEquals(pairedBalancedAccuracyDelta(design(["x", "y"]), design(["y", "x"]), statistics), undefined);
});
