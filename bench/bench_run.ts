/**
 * A training run set up for timing, shared by the methods and e2e suites: the run config resolved with
 * the built-in plugins, a batch made once by the method's own data hook on synthetic volumes (so the
 * timed steps are the GPU side alone), and the opened run. `close()` frees it all.
 */
import { builtinRegistry, pluginModule } from "../cli/builtins.ts";
import { VERSION } from "../mod.ts";
import { createSampleRunner } from "../core/data/sample_runner.ts";
import { resolveAugmentation } from "../core/data/augment/config.ts";
import { resolveSource } from "../core/data/sources.ts";
import type { SampleArray } from "../core/data/mod.ts";
import type { Gpu } from "../core/gpu/mod.ts";
import {
  closeRun,
  type HostBatch,
  openRun,
  type ResolvedRunConfig,
  resolveRunConfig,
  type Run,
  type RunConfigInput,
  RunConfigSchema,
  trainStep,
} from "../core/train/mod.ts";

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

/** An opened run with its batch. */
export interface BenchRun {
  /** The resolved config. */
  config: ResolvedRunConfig;
  /** The opened run. */
  run: Run;
  /** Records one training step on the prepared batch (nothing waited for). */
  step(): Promise<void>;
  /** Frees the run and its temporary folder. */
  close(): Promise<void>;
}

/** Opens `input` (data: synthetic) on `gpu` with one batch made in advance. */
export async function openBenchRun(gpu: Gpu, input: RunConfigInput): Promise<BenchRun> {
  const registry = builtinRegistry();
  const out = await Deno.makeTempDir({ prefix: "voxssl-bench-" });
  const parsed = RunConfigSchema.parse({ ...input, data: "synthetic", epochs: 1, stepsPerEpoch: 1000, out });
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
    gpu,
  });
  return {
    config,
    run,
    step: () => trainStep(run, host, config.optimizer.lr),
    async close() {
      closeRun(run);
      await Deno.remove(out, { recursive: true });
    },
  };
}
