/**
 * The leaderboard of classification datasets: finished classification cells grouped into entries
 * (method × architecture) per dataset and label fraction, ranked by balanced accuracy.
 *
 * Balanced accuracy (mean recall over the classes present) is the primary metric because the benchmark's
 * classification datasets are often imbalanced, where plain accuracy rewards predicting the majority
 * class; it is also the metric a label-fraction study can compare across fractions (stratified subsets keep
 * the class shares). It is not a mean of per-case values (each case counts 1 / (its class's size)), so its
 * interval recomputes it on every resample of the same crossed seeds × cases bootstrap that Dice uses
 * (bootstrap.ts's {@link crossedBootstrapStatistic}: the same draws), pooling the resampled seeds'
 * predictions per class. With every seed scored on the same cases, the full-design value is the mean over
 * seeds of each seed's balanced accuracy. Δ to scratch recomputes both entries' balanced accuracy on each
 * resample of the seeds and cases they share and takes the difference (paired). Accuracy is a per-case
 * mean (1 right, 0 wrong) and gets {@link crossedBootstrap} itself. AUROC (one-vs-rest macro, classify's
 * definition) is the mean over seeds of each seed's AUROC; its interval and Δ come from the bootstrap with
 * the cases stratified by class (classification_auroc.ts), since a plain resample can lack a class.
 *
 * @module
 */
import { auroc as aurocOf } from "../classification/metrics.ts";
import { aurocInterval, pairedAurocDelta } from "./classification_auroc.ts";
import {
  type BootstrapOptions,
  crossedBootstrap,
  crossedBootstrapStatistic,
  type Interval,
  percentileInterval,
} from "./bootstrap.ts";
import type { Cell } from "./grid.ts";
import type { CellRecord, ClassificationCellResult } from "./results_store.ts";
import { SCRATCH } from "./spec.ts";

/** One classification leaderboard entry on one dataset at one label fraction. */
export interface ClassificationEntryScore {
  method: string;
  arch: string;
  dataset: string;
  labelFraction: number;
  /** Seeds with a finished cell. */
  seeds: number[];
  /** Test cases every one of those seeds was scored on. */
  cases: number;
  /** Class names. */
  classes: string[];
  /** Balanced accuracy (the ranking metric) with its interval. */
  balancedAccuracy: Interval;
  /** Accuracy with its interval. */
  accuracy: Interval;
  /**
   * Mean over seeds of the AUROC (binary, or one-vs-rest macro) with its stratified-bootstrap interval;
   * null where undefined (fewer than two classes among the test cases).
   */
  auroc: Interval | null;
  /** Each seed's scores on the entry's cases (the points of the per-seed plot). */
  perSeed: SeedScore[];
  /** 1 = best balanced accuracy on this dataset and fraction (ties share the better rank). */
  rank: number;
  /** Balanced accuracy minus scratch's on the seeds and cases both have; absent for scratch. */
  deltaToScratch?: Interval;
  /** AUROC minus scratch's, paired on the seeds and cases both have; absent for scratch or where undefined. */
  aurocDeltaToScratch?: Interval;
}

/** One seed's scores of an entry. */
export interface SeedScore {
  seed: number;
  balancedAccuracy: number;
  accuracy: number;
  /** Null where undefined. */
  auroc: number | null;
}

/** The seeds × cases design of one entry: correctness, labels and probabilities on shared cases. */
export interface ClassificationDesign {
  seeds: number[];
  cases: string[];
  classes: string[];
  /** Reference class per case (column). */
  labels: number[];
  /** 1 where seed i predicted case j right, else 0. */
  correct: number[][];
  /** Probabilities [seed][case][class]. */
  probabilities: number[][][];
}

/** The design of an entry's finished records (sorted by seed; the cases every seed was scored on). */
export function classificationDesign(records: CellRecord[]): ClassificationDesign {
  const sorted = [...records].sort((a, b) => a.cell.seed - b.cell.seed);
  const results = sorted.map((r) => r.result as ClassificationCellResult);
  let cases: string[] | undefined;
  for (const r of results) {
    const ids = new Set(r.cases.map((c) => c.case));
    cases = cases === undefined ? [...ids].sort() : cases.filter((id) => ids.has(id));
  }
  const columns = cases ?? [];
  const classes = results[0]?.classes ?? [];
  const labels: number[] = [];
  const byCase = results.map((r) => new Map(r.cases.map((c) => [c.case, c])));
  for (const [i, r] of results.entries()) {
    if (r.classes.join("\n") !== classes.join("\n")) {
      throw new Error(
        `cell ${sorted[i].key}: classes ${r.classes.join(", ")} differ from seed ${sorted[0].cell.seed}'s ` +
          `(${classes.join(", ")}); delete the stale record to redo it`,
      );
    }
  }
  for (const id of columns) {
    const label = byCase[0].get(id)!.label;
    byCase.forEach((m, i) => {
      if (m.get(id)!.label !== label) {
        throw new Error(`cell ${sorted[i].key}: case ${id}'s label differs between seeds`);
      }
    });
    labels.push(label);
  }
  return {
    seeds: sorted.map((r) => r.cell.seed),
    cases: columns,
    classes,
    labels,
    correct: byCase.map((m) => columns.map((id) => (m.get(id)!.predicted === m.get(id)!.label ? 1 : 0))),
    probabilities: byCase.map((m) => columns.map((id) => m.get(id)!.probabilities)),
  };
}

/**
 * Balanced accuracy of the rows `rows` and columns `columns` (indices, repeats allowed) of a design:
 * per class, right predictions over scored predictions, pooled over the drawn seeds and cases; the mean
 * over the classes that occur among the drawn cases.
 */
export function pooledBalancedAccuracy(
  correct: number[][],
  labels: number[],
  classes: number,
  rows: ArrayLike<number>,
  columns: ArrayLike<number>,
): number {
  const right = new Float64Array(classes);
  const total = new Float64Array(classes);
  for (let j = 0; j < columns.length; j++) total[labels[columns[j]]] += rows.length;
  for (let i = 0; i < rows.length; i++) {
    const row = correct[rows[i]];
    for (let j = 0; j < columns.length; j++) right[labels[columns[j]]] += row[columns[j]];
  }
  let sum = 0;
  let present = 0;
  for (let k = 0; k < classes; k++) {
    if (total[k] === 0) continue;
    sum += right[k] / total[k];
    present++;
  }
  return sum / present;
}

const all = (n: number) => Int32Array.from({ length: n }, (_, i) => i);

function balancedAccuracyInterval(d: ClassificationDesign, statistics: BootstrapOptions): Interval {
  const k = d.classes.length;
  const estimate = pooledBalancedAccuracy(d.correct, d.labels, k, all(d.seeds.length), all(d.cases.length));
  const replicates = crossedBootstrapStatistic(
    d.seeds.length,
    d.cases.length,
    (rows, columns) => pooledBalancedAccuracy(d.correct, d.labels, k, rows, columns),
    statistics,
  );
  return percentileInterval(estimate, replicates, statistics.confidence);
}

function perSeedScores(d: ClassificationDesign): SeedScore[] {
  const k = d.classes.length;
  const columns = all(d.cases.length);
  return d.seeds.map((seed, i) => {
    const auroc = aurocOf(d.probabilities[i].flat(), d.labels, k).auroc;
    return {
      seed,
      balancedAccuracy: pooledBalancedAccuracy(d.correct, d.labels, k, [i], columns),
      accuracy: d.correct[i].reduce((a, b) => a + b, 0) / d.cases.length,
      auroc: Number.isFinite(auroc) ? auroc : null,
    };
  });
}

/** Both designs restricted to the seeds and cases they share (rows and columns aligned). */
function sharedDesigns(
  own: ClassificationDesign,
  base: ClassificationDesign,
): { own: ClassificationDesign; base: ClassificationDesign } | undefined {
  // labels are indices into the class list: entries whose lists differ (a changed CSV) are not paired
  if (own.classes.join("\u0000") !== base.classes.join("\u0000")) return undefined;
  const seeds = own.seeds.filter((s) => base.seeds.includes(s));
  const cases = own.cases.filter((c) => base.cases.includes(c));
  if (seeds.length === 0 || cases.length === 0) return undefined;
  const restrict = (d: ClassificationDesign): ClassificationDesign => {
    const rows = seeds.map((s) => d.seeds.indexOf(s));
    const columns = cases.map((c) => d.cases.indexOf(c));
    return {
      seeds,
      cases,
      classes: d.classes,
      labels: columns.map((j) => d.labels[j]),
      correct: rows.map((i) => columns.map((j) => d.correct[i][j])),
      probabilities: rows.map((i) => columns.map((j) => d.probabilities[i][j])),
    };
  };
  return { own: restrict(own), base: restrict(base) };
}

/** The paired Δ of balanced accuracy (own − base) over the seeds and cases both entries have. */
export function pairedBalancedAccuracyDelta(
  own: ClassificationDesign,
  base: ClassificationDesign,
  statistics: BootstrapOptions,
): Interval | undefined {
  const shared = sharedDesigns(own, base);
  if (!shared) return undefined;
  const { seeds, cases, labels } = shared.own;
  const a = shared.own.correct;
  const b = shared.base.correct;
  const k = own.classes.length;
  const delta = (rows: ArrayLike<number>, columns: ArrayLike<number>) =>
    pooledBalancedAccuracy(a, labels, k, rows, columns) - pooledBalancedAccuracy(b, labels, k, rows, columns);
  const replicates = crossedBootstrapStatistic(seeds.length, cases.length, delta, statistics);
  return percentileInterval(delta(all(seeds.length), all(cases.length)), replicates, statistics.confidence);
}

/**
 * The paired Δ of AUROC (own − base) over the seeds and cases both entries have, from the stratified
 * bootstrap (classification_auroc.ts); undefined where they share nothing or AUROC is undefined.
 */
export function pairedAurocDeltaOf(
  own: ClassificationDesign,
  base: ClassificationDesign,
  statistics: BootstrapOptions,
): Interval | undefined {
  const shared = sharedDesigns(own, base);
  if (!shared) return undefined;
  const { labels, classes } = shared.own;
  return pairedAurocDelta(
    shared.own.probabilities,
    shared.base.probabilities,
    labels,
    classes.length,
    statistics,
  ) ??
    undefined;
}

/**
 * The classification entries of the finished records of `cells` (classification cells only), ranked per
 * dataset and label fraction.
 */
export function buildClassificationEntries(
  cells: Cell[],
  records: Map<string, CellRecord>,
  statistics: BootstrapOptions,
): ClassificationEntryScore[] {
  const groups = new Map<string, { cell: Cell; records: CellRecord[] }>();
  for (const cell of cells) {
    const record = records.get(cell.key);
    if (!record || record.result.cases.length === 0) continue;
    const key = `${cell.method}\n${cell.arch}\n${cell.dataset.name}\n${cell.labelFraction}`;
    const group = groups.get(key) ?? { cell, records: [] };
    group.records.push({ ...record, cell });
    groups.set(key, group);
  }
  const entries: ClassificationEntryScore[] = [];
  const designs = new Map<string, ClassificationDesign>();
  for (const [key, { cell, records: group }] of groups) {
    const design = classificationDesign(group);
    if (design.cases.length === 0) continue; // seeds scored on disjoint cases: nothing comparable
    designs.set(key, design);
    entries.push({
      method: cell.method,
      arch: cell.arch,
      dataset: cell.dataset.name,
      labelFraction: cell.labelFraction,
      seeds: design.seeds,
      cases: design.cases.length,
      classes: design.classes,
      balancedAccuracy: balancedAccuracyInterval(design, statistics),
      accuracy: crossedBootstrap(design.correct, statistics),
      auroc: aurocInterval(design.probabilities, design.labels, design.classes.length, statistics),
      perSeed: perSeedScores(design),
      rank: 0,
    });
  }
  for (const entry of entries) {
    const at = `${entry.arch}\n${entry.dataset}\n${entry.labelFraction}`;
    if (entry.method !== SCRATCH) {
      const base = designs.get(`${SCRATCH}\n${at}`);
      if (base) {
        const own = designs.get(`${entry.method}\n${at}`)!;
        entry.deltaToScratch = pairedBalancedAccuracyDelta(own, base, statistics);
        const aurocDelta = pairedAurocDeltaOf(own, base, statistics);
        if (aurocDelta) entry.aurocDeltaToScratch = aurocDelta;
      }
    }
    const rivals = entries.filter((e) =>
      e.dataset === entry.dataset && e.labelFraction === entry.labelFraction
    );
    entry.rank = 1 + rivals.filter((e) => e.balancedAccuracy.mean > entry.balancedAccuracy.mean).length;
  }
  return entries.sort((a, b) =>
    a.labelFraction - b.labelFraction || a.dataset.localeCompare(b.dataset) || a.rank - b.rank ||
    a.method.localeCompare(b.method) || a.arch.localeCompare(b.arch)
  );
}

const f3 = (x: number) => x.toFixed(3);
const signed = (x: number) => (x >= 0 ? "+" : "−") + Math.abs(x).toFixed(3);
const percent = (f: number) => `${+(f * 100).toFixed(2)}%`;
const cell = (s: string) => s.replace(/\|/g, "\\|");

/** The leaderboard's explanation of the classification tables (Markdown lines). */
export function classificationLeaderboardIntro(statistics: BootstrapOptions): string[] {
  const level = `${+(statistics.confidence * 100).toFixed(2)}%`;
  return [
    `Classification datasets are ranked by balanced accuracy (mean recall over the classes present, so ` +
    `a majority-class guess scores 1/classes), with ${level} confidence intervals from the same crossed ` +
    `bootstrap over seeds and test cases (${statistics.replicates} replicates, seed ${statistics.seed}), ` +
    `balanced accuracy recomputed on each resample; Δ is paired to scratch the same way. Accuracy has the ` +
    `same bootstrap. AUROC (one-vs-rest macro) is the mean over seeds; its interval and paired Δ come from ` +
    `the same bootstrap with the test cases resampled within each true class (stratified: every class ` +
    `keeps its count, so AUROC exists on every resample), AUROC recomputed on each resample.`,
    "",
  ];
}

/** The classification tables (Markdown lines): one per label fraction and dataset. */
export function classificationLeaderboardTables(
  entries: ClassificationEntryScore[],
  statistics: BootstrapOptions,
): string[] {
  const level = `${+(statistics.confidence * 100).toFixed(2)}%`;
  const lines: string[] = [];
  const fractions = [...new Set(entries.map((e) => e.labelFraction))].sort((a, b) => a - b);
  for (const fraction of fractions) {
    const atFraction = entries.filter((e) => e.labelFraction === fraction);
    for (const dataset of [...new Set(atFraction.map((e) => e.dataset))]) {
      lines.push(
        `## ${cell(dataset)} (classification), ${percent(fraction)} of the training labels`,
        "",
        `| rank | method | architecture | balanced accuracy | ${level} CI | Δ to scratch | Δ ${level} CI | ` +
          `accuracy | ${level} CI | AUROC | ${level} CI | Δ AUROC | Δ ${level} CI | seeds | cases |`,
        "| ---: | --- | --- | ---: | --- | ---: | --- | ---: | --- | ---: | --- | ---: | --- | --- | ---: |",
      );
      for (const e of atFraction.filter((e) => e.dataset === dataset)) {
        const d = e.deltaToScratch;
        const b = e.balancedAccuracy;
        const a = e.auroc;
        const ad = e.aurocDeltaToScratch;
        lines.push(
          `| ${e.rank} | ${cell(e.method)} | ${cell(e.arch)} | ${f3(b.mean)} | [${f3(b.lower)}, ${
            f3(b.upper)
          }] | ` +
            `${d ? signed(d.mean) : "—"} | ${d ? `[${signed(d.lower)}, ${signed(d.upper)}]` : "—"} | ` +
            `${f3(e.accuracy.mean)} | [${f3(e.accuracy.lower)}, ${f3(e.accuracy.upper)}] | ` +
            `${a ? f3(a.mean) : "—"} | ${a ? `[${f3(a.lower)}, ${f3(a.upper)}]` : "—"} | ` +
            `${ad ? signed(ad.mean) : "—"} | ${ad ? `[${signed(ad.lower)}, ${signed(ad.upper)}]` : "—"} | ` +
            `${e.seeds.join(", ")} | ${e.cases} |`,
        );
      }
      lines.push("");
    }
  }
  return lines;
}
