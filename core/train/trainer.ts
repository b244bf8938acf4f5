/**
 * The Trainer as a pipeline of small named steps. A run is opened ({@link openRun}: build, group
 * parameters, optimizer, resume or start fresh), then each step goes
 *
 *   batch → upload → loss → backward → gradient hook → optimizer → after-step hook → log
 *
 * ({@link trainStep}, {@link logInterval}); each epoch ends with the method's end-of-epoch hook,
 * validation ({@link validate}) and a checkpoint ({@link saveRunCheckpoint}); the run ends with the final
 * checkpoint and the network export ({@link finishRun}). {@link runPretraining} is that loop and nothing
 * else. The seams — `gradientHook` (e.g. an allreduce across processes), the method's hooks, the batch
 * sources — are where fine-tuning and distributed training plug in without copying the loop.
 *
 * Mixed precision (`precision: "mixed"`): the method's loss (forward pass) runs under `autocast()`,
 * backward is seeded with the dynamic loss scale, and the optimizer unscales the gradients, skips any
 * step whose gradients are not finite (an f16 overflow) and lowers the scale (core/optim).
 *
 * Nothing waits for the GPU inside a step: the loss and metrics are accumulated on the GPU and read back
 * only when a log line is due.
 *
 * @module
 */
import { join } from "node:path";
import { getGpu, type Gpu, initGpu } from "../gpu/mod.ts";
import {
  encodeSafetensors,
  loadStateDict,
  type ParameterGroup,
  stateDict,
  writeFileAtomic,
} from "../nn/mod.ts";
import { learningRate, Optimizer } from "../optim/mod.ts";
import {
  type ArchitecturePlugin,
  callPlugin,
  type LossOutput,
  type MethodInstance,
  PluginError,
  referenceStateDict,
  setActivity,
  type SslMethodPlugin,
} from "../plugin/mod.ts";
import { autocast, backward, Generator, noGrad, scope, type Tensor } from "../tensor/mod.ts";
import { MetricAccumulator } from "./accumulator.ts";
import type { BatchSource, HostBatch } from "./batch_source.ts";
import { type Checkpoint, CHECKPOINT_FORMAT, loadCheckpoint, saveCheckpoint } from "./checkpoint.ts";
import { loadInitialWeights } from "./interop.ts";
import type { ResolvedRunConfig } from "./config.ts";
import { startAutotune, tuneNewShapes } from "./autotune_step.ts";
import { uploadBatch } from "./gpu_batch.ts";
import { lossCurveSvg, type MetricsRecord, readMetrics, truncateMetrics } from "./metrics.ts";
import { DataWaitClock, notifyCheckpoint, recordMetrics, type RunObserver } from "./run_events.ts";
import { TfEventsWriter } from "./tfevents.ts";
import { groupParameters, type NamedGroup } from "./parameter_grouping.ts";
import { buildRun, type FrozenModules, type RunModel } from "./run_model.ts";
import { listenForStop } from "./stop_signals.ts";
import { DEFAULT_HEALTH, HealthMonitor } from "./health.ts";
import { RunStoppedError } from "./run_errors.ts";
import { RunProfile, type RunProfileOptions } from "./run_profile.ts";

/** Inputs of {@link runPretraining}. */
export interface TrainerOptions {
  /** The resolved run config. */
  config: ResolvedRunConfig;
  /** The architecture plugin. */
  arch: ArchitecturePlugin;
  /** The SSL-method plugin. */
  method: SslMethodPlugin;
  /** Training batches. */
  train: BatchSource;
  /** Validation batches (run after each epoch when `config.validationBatches` > 0). */
  validation?: BatchSource;
  /** The running core's version (recorded in checkpoints). */
  coreVersion: string;
  /** Continue from `<out>/checkpoints/latest.safetensors`. */
  resume?: boolean;
  /** Where progress lines go (default console.log). */
  log?: (line: string) => void;
  /** The device: the process's default device (the default); another one is refused. */
  gpu?: Gpu;
  /** Stop (with a checkpoint, as on SIGTERM) after this many optimizer steps in total. */
  stopAfterStep?: number;
  /**
   * Initial dynamic loss scale under `precision: "mixed"` (default 65536, PyTorch GradScaler's). Not
   * part of the run config: the scale adapts by itself and a resumed run continues with the saved one.
   */
  initialLossScale?: number;
  /**
   * Called after backward with the packed gradient groups, before the optimizer step: the seam for
   * averaging gradients across processes.
   */
  gradientHook?: (groups: ParameterGroup[]) => void | Promise<void>;
  /** This process's part in a data-parallel job (core/dist); absent for a single process. */
  distributed?: DistributedRole;
  /** Told of every metrics record and checkpoint (progress display, run report). */
  observer?: RunObserver;
  /**
   * Choose conv and matmul tiles by measurement, cached on disk per adapter (core/train/autotune_step.ts):
   * "on", "auto" (not on CPU adapters) or "off"; default off (the reasoned tiles), so library runs and
   * tests stay deterministic.
   */
  autotune?: "on" | "off" | "auto";
  /** Profile steps after a warm-up, write the profile into the run folder and stop (`pretrain --profile`). */
  profile?: RunProfileOptions;
}

/** A process's part in a data-parallel run (see core/dist's `dataParallel`). */
export interface DistributedRole {
  /** This process's rank: rank 0 writes the run folder; each rank draws its own step-noise stream. */
  rank: number;
  /** The job-wide stop decision of a step from this rank's request (every rank calls it every step). */
  agreeStop(local: string | undefined): string | undefined | Promise<string | undefined>;
  /** The mean over ranks of this rank's interval means (loss, metrics), so rank 0 logs the global batch's. */
  averageMetrics?(local: Record<string, number>): Record<string, number> | Promise<Record<string, number>>;
  /** Called during backward as each parameter's gradient is complete (starts its averaging early). */
  onGradientReady?(param: Tensor): void;
}

/** Seed distance between the step-noise streams of data-parallel ranks (rank 0's is the single process's). */
const RANK_SEED_STRIDE = 1_000_003;

/** What a run did. */
export interface RunSummary {
  /** The run folder. */
  out: string;
  /** Optimizer steps done. */
  steps: number;
  /** Epochs done. */
  epochs: number;
  /** Mean training loss of the last logged interval. */
  lastLoss: number | null;
  /** Lowest validation loss. */
  bestValidationLoss: number | null;
  /** The signal (or "stopAfterStep") that stopped the run early. */
  stoppedBy?: string;
  /** Optimizer steps skipped because their gradients were not finite. */
  skippedSteps: number;
}

/** An open run: everything the steps of the pipeline share. */
export interface Run {
  /** The resolved config. */
  readonly config: ResolvedRunConfig;
  /** The device. */
  readonly gpu: Gpu;
  /** The plugins. */
  readonly arch: ArchitecturePlugin;
  /** The SSL-method plugin. */
  readonly method: SslMethodPlugin;
  /** `name@version` of each plugin. */
  readonly plugins: { architecture: string; method: string };
  /** Trainable modules. */
  readonly model: RunModel;
  /** Modules saved but not trained. */
  readonly frozen: FrozenModules;
  /** The method bound to the network. */
  readonly instance: MethodInstance;
  /** The optimizer over the packed groups. */
  readonly optimizer: Optimizer;
  /** The groups' names and learning-rate factors. */
  readonly groups: NamedGroup[];
  /** The step generator (dropout, drop path, noise), checkpointed. */
  readonly stepRng: Generator;
  /** Loss and metric sums of the current logging interval. */
  readonly accumulator: MetricAccumulator;
  /** Where lines go. */
  readonly log: (line: string) => void;
  /** Whether this process writes the run folder (false on data-parallel ranks other than 0). */
  readonly primary: boolean;
  /** Run folder paths. */
  readonly paths: { out: string; checkpoints: string; metrics: string; plot: string };
  /** Optimizer steps done. */
  step: number;
  /** Steps in the current logging interval. */
  intervalSteps: number;
  /** When the current logging interval started (performance.now()). */
  intervalStart: number;
  /** Lowest validation loss. */
  best: number | null;
  /** Mean loss of the last logged interval. */
  lastLoss: number | null;
  /** The TensorBoard event file (config `tensorboard`). */
  readonly tfevents?: TfEventsWriter;
  /** Time the current interval's steps waited for their batches. */
  readonly dataWait: DataWaitClock;
  /** Told of records and checkpoints. */
  readonly observer?: RunObserver;
}

const totalSteps = (config: ResolvedRunConfig) => config.epochs * config.stepsPerEpoch;
const epochOf = (run: Run) => Math.floor(run.step / run.config.stepsPerEpoch);

/** The forward pass of a step (and of validation) in the run's precision. */
function inPrecision<T>(run: Run, fn: () => T): T {
  return run.config.precision === "mixed" ? autocast(fn) : fn();
}

function checkLoss(run: Run, output: LossOutput): void {
  if (!output || typeof output !== "object" || !output.loss || typeof output.loss.size !== "number") {
    throw new PluginError(`plugin ${run.method.name}: loss() must return { loss: Tensor, metrics? }`);
  }
  if (output.loss.size !== 1) {
    throw new PluginError(
      `plugin ${run.method.name}: loss() returned a loss of shape [${output.loss.shape}]; it must be a scalar`,
    );
  }
  for (const [name, value] of Object.entries(output.metrics ?? {})) {
    if (value?.size !== 1) {
      throw new PluginError(
        `plugin ${run.method.name}: loss() returned metric "${name}" of shape [${value?.shape}]; it must be a scalar`,
      );
    }
  }
}

function defaultGpuOrUndefined(): Gpu | undefined {
  try {
    return getGpu();
  } catch {
    return undefined;
  }
}

/** Builds the run (or restores it from its latest checkpoint) and writes `config.json`. */
export async function openRun(options: TrainerOptions): Promise<Run> {
  const { config, arch, method } = options;
  const log = options.log ?? ((line: string) => console.log(line));
  const gpu = options.gpu ?? await initGpu();
  // plugins create their parameters and constants with the process's default device: another device
  // here would split the run over two devices
  if (options.gpu && options.gpu !== defaultGpuOrUndefined()) {
    throw new Error(
      "openRun(): options.gpu is not the process's default device, on which the plugins create their " +
        "tensors; make it the default first (setDefaultGpu)",
    );
  }
  const out = config.out;
  const paths = {
    out,
    checkpoints: join(out, "checkpoints"),
    metrics: join(out, "metrics.jsonl"),
    plot: join(out, "loss_curve.svg"),
  };
  await Deno.mkdir(paths.checkpoints, { recursive: true });
  const { model, frozen, instance } = buildRun(config, arch, method, gpu);
  const { groups: packed, named } = groupParameters(model, instance, method.name);
  const mixed = config.precision === "mixed";
  const optimizer = new Optimizer(packed, config.optimizer, {
    maxGradNorm: config.clipGradNorm,
    lossScale: { enabled: mixed, initScale: options.initialLossScale },
  });
  const primary = (options.distributed?.rank ?? 0) === 0;
  const run: Run = {
    config,
    gpu,
    arch,
    method,
    plugins: { architecture: `${arch.name}@${arch.version}`, method: `${method.name}@${method.version}` },
    model,
    frozen,
    instance,
    optimizer,
    groups: named,
    stepRng: new Generator(config.seed + 1 + (options.distributed?.rank ?? 0) * RANK_SEED_STRIDE, gpu),
    accumulator: new MetricAccumulator(gpu),
    log,
    primary,
    paths,
    step: 0,
    intervalSteps: 0,
    intervalStart: performance.now(),
    best: null,
    lastLoss: null,
    tfevents: config.tensorboard && primary ? new TfEventsWriter(out) : undefined,
    dataWait: new DataWaitClock(),
    observer: primary ? options.observer : undefined, // rank 0 alone reports
  };
  if (options.resume) await restoreRun(run);
  else {
    if (run.primary) await Deno.writeTextFile(paths.metrics, "");
    if (config.init) { // every rank starts from the same weights
      const { skipped } = await loadInitialWeights(model.network, config.init);
      log(
        `initial network weights from ${config.init}${
          skipped.length ? ` (${skipped.length} other keys skipped)` : ""
        }`,
      );
    }
  }
  if (run.primary) {
    await writeFileAtomic(
      join(out, "config.json"),
      JSON.stringify({ ...config, plugins: run.plugins, parameterGroups: named }, null, 2) + "\n",
    );
  }
  // packing the parameters into their groups' arenas freed their own buffers, whose sizes a step seldom
  // asks for again: handed back, they no longer sit in the pool (about 0.4 GB of ResEnc-L's reserve).
  // Flushed right before: a command not yet submitted may still use a freed buffer.
  await gpu.sync();
  gpu.flush();
  gpu.pool.trim();
  log(`run folder: ${out}`);
  if (mixed && !gpu.hasF16) {
    log(
      "note: precision mixed, but this device has no shader-f16: convolutions, matmuls and attention run in f32",
    );
  }
  const groupNote = named.length > 1
    ? `; parameter groups ${named.map((g) => `${g.name} (${g.count})`).join(", ")}`
    : "";
  log(
    `model: ${run.plugins.architecture} (${(model.network.parameterCount() / 1e6).toFixed(2)}M parameters` +
      `${model.network.encoderOnly ? ", encoder only" : ""}), method ${run.plugins.method}; ` +
      `${config.epochs} epochs × ${config.stepsPerEpoch} steps, batch ${config.batch}, ` +
      `patch ${config.patch.join("×")}, ${config.optimizer.name} lr ${config.optimizer.lr}${groupNote}`,
  );
  return run;
}

/** Loads `latest.safetensors` into an opened run: weights, buffers, optimizer, generator, accumulators. */
async function restoreRun(run: Run): Promise<void> {
  const path = join(run.paths.checkpoints, "latest.safetensors");
  const ckpt = await loadCheckpoint(path);
  const { plugins } = run;
  if (
    ckpt.meta.plugins.architecture !== plugins.architecture || ckpt.meta.plugins.method !== plugins.method
  ) {
    run.log(
      `note: checkpoint made with ${ckpt.meta.plugins.architecture} / ${ckpt.meta.plugins.method}; ` +
        `running ${plugins.architecture} / ${plugins.method}`,
    );
  }
  const saved = ckpt.meta.parameterGroups.map((g) => `${g.name}:${g.count}`).join(", ");
  const now = run.groups.map((g) => `${g.name}:${g.count}`).join(", ");
  if (saved !== now) {
    throw new Error(`${path}: saved with parameter groups [${saved}], this run groups them as [${now}]`);
  }
  const trainable = Object.fromEntries(
    Object.entries(ckpt.weights).filter(([k]) => !k.startsWith("frozen.")),
  );
  const frozen = Object.fromEntries(Object.entries(ckpt.weights).filter(([k]) => k.startsWith("frozen.")));
  loadStateDict(run.model, trainable, { source: path });
  loadStateDict(run.frozen, frozen, { source: path });
  run.optimizer.importState(ckpt.optimizer);
  // a data-parallel rank keeps its own stream (rank 0's is the saved one); every rank has drawn as often
  const rankOffset = run.stepRng.state.seed - (run.config.seed + 1);
  run.stepRng.state = { ...ckpt.meta.generator, seed: ckpt.meta.generator.seed + rankOffset };
  run.step = ckpt.meta.step;
  run.best = ckpt.meta.bestValidationLoss;
  run.accumulator.importState(ckpt.meta.accumulator);
  run.intervalSteps = ckpt.meta.intervalSteps;
  if (run.primary) await truncateMetrics(run.paths.metrics, run.step);
  run.log(`resumed ${run.paths.out} at step ${run.step} (epoch ${epochOf(run)})`);
}

/**
 * One optimizer step on `host`: upload → loss (in the run's precision) → backward → gradient hook →
 * optimizer → the method's after-step hook. Records GPU work only; nothing is read back. `lr` is the
 * scheduled rate (scaled by each group's factor), or one rate per group as given, `null` freezing that
 * group for the step (fine-tuning's decoder-first phase).
 */
export async function trainStep(
  run: Run,
  host: HostBatch,
  lr: number | readonly (number | null)[],
  gradientHook?: TrainerOptions["gradientHook"],
  onGradientReady?: DistributedRole["onGradientReady"],
): Promise<void> {
  const { optimizer, instance, method } = run;
  const mixed = run.config.precision === "mixed";
  optimizer.zeroGrad();
  run.model.train();
  scope(() => {
    const batch = uploadBatch(host, run.gpu, method.name);
    const context = { step: run.step, epoch: epochOf(run), training: true, rng: run.stepRng };
    const output = callPlugin(
      method.name,
      "loss",
      () => inPrecision(run, () => instance.loss(batch, context)),
    );
    checkLoss(run, output);
    run.accumulator.add("loss", output.loss);
    for (const [name, value] of Object.entries(output.metrics ?? {})) run.accumulator.add(name, value);
    backward(
      output.loss,
      mixed ? optimizer.lossScaleSeed() : undefined,
      onGradientReady ? { onLeafGradient: onGradientReady } : undefined,
    );
  });
  await gradientHook?.(optimizer.groups);
  optimizer.step(typeof lr === "number" ? run.groups.map((g) => lr * g.lrScale) : lr);
  run.step++;
  run.intervalSteps++;
  if (instance.afterStep) {
    const rate = typeof lr === "number" ? lr : Math.max(0, ...lr.map((r) => r ?? 0));
    const event = { step: run.step, epoch: epochOf(run), epochs: run.config.epochs, lr: rate };
    callPlugin(method.name, "afterStep", () => scope(() => noGrad(() => instance.afterStep!(event))));
  }
}

/** Reads the interval's means, appends them to metrics.jsonl, prints the progress line, resets. */
export async function logInterval(
  run: Run,
  lr: number,
  distributed?: DistributedRole,
): Promise<MetricsRecord> {
  const means = await run.accumulator.means();
  const { loss, ...metrics } = distributed?.averageMetrics ? await distributed.averageMetrics(means) : means;
  const status = await run.optimizer.readStatus();
  const seconds = (performance.now() - run.intervalStart) / 1000;
  const rate = run.intervalSteps / seconds;
  const { bytesInUse: memory, peakBytesInUse: peak } = run.gpu.pool.stats();
  run.gpu.pool.resetPeak();
  const total = totalSteps(run.config);
  const epoch = Math.floor((run.step - 1) / run.config.stepsPerEpoch);
  const dataWait = run.dataWait.take() / run.intervalSteps;
  const record: MetricsRecord = {
    kind: "train",
    step: run.step,
    epoch,
    loss,
    ...(Object.keys(metrics).length ? { metrics } : {}),
    lr,
    stepsPerSecond: rate,
    gradNorm: status.gradNorm,
    lossScale: status.lossScale,
    skippedSteps: status.skipped,
    gpuMemoryBytes: memory,
    gpuPeakBytes: peak,
    dataWaitSeconds: dataWait,
  };
  if (run.primary) await recordMetrics(run, record);
  const shown = Object.entries(metrics).map(([k, v]) => `  ${k} ${v.toPrecision(4)}`).join("");
  run.log(
    `step ${run.step}/${total} (epoch ${epoch + 1}/${run.config.epochs})  loss ${
      loss.toPrecision(5)
    }${shown}  ` +
      `lr ${lr.toExponential(2)}  ${rate.toFixed(2)} steps/s  ETA ${
        formatDuration((total - run.step) / rate)
      }  ` +
      `GPU ${(memory / 2 ** 20).toFixed(0)} MiB  data wait ${(dataWait * 1000).toFixed(0)} ms/step` +
      (status.skipped ? `  skipped ${status.skipped}` : ""),
  );
  run.lastLoss = loss;
  run.accumulator.reset();
  run.intervalSteps = 0;
  run.intervalStart = performance.now();
  await writePlot(run);
  return record;
}

/** Mean loss and metrics over the validation batches (network in eval mode, no gradients). */
export async function validate(
  run: Run,
  source: BatchSource,
): Promise<{ loss: number; metrics: Record<string, number> }> {
  run.model.eval();
  const sums = new MetricAccumulator(run.gpu);
  try {
    for (let i = 0; i < run.config.validationBatches; i++) {
      const host = await source.batch(i);
      scope(() =>
        noGrad(() => {
          const batch = uploadBatch(host, run.gpu, run.method.name);
          const context = { step: i, epoch: epochOf(run), training: false, rng: run.stepRng };
          const output = callPlugin(
            run.method.name,
            "loss",
            () => inPrecision(run, () => run.instance.loss(batch, context)),
          );
          checkLoss(run, output);
          sums.add("loss", output.loss);
          for (const [name, value] of Object.entries(output.metrics ?? {})) sums.add(name, value);
        })
      );
    }
    const { loss, ...metrics } = await sums.means();
    return { loss, metrics };
  } finally {
    sums.dispose();
    run.model.train();
  }
}

/** Writes a checkpoint of the run into `checkpoints/<name>`. */
export async function saveRunCheckpoint(run: Run, name: string, coreVersion: string): Promise<void> {
  if (!run.primary) return;
  const meta: Checkpoint["meta"] = {
    format: CHECKPOINT_FORMAT,
    coreVersion,
    step: run.step,
    epoch: epochOf(run),
    config: run.config,
    plugins: run.plugins,
    generator: run.stepRng.state,
    bestValidationLoss: run.best,
    adaptationPlan: run.model.network.adaptationPlan(),
    savedAt: new Date().toISOString(),
    parameterGroups: run.groups.map((g) => ({ name: g.name, count: g.count })),
    accumulator: await run.accumulator.exportState(),
    intervalSteps: run.intervalSteps,
  };
  await saveCheckpoint(join(run.paths.checkpoints, name), {
    meta,
    weights: { ...await stateDict(run.model), ...await stateDict(run.frozen) },
    optimizer: await run.optimizer.exportState(),
  });
}

/** End of an epoch: the method's hook, validation (best checkpoint), then `latest`. */
async function endEpoch(run: Run, options: TrainerOptions): Promise<void> {
  const epoch = epochOf(run) - 1;
  if (run.instance.endOfEpoch) {
    const event = { epoch, epochs: run.config.epochs, step: run.step };
    await callPlugin(run.method.name, "endOfEpoch", () => run.instance.endOfEpoch!(event));
  }
  if (options.validation && run.config.validationBatches > 0 && run.primary) {
    const { loss, metrics } = await validate(run, options.validation);
    await recordMetrics(run, {
      kind: "validation",
      step: run.step,
      epoch,
      loss,
      ...(Object.keys(metrics).length ? { metrics } : {}),
    });
    const improved = run.best === null || loss < run.best;
    const shown = Object.entries(metrics).map(([k, v]) => `  ${k} ${v.toPrecision(4)}`).join("");
    run.log(
      `validation after epoch ${epoch + 1}: loss ${loss.toPrecision(5)}${shown}${improved ? " (best)" : ""}`,
    );
    if (improved) {
      run.best = loss;
      await saveRunCheckpoint(run, "best.safetensors", options.coreVersion);
    }
    await writePlot(run);
  }
  await saveRunCheckpoint(run, "latest.safetensors", options.coreVersion);
  await notifyCheckpoint(run, "epoch");
}

/** The end of a finished run: `latest`, `final`, and the network alone in the reference's state-dict form. */
export async function finishRun(run: Run, coreVersion: string): Promise<void> {
  await saveRunCheckpoint(run, "latest.safetensors", coreVersion);
  await saveRunCheckpoint(run, "final.safetensors", coreVersion);
  const network = join(run.paths.out, "network.safetensors");
  if (run.primary) {
    await writeFileAtomic(
      network,
      encodeSafetensors(await referenceStateDict(run.model.network), {
        format: "pt",
        voxssl: JSON.stringify({ plugins: run.plugins, adaptationPlan: run.model.network.adaptationPlan() }),
      }),
    );
  }
  run.log(
    `finished: ${run.step} steps; checkpoints in ${run.paths.checkpoints}, network weights in ${network}`,
  );
}

/** Frees the run's GPU memory. */
export function closeRun(run: Run): void {
  const groups = run.optimizer.groups;
  run.optimizer.dispose();
  run.accumulator.dispose();
  run.model.dispose(); // the parameters and gradients: views into the group arenas
  for (const g of groups) {
    // the arenas' own references (packParameters made them)
    g.params.whole.dispose();
    g.grads.whole.dispose();
  }
  run.frozen.dispose();
}

async function writePlot(run: Run): Promise<void> {
  if (!run.primary) return;
  const title = `${run.plugins.architecture} · ${run.plugins.method} · ${run.paths.out}`;
  await writeFileAtomic(run.paths.plot, lossCurveSvg(await readMetrics(run.paths.metrics), title));
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
  const run = await openRun(options);
  if (options.autotune && options.autotune !== "off") await startAutotune(run.gpu, options.autotune, run.log);
  const { config } = run;
  const total = totalSteps(config);
  const stop = listenForStop(run.log);
  const health = new HealthMonitor(
    config.health ?? DEFAULT_HEALTH,
    run.method.name,
    await readMetrics(run.paths.metrics),
  );
  let stoppedBy: string | undefined;
  const profile = options.profile ? new RunProfile(options.profile, run) : undefined;
  try {
    while (run.step < total) {
      const lr = learningRate(config.schedule, config.optimizer.lr, epochOf(run), config.epochs);
      setActivity(`step ${run.step + 1}: waiting for the batch`);
      const waitStart = performance.now();
      const host = await run.dataWait.time(() => options.train.batch(run.step));
      setActivity(`step ${run.step + 1}: training`);
      const work = () => trainStep(run, host, lr, options.gradientHook, options.distributed?.onGradientReady);
      if (profile) await profile.step(work, performance.now() - waitStart);
      else await work();
      run.observer?.step?.(run);
      const endOfEpoch = run.step % config.stepsPerEpoch === 0;
      const logged = run.step % config.logEvery === 0 || endOfEpoch || run.step === total;
      if (logged) {
        const steps = run.intervalSteps;
        // every rank logs the same averaged loss and skip count, so all ranks stop alike
        const verdict = health.check(await logInterval(run, lr, options.distributed), steps);
        if (verdict) {
          if (verdict.kind === "skipped-steps") {
            await saveRunCheckpoint(run, "latest.safetensors", options.coreVersion);
          }
          throw new RunStoppedError(`${verdict.message}; run folder ${run.paths.out}`);
        }
      }
      if (options.autotune && options.autotune !== "off") {
        setActivity(`step ${run.step}: autotuning conv and matmul tiles`);
        // after the log line, so its memory peak is the step's; the probes' buffers then leave the peak
        if (await tuneNewShapes(run.gpu, run.log) && logged) run.gpu.pool.resetPeak();
      }
      setActivity(`step ${run.step}: end of step (validation, checkpoint)`);
      if (endOfEpoch) await endEpoch(run, options);
      const local = stop.requested ?? (options.stopAfterStep === run.step ? "stopAfterStep" : undefined) ??
        (profile?.finished ? "profile" : undefined);
      const request = options.distributed ? await options.distributed.agreeStop(local) : local;
      if (request && run.step < total) {
        await saveRunCheckpoint(run, "latest.safetensors", options.coreVersion);
        await notifyCheckpoint(run, "stopped");
        run.log(`stopped by ${request} at step ${run.step}; resume with --resume ${run.paths.out}`);
        stoppedBy = request;
        break;
      }
    }
    if (!stoppedBy) {
      await finishRun(run, options.coreVersion);
      await notifyCheckpoint(run, "final");
    }
  } finally {
    stop.dispose();
    closeRun(run);
  }
  return {
    out: run.paths.out,
    steps: run.step,
    epochs: epochOf(run),
    lastLoss: run.lastLoss,
    bestValidationLoss: run.best,
    stoppedBy,
    skippedSteps: health.skipped,
  };
}
