/**
 * The leaderboard: finished cells grouped into entries (method × architecture) per dataset and label
 * fraction, with the mean Dice over seeds and test cases, its bootstrap confidence interval, the rank
 * within the dataset, and the difference to the from-scratch baseline of the same architecture (a paired
 * bootstrap over the seeds and cases both share), rendered as `leaderboard.md`.
 *
 * @module
 */
import { type BootstrapOptions, crossedBootstrap, type Interval } from "./bootstrap.ts";
import type { Cell } from "./grid.ts";
import {
  buildClassificationEntries,
  type ClassificationEntryScore,
  classificationLeaderboardIntro,
  classificationLeaderboardTables,
} from "./classification_leaderboard.ts";
import type { CellRecord, SegmentationCellResult } from "./results_store.ts";
import { isClassification, SCRATCH } from "./spec.ts";

/** One leaderboard entry on one dataset at one label fraction. */
export interface EntryScore {
  method: string;
  arch: string;
  dataset: string;
  labelFraction: number;
  /** Seeds with a finished cell. */
  seeds: number[];
  /** Test cases every one of those seeds was evaluated on (the columns of the score matrix). */
  cases: number;
  /** Mean Dice over seeds and cases, with its confidence interval. */
  dice: Interval;
  /** 1 = best mean Dice on this dataset and fraction (ties share the better rank). */
  rank: number;
  /** Mean Dice minus scratch's on the seeds and cases both have, with its interval; absent for scratch. */
  deltaToScratch?: Interval;
}

/** The whole leaderboard. */
export interface Leaderboard {
  /** Segmentation entries (mean Dice). */
  entries: EntryScore[];
  /**
   * Present when the grid has classification datasets: their entries (balanced accuracy), and whether
   * the grid has segmentation datasets too.
   */
  classification?: { entries: ClassificationEntryScore[]; segmentation: boolean };
  /** Cells of the grid without a finished result (the leaderboard is then partial). */
  missing: Cell[];
  statistics: BootstrapOptions;
}

function scoreMatrix(records: CellRecord[]): { seeds: number[]; cases: string[]; values: number[][] } {
  const sorted = [...records].sort((a, b) => a.cell.seed - b.cell.seed);
  let cases: string[] | undefined;
  for (const r of sorted) {
    const ids = new Set(r.result.cases.map((c) => c.case));
    cases = cases === undefined ? [...ids].sort() : cases.filter((id) => ids.has(id));
  }
  const columns = cases ?? [];
  return {
    seeds: sorted.map((r) => r.cell.seed),
    cases: columns,
    values: sorted.map((r) => {
      const dice = new Map((r.result as SegmentationCellResult).cases.map((c) => [c.case, c.dice]));
      return columns.map((id) => dice.get(id)!);
    }),
  };
}

function groupKey(arch: string, dataset: string, fraction: number): string {
  return `${arch}\n${dataset}\n${fraction}`;
}

/**
 * Builds the leaderboard from the grid's cells and the finished records (by cell key). Names come from the
 * grid (the current spec), results from the records.
 */
export function buildLeaderboard(
  cells: Cell[],
  records: Map<string, CellRecord>,
  statistics: BootstrapOptions,
): Leaderboard {
  const missing: Cell[] = [];
  const groups = new Map<
    string,
    { method: string; arch: string; dataset: string; fraction: number; records: CellRecord[] }
  >();
  for (const cell of cells) {
    const record = records.get(cell.key);
    if (!record || record.result.cases.length === 0) {
      missing.push(cell);
      continue;
    }
    if (isClassification(cell.dataset)) continue; // classification_leaderboard.ts
    const key = `${cell.method}\n${groupKey(cell.arch, cell.dataset.name, cell.labelFraction)}`;
    const group = groups.get(key) ?? {
      method: cell.method,
      arch: cell.arch,
      dataset: cell.dataset.name,
      fraction: cell.labelFraction,
      records: [],
    };
    group.records.push({ ...record, cell });
    groups.set(key, group);
  }
  const entries: EntryScore[] = [];
  const matrices = new Map<string, ReturnType<typeof scoreMatrix>>();
  for (const [key, group] of groups) {
    const matrix = scoreMatrix(group.records);
    if (matrix.cases.length === 0) continue; // seeds evaluated on disjoint cases: nothing comparable
    matrices.set(key, matrix);
    entries.push({
      method: group.method,
      arch: group.arch,
      dataset: group.dataset,
      labelFraction: group.fraction,
      seeds: matrix.seeds,
      cases: matrix.cases.length,
      dice: crossedBootstrap(matrix.values, statistics),
      rank: 0,
    });
  }
  for (const entry of entries) {
    const at = groupKey(entry.arch, entry.dataset, entry.labelFraction);
    if (entry.method !== SCRATCH) {
      const own = matrices.get(`${entry.method}\n${at}`)!;
      const base = matrices.get(`${SCRATCH}\n${at}`);
      if (base) entry.deltaToScratch = pairedDelta(own, base, statistics);
    }
    const rivals = entries.filter((e) =>
      e.dataset === entry.dataset && e.labelFraction === entry.labelFraction
    );
    entry.rank = 1 + rivals.filter((e) => e.dice.mean > entry.dice.mean).length;
  }
  entries.sort((a, b) =>
    a.labelFraction - b.labelFraction || a.dataset.localeCompare(b.dataset) || a.rank - b.rank ||
    a.method.localeCompare(b.method) || a.arch.localeCompare(b.arch)
  );
  const classificationCells = cells.filter((c) => isClassification(c.dataset));
  if (classificationCells.length === 0) return { entries, missing, statistics };
  return {
    entries,
    missing,
    statistics,
    classification: {
      entries: buildClassificationEntries(classificationCells, records, statistics),
      segmentation: classificationCells.length < cells.length,
    },
  };
}

function pairedDelta(
  own: ReturnType<typeof scoreMatrix>,
  base: ReturnType<typeof scoreMatrix>,
  statistics: BootstrapOptions,
): Interval | undefined {
  const seeds = own.seeds.filter((s) => base.seeds.includes(s));
  const cases = own.cases.filter((c) => base.cases.includes(c));
  if (seeds.length === 0 || cases.length === 0) return undefined;
  const pick = (m: ReturnType<typeof scoreMatrix>, seed: number) => {
    const row = m.values[m.seeds.indexOf(seed)];
    return cases.map((c) => row[m.cases.indexOf(c)]);
  };
  const diff = seeds.map((s) => {
    const a = pick(own, s);
    const b = pick(base, s);
    return a.map((v, j) => v - b[j]);
  });
  return crossedBootstrap(diff, statistics);
}

const f3 = (x: number) => x.toFixed(3);
const signed = (x: number) => (x >= 0 ? "+" : "−") + Math.abs(x).toFixed(3);
const percent = (f: number) => `${+(f * 100).toFixed(2)}%`;
/** Escapes a table cell (pipes would split it). */
const cell = (s: string) => s.replace(/\|/g, "\\|");

/** Renders the leaderboard as Markdown: one table per label fraction and dataset, then a summary. */
export function leaderboardMarkdown(board: Leaderboard, title: string, totalCells: number): string {
  const { confidence, replicates, seed } = board.statistics;
  const level = `${+(confidence * 100).toFixed(2)}%`;
  const segmentation = board.classification?.segmentation ?? true;
  const lines = [`# ${title}: leaderboard`, ""];
  if (segmentation) {
    lines.push(
      `Mean Dice (foreground classes averaged per case, then cases and seeds averaged) with ${level} ` +
        `confidence intervals: percentile bootstrap over seeds and test cases (crossed: each replicate ` +
        `resamples the seeds and the cases with replacement), ${replicates} replicates, seed ${seed}. ` +
        `Δ is the paired difference to the from-scratch baseline of the same architecture (same seeds, ` +
        `same cases). Rank 1 is the best mean Dice on the dataset at that label fraction.`,
      "",
    );
  }
  if (board.classification) {
    lines.push(...classificationLeaderboardIntro(board.statistics));
  }
  if (board.missing.length > 0) {
    lines.push(
      `**Partial:** ${totalCells - board.missing.length} of ${totalCells} cells finished; ` +
        `means use the finished ones.`,
      "",
    );
  }
  const fractions = [...new Set(board.entries.map((e) => e.labelFraction))].sort((a, b) => a - b);
  for (const fraction of fractions) {
    const atFraction = board.entries.filter((e) => e.labelFraction === fraction);
    const datasets = [...new Set(atFraction.map((e) => e.dataset))];
    for (const dataset of datasets) {
      lines.push(
        `## ${cell(dataset)}, ${percent(fraction)} of the training labels`,
        "",
        `| rank | method | architecture | mean Dice | ${level} CI | Δ to scratch | Δ ${level} CI | seeds | cases |`,
        "| ---: | --- | --- | ---: | --- | ---: | --- | --- | ---: |",
      );
      for (const e of atFraction.filter((e) => e.dataset === dataset)) {
        const d = e.deltaToScratch;
        lines.push(
          `| ${e.rank} | ${cell(e.method)} | ${cell(e.arch)} | ${f3(e.dice.mean)} | ` +
            `[${f3(e.dice.lower)}, ${f3(e.dice.upper)}] | ${d ? signed(d.mean) : "—"} | ` +
            `${d ? `[${signed(d.lower)}, ${signed(d.upper)}]` : "—"} | ${e.seeds.join(", ")} | ${e.cases} |`,
        );
      }
      lines.push("");
    }
    if (datasets.length > 1) {
      lines.push(
        `## Summary, ${percent(fraction)} of the training labels`,
        "",
        `| method | architecture | ${datasets.map(cell).join(" | ")} | mean rank |`,
        `| --- | --- | ${datasets.map(() => "---:").join(" | ")} | ---: |`,
      );
      const names = [...new Set(atFraction.map((e) => `${e.method}\n${e.arch}`))];
      const rows = names.map((n) => {
        const [method, arch] = n.split("\n");
        const scores = datasets.map((d) =>
          atFraction.find((e) => e.method === method && e.arch === arch && e.dataset === d)
        );
        const ranks = scores.filter((s) => s !== undefined).map((s) => s!.rank);
        return { method, arch, scores, meanRank: ranks.reduce((a, b) => a + b, 0) / ranks.length };
      }).sort((a, b) => a.meanRank - b.meanRank);
      for (const r of rows) {
        lines.push(
          `| ${cell(r.method)} | ${cell(r.arch)} | ${
            r.scores.map((s) => (s ? `${f3(s.dice.mean)} (${s.rank})` : "—")).join(" | ")
          } | ${r.meanRank.toFixed(2)} |`,
        );
      }
      lines.push("");
    }
  }
  if (board.classification) {
    lines.push(...classificationLeaderboardTables(board.classification.entries, board.statistics));
  }
  if (board.entries.length === 0 && !board.classification?.entries.length) {
    lines.push("No finished cells yet.", "");
  }
  return lines.join("\n");
}
