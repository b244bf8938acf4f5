/**
 * `pretrain --profile N` inside the Trainer: the first `warmup` steps run as usual (kernels compile, the
 * pool fills), the next N are profiled (core/train/step_profile.ts), then the table is printed,
 * `profile.json` and `profile.svg` go into the run folder, and the run stops as on a stop request.
 *
 * @module
 */
import { formatProfileTable, writeProfile } from "./profile_report.ts";
import { StepProfiler } from "./step_profile.ts";
import type { Run } from "./trainer.ts";

/** What to profile (TrainerOptions.profile). */
export interface RunProfileOptions {
  /** Steps to profile. */
  steps: number;
  /** Steps run before profiling (default 1). */
  warmup?: number;
}

/** Profiles a run's steps after its warm-up; see the module comment. */
export class RunProfile {
  readonly #options: Required<RunProfileOptions>;
  readonly #run: Run;
  readonly #profiler: StepProfiler;
  #seen = 0;
  #finished = false;

  /** Profiles `options.steps` steps of `run` after `options.warmup` (default 1). */
  constructor(options: RunProfileOptions, run: Run) {
    if (!Number.isInteger(options.steps) || options.steps < 1) {
      throw new RangeError(`profile: steps must be an integer >= 1, got ${options.steps}`);
    }
    this.#options = { warmup: 1, ...options };
    this.#run = run;
    this.#profiler = new StepProfiler(run.gpu);
  }

  /** Whether every profiled step ran and the outputs are written. */
  get finished(): boolean {
    return this.#finished;
  }

  /** Runs one step (`work`), profiled once the warm-up is over. `dataWaitMs`: the step's wait for its batch. */
  async step(work: () => Promise<void>, dataWaitMs: number): Promise<void> {
    const index = this.#seen++;
    if (this.#finished || index < this.#options.warmup) return await work();
    await this.#profiler.step(work, dataWaitMs);
    if (this.#profiler.steps < this.#options.steps) return;
    const c = this.#run.config;
    const report = this.#profiler.report(
      `${this.#run.plugins.architecture} · ${this.#run.plugins.method} · batch ${c.batch} · ` +
        `${c.patch.join("×")} · ${c.precision}`,
    );
    this.#profiler.dispose();
    this.#finished = true;
    this.#run.log(formatProfileTable(report));
    if (this.#run.primary) {
      const { json, svg } = await writeProfile(this.#run.paths.out, report);
      this.#run.log(`profile: ${json}, ${svg}`);
    }
  }
}
