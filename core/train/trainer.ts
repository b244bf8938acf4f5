/**
 * The Trainer: builds the network and the method from their plugins, packs parameters, and runs the
 * loop: steps grouped in epochs, learning-rate schedule per epoch, loss (scaled under mixed precision),
 * backward, fused optimizer step, metrics every `logEvery` steps, validation and checkpoints per epoch,
 * graceful stop on signals, and resume from the latest checkpoint.
 *
 * Mixed precision (`precision: "mixed"`): the method's loss (forward pass) runs under `autocast()`
 * (convolutions, matmuls and attention in f16 with f32 accumulation, everything else f32; parameters stay
 * f32), backward is seeded with the dynamic loss scale, and the optimizer unscales the gradients, skips
 * any step whose gradients are not finite (an f16 overflow) and lowers the scale (core/optim). On a
 * device without shader-f16 the ops stay f32 (autocast is a no-op) and the loss scaling is harmless.
 *
 * Nothing waits for the GPU inside a step: the loss is accumulated on the GPU and read back only when a
 * log line is due.
 */
import { join } from "node:path";
import { type Gpu, initGpu } from "../gpu/mod.ts";
import { Module, packParameters, stateDict, writeFileAtomic } from "../nn/mod.ts";
import { encodeSafetensors, loadStateDict } from "../nn/mod.ts";
import { learningRate, Optimizer } from "../optim/mod.ts";
import {
  type ArchitecturePlugin,
  type GpuBatch,
  type MethodInstance,
  type Network,
  referenceStateDict,
  type SslMethodPlugin,
} from "../plugin/mod.ts";
import {
  addInPlace,
  autocast,
  backward,
  fillInPlace,
  Generator,
  keep,
  noGrad,
  reshape,
  scope,
  type Tensor,
  tensor,
  zeros,
} from "../tensor/mod.ts";
import type { BatchSource, HostBatch } from "./batch_source.ts";
import { type Checkpoint, CHECKPOINT_FORMAT, loadCheckpoint, saveCheckpoint } from "./checkpoint.ts";
import type { ResolvedRunConfig } from "./config.ts";
import { appendMetrics, lossCurveSvg, type MetricsRecord, readMetrics, truncateMetrics } from "./metrics.ts";
import { listenForStop } from "./stop_signals.ts";

/** Inputs of {@link runPretraining}. */
export interface TrainerOptions {
  config: ResolvedRunConfig;
  arch: ArchitecturePlugin;
  method: SslMethodPlugin;
  train: BatchSource;
  validation?: BatchSource;
  coreVersion: string;
  /** Continue from `<out>/checkpoints/latest.safetensors`. */
  resume?: boolean;
  log?: (line: string) => void;
  gpu?: Gpu;
  /** Stop (with a checkpoint, as on SIGTERM) after this many optimizer steps in total. */
  stopAfterStep?: number;
  /**
   * Initial dynamic loss scale under `precision: "mixed"` (default 65536, PyTorch GradScaler's). Not
   * part of the run config: the scale adapts by itself (halved on overflow, doubled after 2000 clean
   * steps) and a resumed run continues with the scale its checkpoint saved.
   */
  initialLossScale?: number;
}

/** What a run did. */
export interface RunSummary {
  out: string;
  steps: number;
  epochs: number;
  lastLoss: number | null;
  bestValidationLoss: number | null;
  /** The signal (or "stopAfterStep") that stopped the run early. */
  stoppedBy?: string;
}

/** The trained modules under the names checkpoints use: `network.*` and `method.<name>.*`. */
class RunModel extends Module {
  constructor(readonly network: Network, methodModules: Record<string, Module>) {
    super();
    this.registerModule("network", network);
    const holder = new MethodModules();
    for (const [name, m] of Object.entries(methodModules)) holder.add(name, m);
    this.registerModule("method", holder);
  }
}

class MethodModules extends Module {
  add(name: string, m: Module): void {
    this.registerModule(name, m);
  }
}

function upload(host: HostBatch, gpu: Gpu): GpuBatch {
  const [b, , d, h, w] = host.shape;
  const masks: Record<string, Tensor> = {};
  for (const [name, data] of Object.entries(host.masks ?? {})) {
    masks[name] = tensor(Float32Array.from(data), [b, 1, d, h, w], { gpu });
  }
  const extra: Record<string, Tensor> = {};
  for (const [name, e] of Object.entries(host.extra ?? {})) {
    extra[name] = tensor(e.data instanceof Float32Array ? e.data : Float32Array.from(e.data), e.shape, {
      gpu,
    });
  }
  return { image: tensor(host.image, host.shape, { gpu }), masks, extra };
}

function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h > 0
    ? `${h}h${String(m).padStart(2, "0")}m`
    : m > 0
    ? `${m}m${String(s % 60).padStart(2, "0")}s`
    : `${s}s`;
}

/** Runs (or resumes) a pretraining run to its end or to a stop request. */
export async function runPretraining(options: TrainerOptions): Promise<RunSummary> {
  const { config, arch, method } = options;
  const log = options.log ?? ((line: string) => console.log(line));
  const gpu = options.gpu ?? await initGpu();
  const out = config.out;
  const checkpoints = join(out, "checkpoints");
  await Deno.mkdir(checkpoints, { recursive: true });
  const metricsPath = join(out, "metrics.jsonl");
  const plotPath = join(out, "loss_curve.svg");

  // Model, method and optimizer, all seeded.
  const initRng = new Generator(config.seed, gpu);
  const built = scope(() => {
    const network = arch.create({
      config: config.resolvedArch.config,
      inChannels: config.inChannels,
      outChannels: method.outChannels,
      patchSize: config.patch,
      rng: initRng,
    });
    const instance = method.build({ network, config: config.resolvedMethod.config, rng: initRng });
    return { model: new RunModel(network, instance.modules), instance };
  });
  const model: RunModel = built.model;
  const instance: MethodInstance = built.instance;
  const groups = packParameters(model);
  const mixed = config.precision === "mixed";
  const optimizer = new Optimizer(groups, config.optimizer, {
    maxGradNorm: config.clipGradNorm,
    lossScale: { enabled: mixed, initScale: options.initialLossScale },
  });
  // the forward pass of a step (and of validation) in the run's precision
  const precise = <T>(fn: () => T): T => (mixed ? autocast(fn) : fn());
  const stepRng = new Generator(config.seed + 1, gpu);
  const totalSteps = config.epochs * config.stepsPerEpoch;
  const lossSum = keep(zeros([1], { gpu }));
  let intervalSteps = 0;
  let step = 0;
  let best: number | null = null;
  const plugins = {
    architecture: `${arch.name}@${arch.version}`,
    method: `${method.name}@${method.version}`,
  };

  if (options.resume) {
    const path = join(checkpoints, "latest.safetensors");
    const ckpt = await loadCheckpoint(path);
    if (
      ckpt.meta.plugins.architecture !== plugins.architecture || ckpt.meta.plugins.method !== plugins.method
    ) {
      log(
        `note: checkpoint made with ${ckpt.meta.plugins.architecture} / ${ckpt.meta.plugins.method}; ` +
          `running ${plugins.architecture} / ${plugins.method}`,
      );
    }
    loadStateDict(model, ckpt.weights, { source: path });
    optimizer.importState(ckpt.optimizer);
    stepRng.state = ckpt.meta.generator;
    step = ckpt.meta.step;
    best = ckpt.meta.bestValidationLoss;
    const acc = ckpt.meta.lossAccumulator;
    if (acc) {
      lossSum.write([acc.sum]);
      intervalSteps = acc.steps;
    }
    await truncateMetrics(metricsPath, step);
    log(`resumed ${out} at step ${step} (epoch ${Math.floor(step / config.stepsPerEpoch)})`);
  } else {
    await Deno.writeTextFile(metricsPath, "");
  }
  await writeFileAtomic(join(out, "config.json"), JSON.stringify({ ...config, plugins }, null, 2) + "\n");
  log(`run folder: ${out}`);
  if (mixed && !gpu.hasF16) {
    log(
      "note: precision mixed, but this device has no shader-f16: convolutions, matmuls and attention run in f32",
    );
  }
  log(
    `model: ${plugins.architecture} (${(model.network.parameterCount() / 1e6).toFixed(2)}M parameters), ` +
      `method ${plugins.method}; ${config.epochs} epochs × ${config.stepsPerEpoch} steps, batch ${config.batch}, ` +
      `patch ${config.patch.join("×")}, ${config.optimizer.name} lr ${config.optimizer.lr}`,
  );

  const saveTo = async (name: string, extra: Partial<Checkpoint["meta"]> = {}) => {
    const lossValue = (await lossSum.toArray())[0];
    const meta: Checkpoint["meta"] = {
      format: CHECKPOINT_FORMAT,
      coreVersion: options.coreVersion,
      step,
      epoch: Math.floor(step / config.stepsPerEpoch),
      config,
      plugins,
      generator: stepRng.state,
      bestValidationLoss: best,
      adaptationPlan: model.network.adaptationPlan(),
      savedAt: new Date().toISOString(),
      lossAccumulator: { sum: lossValue, steps: intervalSteps },
      ...extra,
    };
    await saveCheckpoint(join(checkpoints, name), {
      meta,
      weights: await stateDict(model),
      optimizer: await optimizer.exportState(),
    });
  };

  const writePlot = async () => {
    const title = `${plugins.architecture} · ${plugins.method} · ${out}`;
    await writeFileAtomic(plotPath, lossCurveSvg(await readMetrics(metricsPath), title));
  };

  const stop = listenForStop(log);
  let lastLoss: number | null = null;
  let stoppedBy: string | undefined;
  let intervalStart = performance.now();
  try {
    while (step < totalSteps) {
      const epoch = Math.floor(step / config.stepsPerEpoch);
      const lr = learningRate(config.schedule, config.optimizer.lr, epoch, config.epochs);
      const host = await options.train.batch(step);
      optimizer.zeroGrad();
      model.train();
      scope(() => {
        const batch = upload(host, gpu);
        const { loss } = precise(() => instance.loss(batch, { step, training: true, rng: stepRng }));
        addInPlace(lossSum, reshape(loss, [1]));
        backward(loss, mixed ? optimizer.lossScaleSeed() : undefined);
      });
      optimizer.step(lr);
      step++;
      intervalSteps++;

      const endOfEpoch = step % config.stepsPerEpoch === 0;
      if (step % config.logEvery === 0 || endOfEpoch || step === totalSteps) {
        const mean = (await lossSum.toArray())[0] / intervalSteps;
        const status = await optimizer.readStatus();
        const seconds = (performance.now() - intervalStart) / 1000;
        const rate = intervalSteps / seconds;
        const { bytesInUse: memory, peakBytesInUse: peak } = gpu.pool.stats();
        gpu.pool.resetPeak();
        const record: MetricsRecord = {
          kind: "train",
          step,
          epoch,
          loss: mean,
          lr,
          stepsPerSecond: rate,
          gradNorm: status.gradNorm,
          lossScale: status.lossScale,
          skippedSteps: status.skipped,
          gpuMemoryBytes: memory,
          gpuPeakBytes: peak,
        };
        await appendMetrics(metricsPath, [record]);
        log(
          `step ${step}/${totalSteps} (epoch ${epoch + 1}/${config.epochs})  loss ${mean.toPrecision(5)}  ` +
            `lr ${lr.toExponential(2)}  ${rate.toFixed(2)} steps/s  ETA ${
              formatDuration((totalSteps - step) / rate)
            }  ` +
            `GPU ${(memory / 2 ** 20).toFixed(0)} MiB` +
            (status.skipped ? `  skipped ${status.skipped}` : ""),
        );
        lastLoss = mean;
        fillInPlace(lossSum, 0);
        intervalSteps = 0;
        intervalStart = performance.now();
        await writePlot();
      }

      if (endOfEpoch) {
        if (options.validation && config.validationBatches > 0) {
          model.eval();
          const valSum = keep(zeros([1], { gpu }));
          for (let i = 0; i < config.validationBatches; i++) {
            const host = await options.validation.batch(i);
            scope(() =>
              noGrad(() => {
                const { loss } = precise(() =>
                  instance.loss(upload(host, gpu), { step: i, training: false, rng: stepRng })
                );
                addInPlace(valSum, reshape(loss, [1]));
              })
            );
          }
          const val = (await valSum.toArray())[0] / config.validationBatches;
          valSum.dispose();
          await appendMetrics(metricsPath, [{ kind: "validation", step, epoch, loss: val }]);
          log(
            `validation after epoch ${epoch + 1}: loss ${val.toPrecision(5)}${
              best === null || val < best ? " (best)" : ""
            }`,
          );
          if (best === null || val < best) {
            best = val;
            await saveTo("best.safetensors");
          }
          await writePlot();
        }
        await saveTo("latest.safetensors");
      }

      const stopRequest = stop.requested ?? (options.stopAfterStep === step ? "stopAfterStep" : undefined);
      if (stopRequest && step < totalSteps) {
        await saveTo("latest.safetensors");
        log(`stopped by ${stopRequest} at step ${step}; resume with --resume ${out}`);
        stoppedBy = stopRequest;
        break;
      }
    }
    if (!stoppedBy) {
      await saveTo("latest.safetensors");
      await saveTo("final.safetensors");
      // the network alone, in the reference implementation's state-dict form: PyTorch loads it directly
      const weights = await referenceStateDict(model.network);
      await writeFileAtomic(
        join(out, "network.safetensors"),
        encodeSafetensors(weights, {
          format: "pt",
          voxssl: JSON.stringify({ plugins, adaptationPlan: model.network.adaptationPlan() }),
        }),
      );
      log(
        `finished: ${step} steps; checkpoints in ${checkpoints}, network weights in ${
          join(out, "network.safetensors")
        }`,
      );
    }
  } finally {
    stop.dispose();
    optimizer.dispose();
    lossSum.dispose();
    model.dispose();
  }
  return {
    out,
    steps: step,
    epochs: Math.floor(step / config.stepsPerEpoch),
    lastLoss,
    bestValidationLoss: best,
    stoppedBy,
  };
}
