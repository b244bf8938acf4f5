/**
 * The trainer's side of autotuning (kernels/autotune.ts): a tuner attached to the device when the run
 * starts (its disk cache loaded), and, after a step that met shape classes not in the cache, their
 * candidates timed before the next step. The first step of a new class runs the reasoned tiles; the
 * steps after it run the measured ones.
 */
import type { Gpu } from "../gpu/mod.ts";
import { setActivity } from "../plugin/activity.ts";
import {
  autotuneApplies,
  type AutotuneMode,
  autotunerOf,
  type AutotunerOptions,
  enableAutotune,
} from "../../kernels/mod.ts";

/**
 * Attaches an autotuner with the disk cache to `gpu` when `mode` applies to it ("auto": not on a CPU
 * adapter) and says what it did in one log line.
 */
export async function startAutotune(
  gpu: Gpu,
  mode: AutotuneMode,
  log: (line: string) => void,
  options: AutotunerOptions = {},
): Promise<void> {
  if (!autotuneApplies(mode, gpu)) {
    if (mode === "auto") {
      log("autotune: off on a CPU adapter (reasoned tiles; VOXSSL_AUTOTUNE=1 tunes anyway)");
    }
    return;
  }
  const tuner = await enableAutotune(gpu, { warn: (m) => log(`warning: ${m}`), ...options });
  const where = tuner.cachePath ?? "memory";
  log(
    `autotune: on (${tuner.choices.size} shape classes cached for this adapter in ${where}; VOXSSL_AUTOTUNE=0 turns it off)`,
  );
}

/**
 * Times the candidates of the shape classes the last step met for the first time, if any. Returns
 * whether it tuned anything (the probes' scratch buffers then count in the pool's peak).
 */
export async function tuneNewShapes(gpu: Gpu, log: (line: string) => void): Promise<boolean> {
  const tuner = autotunerOf(gpu);
  if (!tuner || tuner.pending.length === 0) return false;
  const t0 = performance.now();
  // each class is progress for the stall watchdog: a slow device may take minutes over all of them
  const results = await tuner.tunePending((key, i, n) => setActivity(`autotuning ${key} (${i + 1}/${n})`));
  const changed = results.filter((r) => r.record.choice !== r.defaultChoice).length;
  log(
    `autotune: timed ${results.length} new shape classes in ${
      ((performance.now() - t0) / 1000).toFixed(1)
    } s ` +
      `(${changed} now use a measured tile other than the reasoned one)`,
  );
  return true;
}
