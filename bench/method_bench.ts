/**
 * SSL methods end to end: the median time of a whole training step (upload, forward, loss, backward,
 * optimizer; waited for) and the GPU pool's peak bytes during it, per method and architecture
 * (bench/method_cases.ts). The batches are made once, before timing, by the method's own data hook on
 * synthetic volumes, so the figures are the GPU side alone; the data side is bench/data_bench.ts's.
 */
import type { BenchContext, BenchSuite } from "./harness.ts";
import { openBenchRun } from "./bench_run.ts";
import { METHOD_CASES } from "./method_cases.ts";

/** The suite. */
export const methodSuite: BenchSuite = {
  name: "methods",
  gpuSeconds: 50,
  async run(ctx: BenchContext) {
    for (const c of METHOD_CASES.filter((c) => c.preset === ctx.preset)) {
      const bench = await openBenchRun(ctx.gpu, c.config);
      const config = bench.config;
      try {
        for (let i = 0; i < 2; i++) await bench.step(); // warm-up: kernels compiled, pool filled
        await ctx.gpu.sync();
        const times: number[] = [];
        ctx.gpu.pool.resetPeak();
        const before = ctx.gpu.pool.stats().bytesInUse;
        for (let i = 0; i < (ctx.preset === "gpu" ? 10 : 3); i++) {
          const t = performance.now();
          await bench.step();
          await ctx.gpu.sync();
          times.push(performance.now() - t);
        }
        const peak = ctx.gpu.pool.stats().peakBytesInUse;
        times.sort((a, b) => a - b);
        ctx.report({
          suite: "methods",
          name: c.name,
          shape: `batch ${config.batch}, ${config.patch.join("×")}, ${config.precision}`,
          medianMs: times[Math.floor(times.length / 2)],
          note: `peak ${(peak / 2 ** 20).toFixed(0)} MiB (${
            ((peak - before) / 2 ** 20).toFixed(0)
          } MiB above the resting ${(before / 2 ** 20).toFixed(0)} MiB)`,
        });
      } finally {
        await bench.close();
      }
    }
  },
};
