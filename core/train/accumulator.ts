/**
 * Sums of the loss and of each method metric over a logging interval, kept on the GPU so that a step
 * never waits for a readback; read (and reset) when a log line is due. Its state goes into checkpoints,
 * so a resumed run logs exactly the curve of an uninterrupted one.
 *
 * @module
 */
import type { Gpu } from "../gpu/mod.ts";
import { addInPlace, cast, fillInPlace, keep, reshape, type Tensor, zeros } from "../tensor/mod.ts";

/** Saved state of an accumulator: per name, the host sum and the number of values added. */
export interface AccumulatorState {
  /** Sums by name. */
  sums: Record<string, number>;
  /** Values added by name. */
  counts: Record<string, number>;
}

/** GPU sums by name. */
export class MetricAccumulator {
  readonly #gpu: Gpu;
  readonly #sums = new Map<string, Tensor>();
  readonly #counts = new Map<string, number>();

  /** An empty accumulator on `gpu`. */
  constructor(gpu: Gpu) {
    this.#gpu = gpu;
  }

  /** Adds a scalar tensor (shape [] or [1]) to `name`'s sum; records GPU work only. */
  add(name: string, value: Tensor): void {
    if (value.size !== 1) {
      throw new RangeError(`metric "${name}" must be a scalar, got shape [${value.shape}]`);
    }
    let sum = this.#sums.get(name);
    if (!sum) {
      sum = keep(zeros([1], { gpu: this.#gpu }));
      this.#sums.set(name, sum);
    }
    const scalar = value.shape.length === 1 ? value : reshape(value, [1]);
    addInPlace(sum, scalar.dtype === "f32" ? scalar : cast(scalar, "f32"));
    this.#counts.set(name, (this.#counts.get(name) ?? 0) + 1);
  }

  /** Means by name since the last reset (reads the GPU). */
  async means(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const [name, sum] of this.#sums) {
      const n = this.#counts.get(name) ?? 0;
      if (n > 0) out[name] = (await sum.toArray())[0] / n;
    }
    return out;
  }

  /** Zeroes every sum and count. */
  reset(): void {
    for (const sum of this.#sums.values()) fillInPlace(sum, 0);
    this.#counts.clear();
  }

  /** The state to checkpoint (reads the GPU). */
  async exportState(): Promise<AccumulatorState> {
    const state: AccumulatorState = { sums: {}, counts: {} };
    for (const [name, sum] of this.#sums) {
      state.sums[name] = (await sum.toArray())[0];
      state.counts[name] = this.#counts.get(name) ?? 0;
    }
    return state;
  }

  /** Restores a checkpointed state. */
  importState(state: AccumulatorState): void {
    this.reset();
    for (const [name, value] of Object.entries(state.sums)) {
      let sum = this.#sums.get(name);
      if (!sum) {
        sum = keep(zeros([1], { gpu: this.#gpu }));
        this.#sums.set(name, sum);
      }
      sum.write([value]);
      this.#counts.set(name, state.counts[name] ?? 0);
    }
  }

  /** Frees the GPU sums. */
  dispose(): void {
    for (const sum of this.#sums.values()) sum.dispose();
    this.#sums.clear();
  }
}
