/**
 * Tuned-vs-reasoned rows for the conv and matmul suites: a memory-only autotuner (kernels/autotune.ts;
 * the user's disk cache is neither read nor written) times the candidates of what `record` launches,
 * then `record` is timed again with the measured choices. Both times come from the same run.
 */
import type { Gpu } from "../core/gpu/mod.ts";
import { attachAutotuner, Autotuner, detachAutotuner } from "../kernels/mod.ts";
import { measure, type MeasureOptions } from "./harness.ts";

/** The tuned time of `record` and the choices the tuner made (class → "reasoned → chosen"). */
export async function measureTuned(
  gpu: Gpu,
  record: () => void,
  timing: MeasureOptions,
): Promise<{ medianMs: number; choices: string[] }> {
  const tuner = new Autotuner(gpu, { cachePath: null, repeats: timing.repeats ?? 3 });
  attachAutotuner(gpu, tuner);
  try {
    record(); // meets the shape classes (reasoned choices)
    await gpu.sync();
    const results = await tuner.tunePending();
    const time = await measure(gpu, record, timing);
    const choices = results.map((r) =>
      r.record.choice === r.defaultChoice
        ? `${r.defaultChoice} kept`
        : `${r.defaultChoice} → ${r.record.choice}`
    );
    return { medianMs: time.medianMs, choices };
  } finally {
    detachAutotuner(gpu);
  }
}
