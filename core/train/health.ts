/**
 * When a run stops on its own instead of training on uselessly: the loss diverged, or the optimizer
 * skipped too many steps in a row. Checked at every logged interval (`logEvery` steps), from the values
 * the log line reads back anyway, so it adds no GPU synchronisation.
 *
 * The rule (documented in docs/reliability.md):
 * - **non-finite loss**: the interval's mean training loss is NaN or ±Infinity → diverged;
 * - **loss far above its window**: the mean exceeds the median m of the last `divergenceWindow` logged
 *   means by more than `divergenceFactor` × |m| (once at least 3 are known; |m| so that losses below
 *   zero work too) → diverged;
 * - **skipped steps**: `maxConsecutiveSkippedSteps` steps in a row were skipped because their gradients
 *   were not finite (counted over whole logging intervals) → stop after saving a checkpoint (skipped
 *   steps leave the weights unchanged, so the checkpoint is good).
 *
 * A diverged run saves nothing: its weights are not worth keeping, and the previous checkpoint stays.
 *
 * @module
 */
import { z } from "zod";
import type { MetricsRecord } from "./metrics.ts";

/** When a run stops on its own (run config key `health`; see docs/reliability.md). */
export interface HealthSettings {
  /** Stop when the interval loss exceeds the window's median m by more than this × |m| (0: never). */
  divergenceFactor: number;
  /** Logged intervals in the running window. */
  divergenceWindow: number;
  /** Stop after this many consecutive skipped steps (0: never). */
  maxConsecutiveSkippedSteps: number;
  /** Stop the run when nothing makes progress for this long (seconds). */
  stallTimeoutSeconds: number;
}

/** The zod schema of {@link HealthSettings} (unknown keys are errors). */
export const HealthSchema = z.object({
  /** Stop when the interval loss exceeds the window's median m by more than this × |m| (0: never). */
  divergenceFactor: z.number().min(0).default(100),
  /** Logged intervals in the running window. */
  divergenceWindow: z.number().int().positive().default(20),
  /** Stop after this many consecutive skipped steps (0: never). */
  maxConsecutiveSkippedSteps: z.number().int().min(0).default(50),
  /**
   * Stop the run when no step, hook or checkpoint makes progress for this long (a plugin stuck in a
   * loop, a hung device). Watched from outside the training thread (cli/watchdog.ts).
   */
  stallTimeoutSeconds: z.number().positive().default(1800),
}).strict();

/** The defaults, for configs (and checkpoints) that do not set them. */
export const DEFAULT_HEALTH: HealthSettings = HealthSchema.parse({});

/** Why the run must stop, and whether a checkpoint is worth saving first. */
export interface HealthVerdict {
  /** "diverged" (nothing saved) or "skipped-steps" (saved). */
  kind: "diverged" | "skipped-steps";
  /** What happened and what to do, for the user. */
  message: string;
}

/** Follows the logged intervals of one run and says when it must stop. */
export class HealthMonitor {
  private readonly window: number[] = [];
  private consecutive = 0;
  /** Steps skipped so far (from the optimizer's counter). */
  skipped = 0;

  /** A monitor with `settings`, for a run of `method`, continuing after the records already logged. */
  constructor(
    readonly settings: HealthSettings,
    readonly method: string,
    history: MetricsRecord[] = [],
  ) {
    for (const r of history) {
      if (r.kind !== "train") continue;
      if (typeof r.loss === "number" && Number.isFinite(r.loss)) this.remember(r.loss);
      this.skipped = r.skippedSteps ?? this.skipped;
    }
  }

  /** Checks one logged training interval of `steps` steps; returns a verdict when the run must stop. */
  check(record: MetricsRecord, steps: number): HealthVerdict | undefined {
    const { settings } = this;
    const skippedNow = record.skippedSteps ?? this.skipped;
    const delta = skippedNow - this.skipped;
    this.skipped = skippedNow;
    this.consecutive = delta >= steps ? this.consecutive + steps : 0;
    const loss = record.loss;
    if (typeof loss !== "number" || !Number.isFinite(loss)) {
      return {
        kind: "diverged",
        message: `training diverged at step ${record.step}: the loss is ${loss} (method ${this.method}); ` +
          `nothing was saved, the last checkpoint is kept. Lower the learning rate (--lr), or check the ` +
          `method's loss for NaN/Inf`,
      };
    }
    if (settings.divergenceFactor > 0 && this.window.length >= Math.min(3, settings.divergenceWindow)) {
      const median = medianOf(this.window);
      if (median !== 0 && loss - median > settings.divergenceFactor * Math.abs(median)) {
        return {
          kind: "diverged",
          message: `training diverged at step ${record.step}: loss ${loss.toPrecision(4)} is more than ` +
            `${settings.divergenceFactor}× above the median ${median.toPrecision(4)} of the last ` +
            `${this.window.length} logged losses (health.divergenceFactor); nothing was saved, the last ` +
            `checkpoint is kept. Lower the learning rate (--lr)`,
        };
      }
    }
    this.remember(loss);
    const max = settings.maxConsecutiveSkippedSteps;
    if (max > 0 && this.consecutive >= max) {
      return {
        kind: "skipped-steps",
        message: `stopped at step ${record.step}: the last ${this.consecutive} steps were all skipped ` +
          `because their gradients were not finite (${this.skipped} skipped in all; ` +
          `health.maxConsecutiveSkippedSteps ${max}); a checkpoint was saved. Lower the learning rate ` +
          `(--lr) or check the method's loss`,
      };
    }
    return undefined;
  }

  private remember(loss: number): void {
    this.window.push(loss);
    if (this.window.length > this.settings.divergenceWindow) this.window.shift();
  }
}

function medianOf(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}
