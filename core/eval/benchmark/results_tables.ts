/**
 * `results.csv` (one row per evaluated test case of every finished segmentation cell: tidy, for pandas or
 * R), `results_classification.csv` (the same for classification cells: label, prediction, probabilities) and
 * `results.json` (the spec, every finished cell and pretraining with its provenance, and the leaderboard).
 *
 * @module
 */
import type { Cell } from "./grid.ts";
import type { ClassificationEntryScore } from "./classification_leaderboard.ts";
import type { Leaderboard } from "./leaderboard.ts";
import type { CellRecord, PretrainRecord } from "./results_store.ts";
import type { BenchmarkSpec } from "./spec.ts";

/** Quotes a CSV field when it needs it (RFC 4180). */
export function csvField(value: string | number | undefined): string {
  const s = value === undefined ? "" : String(value);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** The columns of `results.csv`, in order. */
export const RESULTS_CSV_COLUMNS = [
  "dataset",
  "method",
  "arch",
  "encoder",
  "label_fraction",
  "seed",
  "split_seed",
  "case",
  "dice",
  "core_version",
  "plugins",
  "commit",
  "adapter",
  "cell_key",
] as const;

function encoderOf(cell: Cell): string {
  const e = cell.encoder;
  return e.kind === "scratch"
    ? "scratch"
    : e.kind === "checkpoint"
    ? `checkpoint:${e.checkpoint}`
    : `pretrain:${e.job}`;
}

function pluginsOf(p: CellRecord["result"]["provenance"]): string {
  return Object.entries(p.plugins).map(([n, v]) => `${n}@${v}`).sort().join(" ");
}

/** The leading columns of a result row: what the cell is (dataset … split_seed). */
function cellColumns(cell: Cell): (string | number)[] {
  return [
    cell.dataset.name,
    cell.method,
    cell.arch,
    encoderOf(cell),
    cell.labelFraction,
    cell.seed,
    cell.splitSeed,
  ];
}

/** The trailing columns of a result row: who computed it (core_version … cell_key). */
function provenanceColumns(p: CellRecord["result"]["provenance"], cell: Cell): (string | undefined)[] {
  return [p.core, pluginsOf(p), p.commit, p.adapter, cell.key];
}

/** `results.csv`: one row per test case of every finished segmentation cell (grid order). */
export function resultsCsv(cells: Cell[], records: Map<string, CellRecord>): string {
  const lines = [RESULTS_CSV_COLUMNS.join(",")];
  for (const cell of cells) {
    const record = records.get(cell.key);
    if (!record || record.result.task === "classification") continue;
    const p = record.result.provenance;
    for (const c of record.result.cases) {
      lines.push(
        [
          ...cellColumns(cell),
          c.case,
          c.dice,
          ...provenanceColumns(p, cell),
        ].map(csvField).join(","),
      );
    }
  }
  return lines.join("\n") + "\n";
}

/** The columns of `results_classification.csv`, in order. */
export const CLASSIFICATION_CSV_COLUMNS = [
  "dataset",
  "method",
  "arch",
  "encoder",
  "label_fraction",
  "seed",
  "split_seed",
  "case",
  "label",
  "predicted",
  "correct",
  "probabilities",
  "core_version",
  "plugins",
  "commit",
  "adapter",
  "cell_key",
] as const;

/**
 * `results_classification.csv`: one row per test case of every finished classification cell (grid
 * order); label and prediction as class names, probabilities as `class=p` pairs separated by spaces.
 */
export function classificationResultsCsv(cells: Cell[], records: Map<string, CellRecord>): string {
  const lines = [CLASSIFICATION_CSV_COLUMNS.join(",")];
  for (const cell of cells) {
    const record = records.get(cell.key);
    if (!record || record.result.task !== "classification") continue;
    const { classes, provenance: p } = record.result;
    for (const c of record.result.cases) {
      lines.push(
        [
          ...cellColumns(cell),
          c.case,
          classes[c.label],
          classes[c.predicted],
          c.predicted === c.label ? 1 : 0,
          c.probabilities.map((v, k) => `${classes[k]}=${v}`).join(" "),
          ...provenanceColumns(p, cell),
        ].map(csvField).join(","),
      );
    }
  }
  return lines.join("\n") + "\n";
}

/** What `results.json` holds. */
export interface ResultsDocument {
  name: string;
  /** ISO time of writing. */
  generatedAt: string;
  /** The process that wrote the file (cells may have been computed by earlier ones: see each record). */
  writer: { core: string; commit?: string };
  spec: BenchmarkSpec;
  /** Finished pretrainings. */
  pretraining: PretrainRecord[];
  /** Finished cells, with the grid's current names. */
  cells: CellRecord[];
  /** Keys of the grid's unfinished cells. */
  missing: string[];
  /** Segmentation entries. */
  leaderboard: Leaderboard["entries"];
  /** Classification entries (only when the spec has classification datasets). */
  classificationLeaderboard?: ClassificationEntryScore[];
  statistics: Leaderboard["statistics"];
}

/** Assembles `results.json`. */
export function resultsDocument(options: {
  spec: BenchmarkSpec;
  cells: Cell[];
  records: Map<string, CellRecord>;
  pretraining: PretrainRecord[];
  leaderboard: Leaderboard;
  writer: { core: string; commit?: string };
  now?: Date;
}): ResultsDocument {
  const { spec, cells, records, leaderboard } = options;
  return {
    name: spec.name,
    generatedAt: (options.now ?? new Date()).toISOString(),
    writer: options.writer,
    spec,
    pretraining: options.pretraining,
    cells: cells.filter((c) => records.has(c.key)).map((c) => ({ ...records.get(c.key)!, cell: c })),
    missing: leaderboard.missing.map((c) => c.key),
    leaderboard: leaderboard.entries,
    ...(leaderboard.classification ? { classificationLeaderboard: leaderboard.classification.entries } : {}),
    statistics: leaderboard.statistics,
  };
}
