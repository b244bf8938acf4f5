/**
 * The results folder's finished-work records: one JSON file per finished cell (`cells/<key>.json`) and per
 * finished pretraining (`pretrain/<key>.json`), each written atomically (temporary file, then rename), so
 * a benchmark killed at any moment leaves only whole records and the next run skips exactly those.
 *
 * @module
 */
import { join } from "node:path";
import type { Cell, PretrainJob } from "./grid.ts";

/** Dice of one evaluated test case. */
export interface CaseScore {
  /** The case id (file name without channel suffix and extension). */
  case: string;
  /** Mean Dice over the foreground classes (nnU-Net's handling of classes empty in both: see the runner). */
  dice: number;
  /** Dice per foreground class name; null for a class empty in both reference and prediction. */
  perClass?: Record<string, number | null>;
}

/** Software and hardware a result was computed with. */
export interface Provenance {
  /** voxssl core version. */
  core: string;
  /** Plugin name → version, for every plugin the cell used. */
  plugins: Record<string, string>;
  /** The git commit of voxssl, if it ran from a checkout. */
  commit?: string;
  /** The WebGPU adapter, in words (vendor, architecture, device, backend). */
  adapter?: string;
}

/** One classified test case (class indices into the result's `classes`). */
export interface ClassifiedCaseScore {
  /** The case id. */
  case: string;
  /** The reference class index. */
  label: number;
  /** The predicted class index (the most probable class). */
  predicted: number;
  /** Softmax probabilities, one per class. */
  probabilities: number[];
}

/** What a cell runner returns: the test cases' scores and how they were made. */
export type CellResult = SegmentationCellResult | ClassificationCellResult;

/** A segmentation cell's result: Dice per test case. */
export interface SegmentationCellResult extends CellResultCommon {
  /** Absent in segmentation records (they predate classification cells). */
  task?: undefined;
  cases: CaseScore[];
}

/** A classification cell's result: the predicted class and probabilities of every test case. */
export interface ClassificationCellResult extends CellResultCommon {
  task: "classification";
  /** Class names; the cases' indices index this list. */
  classes: string[];
  cases: ClassifiedCaseScore[];
}

/** What every cell result has besides its cases. */
export interface CellResultCommon {
  provenance: Provenance;
  /** Wall time of the cell, seconds. */
  seconds: number;
  /** Where the cell's run folders are (fine-tuning run, predictions, evaluation). */
  artifacts?: Record<string, string>;
}

/** What a pretraining returns. */
export interface PretrainResult {
  /** The checkpoint the job's cells fine-tune from. */
  checkpoint: string;
  provenance: Provenance;
  seconds: number;
}

/** A finished cell as stored. */
export interface CellRecord {
  key: string;
  cell: Cell;
  result: CellResult;
  /** ISO time the cell finished. */
  finishedAt: string;
}

/** A finished pretraining as stored. */
export interface PretrainRecord {
  key: string;
  job: PretrainJob;
  result: PretrainResult;
  finishedAt: string;
}

/** Writes JSON atomically: a temporary file in the same folder, then a rename. */
export async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  await writeTextAtomic(path, JSON.stringify(value, null, 2) + "\n");
}

/** Writes text atomically: a temporary file in the same folder, then a rename. */
export async function writeTextAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  await Deno.writeTextFile(tmp, text);
  await Deno.rename(tmp, path);
}

async function readRecords<T extends { key: string }>(dir: string): Promise<Map<string, T>> {
  const records = new Map<string, T>();
  let entries: Deno.DirEntry[];
  try {
    entries = await Array.fromAsync(Deno.readDir(dir));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return records;
    throw error;
  }
  for (const entry of entries) {
    if (!entry.isFile || !/^[0-9a-f]{16}\.json$/.test(entry.name)) continue; // temporaries are skipped
    const path = join(dir, entry.name);
    let record: T;
    try {
      record = JSON.parse(await Deno.readTextFile(path));
    } catch (error) {
      throw new Error(
        `${path}: not a readable result record (${(error as Error).message}); delete it to redo`,
      );
    }
    if (record.key !== entry.name.slice(0, 16)) throw new Error(`${path}: its key is ${record.key}`);
    records.set(record.key, record);
  }
  return records;
}

/** The finished-work records of a results folder. */
export class ResultsStore {
  /** The results folder. */
  readonly dir: string;

  /** A store over `dir` (created on first write). */
  constructor(dir: string) {
    this.dir = dir;
  }

  /** Where a cell's record lives. */
  cellPath(key: string): string {
    return join(this.dir, "cells", `${key}.json`);
  }

  /** Where a pretraining's record lives. */
  pretrainPath(key: string): string {
    return join(this.dir, "pretrain", `${key}.json`);
  }

  /** A folder for a cell's or job's working files (run folders), stable across runs so stages resume. */
  workDir(key: string): string {
    return join(this.dir, "work", key);
  }

  /** Every finished cell, by key. */
  cells(): Promise<Map<string, CellRecord>> {
    return readRecords<CellRecord>(join(this.dir, "cells"));
  }

  /** Every finished pretraining, by key. */
  pretrainings(): Promise<Map<string, PretrainRecord>> {
    return readRecords<PretrainRecord>(join(this.dir, "pretrain"));
  }

  /** Records a finished cell (atomically). */
  async saveCell(record: CellRecord): Promise<void> {
    await Deno.mkdir(join(this.dir, "cells"), { recursive: true });
    await writeJsonAtomic(this.cellPath(record.key), record);
  }

  /** Records a finished pretraining (atomically). */
  async savePretraining(record: PretrainRecord): Promise<void> {
    await Deno.mkdir(join(this.dir, "pretrain"), { recursive: true });
    await writeJsonAtomic(this.pretrainPath(record.key), record);
  }
}
