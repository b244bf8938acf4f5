/**
 * End to end (`deno task bench --suite e2e`): each architecture with MAE at the preset's sizes, in f32 and
 * in mixed precision: steps per second (whole steps, waited for, after warm-up), the pool's peak bytes in
 * use and bytes reserved, then one profiled step (core/train/step_profile.ts) whose top op families go into
 * the row's note and whose whole report goes into the JSON (`details.profile`).
 *
 * Presets: "lavapipe" runs the tiny architectures at 32³, batch 2 (minutes on 2 cores); "gpu" runs the
 * OpenMind recipe, ResEnc-L and Primus-M at 160³, batch 2. A case that fails (e.g. out of memory) is
 * reported as a row with the error, and the suite goes on.
 */
import type { RunConfigInput } from "../core/train/mod.ts";
import { StepProfiler } from "../core/train/mod.ts";
import { openBenchRun } from "./bench_run.ts";
import type { BenchContext, BenchPreset, BenchSuite } from "./harness.ts";

/** One e2e case: an architecture with MAE at one precision. */
export interface E2eCase {
  /** Row label. */
  name: string;
  /** The run config (data is the synthetic set). */
  config: RunConfigInput;
}

/** The cases of a preset: every architecture × {f32, mixed}. */
export function e2eCases(preset: BenchPreset): E2eCase[] {
  const archs: { name: string; config: RunConfigInput }[] = preset === "gpu"
    ? [
      { name: "resenc-l", config: { arch: "resenc-l", method: "mae" } },
      { name: "primus-m", config: { arch: "primus-m", method: "mae" } },
    ]
    : [
      {
        name: "resenc-tiny",
        config: {
          arch: "resenc-tiny",
          method: "mae",
          methodConfig: { block: 8 },
          patch: [32, 32, 32],
          batch: 2,
        },
      },
      { name: "primus-tiny", config: { arch: "primus-tiny", method: "mae", patch: [32, 32, 32], batch: 2 } },
    ];
  return archs.flatMap((a) =>
    (["f32", "mixed"] as const).map((precision) => ({
      name: `mae ${a.name} ${precision}`,
      config: { ...a.config, precision },
    }))
  );
}

const MiB = 2 ** 20;

/** Runs one case and reports its row. */
export async function runE2eCase(ctx: BenchContext, c: E2eCase): Promise<void> {
  const gpu = ctx.gpu;
  const warmup = ctx.preset === "gpu" ? 2 : 1;
  const timed = ctx.preset === "gpu" ? 5 : 2;
  let bench;
  try {
    gpu.pool.trim(); // an empty cache: the reserved bytes below are this case's own
    bench = await openBenchRun(gpu, c.config);
    for (let i = 0; i < warmup; i++) await bench.step();
    await gpu.sync();
    gpu.pool.resetPeak();
    const resting = gpu.pool.stats().bytesInUse;
    const times: number[] = [];
    for (let i = 0; i < timed; i++) {
      const t = performance.now();
      await bench.step();
      await gpu.sync();
      times.push(performance.now() - t);
    }
    const { peakBytesInUse: peak, bytesReserved } = gpu.pool.stats();
    const profiler = new StepProfiler(gpu);
    await profiler.step(() => bench!.step());
    const config = bench.config;
    const report = profiler.report(`${c.name} · batch ${config.batch} · ${config.patch.join("×")}`);
    profiler.dispose();
    times.sort((a, b) => a - b);
    const medianMs = times[Math.floor(times.length / 2)];
    const top = report.families.slice(0, 5).map((r) => `${r.family} ${(100 * r.gpuShare).toFixed(0)}%`);
    const { events: _events, ...memory } = report.memory;
    ctx.report({
      suite: "e2e",
      name: c.name,
      shape: `batch ${config.batch}, ${config.patch.join("×")}, ${config.precision}`,
      medianMs,
      note: `${(1000 / medianMs).toFixed(3)} steps/s; peak ${(peak / MiB).toFixed(0)} MiB (resting ${
        (resting / MiB).toFixed(0)
      } MiB), reserved ${(bytesReserved / MiB).toFixed(0)} MiB; top GPU families: ${top.join(", ")}`,
      details: {
        stepsPerSecond: 1000 / medianMs,
        stepMs: times,
        peakBytes: peak,
        restingBytes: resting,
        reservedBytes: bytesReserved,
        hasF16: gpu.hasF16,
        profile: { ...report, memory },
      },
    });
  } catch (error) {
    ctx.report({
      suite: "e2e",
      name: c.name,
      shape: JSON.stringify(c.config),
      medianMs: NaN,
      note: `failed: ${(error as Error).message.split("\n")[0]}`,
    });
  } finally {
    await bench?.close();
  }
}

/** The suite. */
export const e2eSuite: BenchSuite = {
  name: "e2e",
  async run(ctx: BenchContext) {
    for (const c of e2eCases(ctx.preset)) await runE2eCase(ctx, c);
  },
};
