/**
 * SSL methods end to end: the median time of a whole training step (upload, forward, loss, backward,
 * optimizer; waited for) and the GPU pool's peak bytes during it, per method and architecture
 * (bench/method_cases.ts). The batches are made once, before timing, by the method's own data hook on
 * synthetic volumes, so the figures are the GPU side alone; the data side is bench/data_bench.ts's.
 */
import { builtinRegistry, pluginModule } from "../cli/builtins.ts";
import { VERSION } from "../mod.ts";
import { createSampleRunner } from "../core/data/sample_runner.ts";
import { resolveAugmentation } from "../core/data/augment/config.ts";
import { resolveSource } from "../core/data/sources.ts";
import type { SampleArray } from "../core/data/mod.ts";
import {
  closeRun,
  type HostBatch,
  openRun,
  resolveRunConfig,
  RunConfigSchema,
  trainStep,
} from "../core/train/mod.ts";
import type { BenchContext, BenchSuite } from "./harness.ts";
import { METHOD_CASES } from "./method_cases.ts";

function stack(samples: Record<string, SampleArray>[]): HostBatch {
  const arrays: Record<string, SampleArray> = {};
  for (const key of Object.keys(samples[0])) {
    const first = samples[0][key];
    const n = first.data.length;
    const out = new (first.data.constructor as new (n: number) => SampleArray["data"])(samples.length * n);
    samples.forEach((s, b) => out.set(s[key].data as never, b * n));
    arrays[key] = { dtype: first.dtype, shape: [samples.length, ...first.shape], data: out };
  }
  return { arrays };
}

/** The suite. */
export const methodSuite: BenchSuite = {
  name: "methods",
  async run(ctx: BenchContext) {
    const registry = builtinRegistry();
    for (const c of METHOD_CASES.filter((c) => c.preset === ctx.preset)) {
      const out = await Deno.makeTempDir({ prefix: "voxssl-bench-" });
      const parsed = RunConfigSchema.parse({
        ...c.config,
        data: "synthetic",
        epochs: 1,
        stepsPerEpoch: 1000,
        out,
      });
      const arch = registry.architecture(parsed.arch);
      const method = registry.method(parsed.method);
      const config = resolveRunConfig(parsed, arch, method);
      const size = config.patch.map((p) =>
        Math.max(p, ...(((config.resolvedMethod.config as { region?: number[] }).region) ?? [0])) + 8
      );
      const source = await resolveSource({
        kind: "synthetic",
        count: 2,
        shape: size as [number, number, number],
        seed: 1,
      });
      const runner = await createSampleRunner({
        source,
        spec: {
          patch: config.patch,
          augmentation: resolveAugmentation("none"),
          anatomyProbability: 0,
          masks: method.masks?.(config.resolvedMethod.config) ?? [],
        },
        seed: 1,
        training: true,
        hookModule: method.sample ? pluginModule(registry, "ssl-method", method.name) : undefined,
        hookConfig: config.resolvedMethod.config,
      });
      const samples = [];
      for (let b = 0; b < config.batch; b++) {
        samples.push((await runner.run({ step: 0, index: b, item: b % 2 })).result.arrays);
      }
      runner.close();
      const host = stack(samples);
      const run = await openRun({
        config,
        arch: arch.plugin,
        method,
        train: { batch: () => Promise.resolve(host), close: () => Promise.resolve() },
        coreVersion: VERSION,
        log: () => {},
        gpu: ctx.gpu,
      });
      try {
        const lr = config.optimizer.lr;
        for (let i = 0; i < 2; i++) await trainStep(run, host, lr); // warm-up: kernels compiled, pool filled
        await ctx.gpu.sync();
        const times: number[] = [];
        ctx.gpu.pool.resetPeak();
        const before = ctx.gpu.pool.stats().bytesInUse;
        for (let i = 0; i < (ctx.preset === "gpu" ? 10 : 3); i++) {
          const t = performance.now();
          await trainStep(run, host, lr);
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
        closeRun(run);
        await Deno.remove(out, { recursive: true });
      }
    }
  },
};
