/**
 * The op family of the work being recorded right now: a cheap context that the op layer sets at the
 * entry of each op (`using _ = opFamily("conv")`) and that the buffer pool (memory timeline) and the
 * profiler read to attribute allocations and dispatches.
 *
 * The outermost op wins: a norm built from elementwise ops counts as "norm", and a backward rule runs in
 * the family of the op that recorded it (autograd restores it). The one exception is `cast`, which always
 * names its own family, so that the cast passes around mixed-precision ops stay visible.
 */

/** The families allocations and kernels are attributed to. */
export type OpFamily =
  | "conv"
  | "norm"
  | "attention"
  | "matmul"
  | "activation"
  | "elementwise"
  | "cast"
  | "reduce"
  | "layout"
  | "loss"
  | "optimizer"
  | "data"
  | "other";

/** Every family, in the order tables and charts list them. */
export const OP_FAMILIES: readonly OpFamily[] = [
  "conv",
  "norm",
  "attention",
  "matmul",
  "activation",
  "elementwise",
  "cast",
  "reduce",
  "layout",
  "loss",
  "optimizer",
  "data",
  "other",
];

let current: OpFamily | undefined;

const KEEP: Disposable = { [Symbol.dispose]() {} };
const CLEAR: Disposable = {
  [Symbol.dispose]() {
    current = undefined;
  },
};

/** The family set by the outermost op being recorded, or undefined outside every op. */
export function currentOpFamily(): OpFamily | undefined {
  return current;
}

/**
 * Enters `family` unless an op is already running (the outermost op wins). Use with `using`, so the
 * context ends with the op even when it throws: `using _family = opFamily("conv");`.
 */
export function opFamily(family: OpFamily): Disposable {
  if (current !== undefined) return KEEP;
  current = family;
  return CLEAR;
}

/** Enters `family` even inside another op (for passes that must stay visible, such as casts). */
export function forceOpFamily(family: OpFamily): Disposable {
  const previous = current;
  current = family;
  return {
    [Symbol.dispose]() {
      current = previous;
    },
  };
}

/** Runs `fn` in `family` (outermost wins, as {@link opFamily}). */
export function withOpFamily<T>(family: OpFamily | undefined, fn: () => T): T {
  if (family === undefined) return fn();
  using _family = opFamily(family);
  return fn();
}
