/**
 * Stratified, seeded train/test splits and label fractions of a classification dataset. Each class is
 * split on its own (ids sorted, then one seeded permutation per class, as splits.ts does for the whole
 * set), so every class keeps its share on both sides: ⌈n_k/2⌉ of class k train, the rest test. A label
 * fraction f keeps ⌈f·n_k⌉ training cases of each class (at least one), nested across f like
 * segmentation's, so the low-data regime never drops a class.
 *
 * @module
 */
import { type CaseSplit, seededOrder } from "../splits.ts";

/** A case as splitting sees it. */
export interface LabelledId {
  /** Case id. */
  id: string;
  /** Class index. */
  classIndex: number;
}

function byClass(cases: readonly LabelledId[]): Map<number, string[]> {
  const groups = new Map<number, string[]>();
  for (const c of cases) {
    const list = groups.get(c.classIndex) ?? [];
    list.push(c.id);
    groups.set(c.classIndex, list);
  }
  return new Map([...groups].sort(([a], [b]) => a - b));
}

/**
 * A seeded 50/50 split within each class (the training half gets each class's odd case). Throws when an
 * id repeats or a class has a single case (it cannot be on both sides).
 */
export function stratifiedSplit(cases: readonly LabelledId[], seed: number): CaseSplit {
  if (new Set(cases.map((c) => c.id)).size !== cases.length) {
    throw new Error("stratifiedSplit(): case ids are not unique");
  }
  const train: string[] = [];
  const test: string[] = [];
  for (const [k, ids] of byClass(cases)) {
    if (ids.length < 2) {
      throw new Error(
        `class index ${k} has ${ids.length} case: a stratified train/test split needs at least 2 per class`,
      );
    }
    const order = seededOrder(ids, seed, `split-class-${k}`);
    const nTrain = Math.ceil(order.length / 2);
    train.push(...order.slice(0, nTrain));
    test.push(...order.slice(nTrain));
  }
  return { train: train.sort(), test: test.sort() };
}

/** The training ids of label fraction f ∈ (0, 1]: ⌈f·n_k⌉ per class (at least one), nested across f. */
export function stratifiedLabelFraction(
  train: readonly LabelledId[],
  fraction: number,
  seed: number,
): string[] {
  if (!(fraction > 0 && fraction <= 1)) {
    throw new RangeError(`label fraction must be in (0, 1], got ${fraction}`);
  }
  const kept: string[] = [];
  for (const [k, ids] of byClass(train)) {
    const order = seededOrder(ids, seed, `label-fraction-class-${k}`);
    kept.push(...order.slice(0, Math.max(1, Math.ceil(fraction * order.length - 1e-9))));
  }
  return kept.sort();
}
