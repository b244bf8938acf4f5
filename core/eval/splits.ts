/**
 * Train/test splits and label fractions of a downstream dataset, all seeded and independent of the
 * order in which cases were listed (ids are sorted first):
 *
 * - {@link seededSplit}: OpenMind's protocol, half the cases for training and half for testing;
 * - {@link readSplitFile}: a given split, as nnU-Net's `splits_final.json` (a list of folds
 *   `{ "train": [...], "val": [...] }`; the chosen fold's val cases are the test cases) or a simple
 *   `{ "train": [...], "test": [...] }`;
 * - {@link labelFraction}: the first ⌈f·n⌉ training cases of one seeded permutation, so the 5 % subset
 *   lies inside the 25 % subset, which lies inside the whole (the low-data regime compares like with like).
 *
 * @module
 */
import { createRng } from "../data/mod.ts";

/** Case ids for training and for testing. */
export interface CaseSplit {
  /** Training cases. */
  train: string[];
  /** Held-out test cases (never trained on). */
  test: string[];
}

/** The sorted ids in a seeded order (Fisher–Yates with the data side's keyed generator). */
export function seededOrder(ids: readonly string[], seed: number, key: string): string[] {
  const order = [...ids].sort();
  const rng = createRng(seed, key);
  for (let i = order.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

/** A seeded 50/50 split (the training half gets the odd case); at least one case on each side. */
export function seededSplit(ids: readonly string[], seed: number): CaseSplit {
  if (new Set(ids).size !== ids.length) throw new Error("seededSplit(): case ids are not unique");
  if (ids.length < 2) {
    throw new Error(`a train/test split needs at least 2 cases, the dataset has ${ids.length}`);
  }
  const order = seededOrder(ids, seed, "split");
  const nTrain = Math.ceil(order.length / 2);
  return { train: order.slice(0, nTrain).sort(), test: order.slice(nTrain).sort() };
}

/** The training cases of a label fraction f ∈ (0, 1]: ⌈f·n⌉ of them (at least one), nested across f. */
export function labelFraction(train: readonly string[], fraction: number, seed: number): string[] {
  if (!(fraction > 0 && fraction <= 1)) {
    throw new RangeError(`label fraction must be in (0, 1], got ${fraction}`);
  }
  const order = seededOrder(train, seed, "label-fraction");
  return order.slice(0, Math.max(1, Math.ceil(fraction * order.length - 1e-9))).sort();
}

function stringList(value: unknown, where: string): string[] {
  if (!Array.isArray(value) || value.some((v) => typeof v !== "string")) {
    throw new Error(`${where}: expected a list of case ids (strings)`);
  }
  return value as string[];
}

/**
 * Reads and validates a split file against the dataset's case ids: every id must exist, train and test
 * must not overlap and neither may be empty. `fold` picks the fold of an nnU-Net `splits_final.json`.
 */
export async function readSplitFile(path: string, ids: readonly string[], fold = 0): Promise<CaseSplit> {
  let data: unknown;
  try {
    data = JSON.parse(await Deno.readTextFile(path));
  } catch (error) {
    throw new Error(`split file ${path}: cannot read it as JSON (${(error as Error).message})`);
  }
  let split: CaseSplit;
  if (Array.isArray(data)) {
    if (!Number.isInteger(fold) || fold < 0 || fold >= data.length) {
      throw new Error(`split file ${path}: fold ${fold} asked for, the file has ${data.length} fold(s)`);
    }
    const entry = data[fold] as Record<string, unknown> | null;
    if (!entry || typeof entry !== "object") {
      throw new Error(`split file ${path}: fold ${fold} is not an object`);
    }
    split = {
      train: stringList(entry.train, `split file ${path}: [${fold}].train`),
      test: stringList(entry.val, `split file ${path}: [${fold}].val`),
    };
  } else if (data && typeof data === "object") {
    const entry = data as Record<string, unknown>;
    split = {
      train: stringList(entry.train, `split file ${path}: "train"`),
      test: stringList(entry.test, `split file ${path}: "test"`),
    };
  } else {
    throw new Error(
      `split file ${path}: expected nnU-Net's splits_final.json (a list of {train, val}) or {train, test}`,
    );
  }
  const known = new Set(ids);
  for (const side of ["train", "test"] as const) {
    if (split[side].length === 0) throw new Error(`split file ${path}: "${side}" is empty`);
    const unknown = split[side].filter((id) => !known.has(id));
    if (unknown.length > 0) {
      throw new Error(
        `split file ${path}: "${side}" names case(s) the dataset does not have: ${
          unknown.slice(0, 5).join(", ")
        }` +
          (unknown.length > 5 ? `, … (${unknown.length})` : ""),
      );
    }
    if (new Set(split[side]).size !== split[side].length) {
      throw new Error(`split file ${path}: "${side}" lists a case twice`);
    }
  }
  const overlap = split.train.filter((id) => split.test.includes(id));
  if (overlap.length > 0) {
    throw new Error(`split file ${path}: case(s) in both train and test: ${overlap.slice(0, 5).join(", ")}`);
  }
  return { train: [...split.train].sort(), test: [...split.test].sort() };
}
