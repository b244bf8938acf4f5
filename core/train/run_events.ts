/**
 * Where a run's records go besides the progress line: metrics.jsonl, the TensorBoard event file (when
 * the config's `tensorboard` is on), and an optional observer (the CLI's progress display and run
 * report). The Trainer calls {@link recordMetrics} for every record and {@link notifyCheckpoint} after
 * every checkpoint; nothing here changes what the run computes.
 *
 * @module
 */
import { appendMetrics, type MetricsRecord } from "./metrics.ts";
import { metricsScalars } from "./tfevents.ts";
import type { Run } from "./trainer.ts";

/** Which checkpoint was just written: after an epoch, at the end, or at a stop request. */
export type CheckpointKind = "epoch" | "final" | "stopped";

/** Callbacks on a run's progress (see `TrainerOptions.observer`). */
export interface RunObserver {
  /** After each optimizer step (host side only: the GPU may still be working on it). */
  step?(run: Run): void;
  /** After each record is appended to metrics.jsonl. */
  record?(record: MetricsRecord, run: Run): void | Promise<void>;
  /** After each checkpoint (the run is between steps; the GPU may be used). */
  checkpoint?(kind: CheckpointKind, run: Run): void | Promise<void>;
}

/** Appends `record` to metrics.jsonl and the event file, then tells the observer. */
export async function recordMetrics(run: Run, record: MetricsRecord): Promise<void> {
  await appendMetrics(run.paths.metrics, [record]);
  await run.tfevents?.scalars(record.step, metricsScalars(record));
  await run.observer?.record?.(record, run);
}

/** One observer that calls each of `observers` in turn. */
export function combineObservers(...observers: (RunObserver | undefined)[]): RunObserver {
  const all = observers.filter((o): o is RunObserver => o !== undefined);
  return {
    step: (run) => all.forEach((o) => o.step?.(run)),
    async record(record, run) {
      for (const o of all) await o.record?.(record, run);
    },
    async checkpoint(kind, run) {
      for (const o of all) await o.checkpoint?.(kind, run);
    },
  };
}

/** Tells the observer that a checkpoint was written. */
export async function notifyCheckpoint(run: Run, kind: CheckpointKind): Promise<void> {
  await run.observer?.checkpoint?.(kind, run);
}

/**
 * Wall-clock seconds the steps of the current logging interval waited for their batches: the Trainer
 * wraps each `batch()` call in {@link DataWaitClock.time} and reads the sum when it logs.
 */
export class DataWaitClock {
  #seconds = 0;

  /** Awaits `batch`, adding the time it took. */
  async time<T>(batch: () => Promise<T>): Promise<T> {
    const start = performance.now();
    try {
      return await batch();
    } finally {
      this.#seconds += (performance.now() - start) / 1000;
    }
  }

  /** The seconds summed since the last call, and resets. */
  take(): number {
    const s = this.#seconds;
    this.#seconds = 0;
    return s;
  }
}
