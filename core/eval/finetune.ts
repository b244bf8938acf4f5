/**
 * Segmentation fine-tuning (`voxssl finetune`, and the benchmark's cells): the architecture with one
 * output per class, its encoder and stem loaded from a pretraining checkpoint through the adaptation
 * plan (or from scratch), nnU-Net's Dice + CE, foreground oversampling and augmentation, a fine-tuning
 * schedule (warm-up + poly, or the decoder-first sawtooth), on a seeded split and label fraction.
 *
 * It runs on the Trainer's pipeline (core/train): `openRun` builds, groups and restores; `trainStep` takes
 * one rate per parameter group ("encoder", "decoder"; null freezes the encoder); checkpoints, resume,
 * SIGINT/SIGTERM/SIGUSR1, `metrics.jsonl` and the network export are the Trainer's. At the end the run
 * scores its test cases (test_score.ts) into `<out>/test_scores.json`.
 *
 * @module
 */
import { join } from "node:path";
import { type Augmentation, resolveAugmentation, type Shape3 } from "../data/mod.ts";
import type { Gpu } from "../gpu/mod.ts";
import { writeFileAtomic } from "../nn/mod.ts";
import { type OptimizerConfig, OptimizerSchema } from "../optim/mod.ts";
import type { ArchitecturePlugin, Vec3 } from "../plugin/mod.ts";
import {
  type BatchSource,
  closeRun,
  finishRun,
  listenForStop,
  loadCheckpoint,
  logInterval,
  openRun,
  type ResolvedRunConfig,
  type Run,
  saveRunCheckpoint,
  trainStep,
} from "../train/mod.ts";
import type { RunObserver } from "../train/run_events.ts";
import { loadPretrainedEncoder, readPretrainedWeights } from "./adapt.ts";
import {
  asConfigError,
  describeEncoderLoad,
  downstreamKeys,
  downstreamRunConfig,
  resolveDownstreamArch,
} from "./downstream_run_config.ts";
import { underPrefix } from "./downstream_method_config.ts";
import { finetuneRates, type FinetuneSchedule, FinetuneScheduleSchema } from "./schedule.ts";
import { segmentationBatches, type SegmentationCase } from "./seg_batches.ts";
import { type SegmentationConfig, segmentationMethod } from "./segmentation_method.ts";
import { type CaseSplit, labelFraction, seededSplit } from "./splits.ts";
import { scoreCases, type TestScore } from "./test_score.ts";

export { FinetuneConfigError } from "./downstream_run_config.ts";

/** A downstream dataset in memory, preprocessed (normalised; resampled when a spacing is given). */
export interface SegmentationDataset {
  /** The dataset's name. */
  name: string;
  /** dataset.json's labels, name → value (background 0). */
  labels: Record<string, number>;
  /** dataset.json's channel names, in channel order. */
  channelNames: string[];
  /** The spacing [D, H, W] mm the cases were resampled to (null: as they were). */
  spacing: Vec3 | null;
  /** The cases (every id unique; each with one image per channel). */
  cases: SegmentationCase[];
}

/** Inputs of {@link finetuneSegmentation}. */
export interface FinetuneOptions {
  /** The dataset. */
  dataset: SegmentationDataset;
  /** The architecture plugin. */
  arch: ArchitecturePlugin;
  /** Its size preset ("tiny", "l", …); default: the pretraining checkpoint's config, else the plugin's defaults. */
  size?: string;
  /** Overrides of the architecture config. */
  archConfig?: Record<string, unknown>;
  /** A pretraining checkpoint or `network.safetensors` (undefined: from scratch). */
  pretrained?: string;
  /** The run folder (default runs/<time>-<arch>-finetune). */
  out?: string;
  /** The running core's version. */
  coreVersion: string;
  /** Epochs (default 10). */
  epochs?: number;
  /** Steps per epoch (default 25; nnU-Net: 250). */
  stepsPerEpoch?: number;
  /** Samples per step (default 2). */
  batch?: number;
  /** Patch [D, H, W] (default: the plan's recommended downstream patch, else 160³). */
  patch?: Vec3;
  /** Base learning rate (default: nnssl's, 1e-3 CNN / 1e-4 ViT; from scratch 1e-2 / 3e-4). */
  lr?: number;
  /** The optimizer (default: SGD Nesterov 0.99 wd 3e-5 for CNNs, AdamW (0.9, 0.98) wd 5e-2 for ViTs). */
  optimizer?: OptimizerConfig;
  /**
   * The optimizer by kind, with nnssl's fine-tuning settings of that kind whatever the architecture
   * (`"sgd"`: ResEnc's, lr 1e-3, scratch 1e-2; `"adamw"`: Primus's, lr 1e-4, scratch 3e-4); ignored when
   * `optimizer` is given. Default: the family's.
   */
  optimizerKind?: "sgd" | "adamw";
  /** Gradient-norm clip (default 12 CNN, 1 ViT). */
  clipGradNorm?: number;
  /** The schedule (default warm-up + poly). */
  schedule?: Partial<FinetuneSchedule>;
  /** A given split (default: seeded 50/50 with `splitSeed`). */
  split?: CaseSplit;
  /** Seed of the 50/50 split and of the label fraction (default 0). */
  splitSeed?: number;
  /** Fraction of the training cases to train on (default 1). */
  labelFraction?: number;
  /** Seed of initialisation and batches (default 0). */
  seed?: number;
  /** Batch Dice (default false, nnU-Net's 3d_fullres). */
  batchDice?: boolean;
  /**
   * Deep supervision (default false, as nnssl's fine-tuning trainers): Dice + CE at every decoder
   * resolution with nnU-Net's weights; architectures without a multi-scale decoder refuse it.
   */
  deepSupervision?: boolean;
  /** Foreground oversampling (default 0.33). */
  foregroundFraction?: number;
  /** Augmentation preset (default "nnunet"). */
  augmentation?: "nnunet" | "none";
  /** Precision (default f32). */
  precision?: "f32" | "mixed";
  /** Log every N steps (default 5). */
  logEvery?: number;
  /** Continue `out` from its latest checkpoint (its recorded config wins over these options). */
  resume?: boolean;
  /** Stop with a checkpoint after this many steps in total (tests). */
  stopAfterStep?: number;
  /** Score the test cases at the end (default true). */
  evaluate?: boolean;
  /**
   * The scoring window (default the training patch); a CNN also takes a larger one, e.g. one that
   * covers whole cases (one forward per case).
   */
  scoreWindow?: Vec3;
  /** Where lines go (default console.log). */
  log?: (line: string) => void;
  /** Told of every step, metrics record and checkpoint (a progress display). */
  observer?: RunObserver;
  /** The device (default the process's). */
  gpu?: Gpu;
}

/** What a fine-tuning run did. */
export interface FinetuneResult {
  /** The run folder. */
  out: string;
  /** The checkpoint to predict with (`final`, or `latest` when stopped early). */
  checkpoint: string;
  /** Optimizer steps done. */
  steps: number;
  /** Test-set Dice (null when stopped early or not evaluated). */
  scores: TestScore | null;
  /** The signal (or "stopAfterStep") that stopped the run early. */
  stoppedBy?: string;
}

function checkDataset(d: SegmentationDataset): number {
  const values = Object.values(d.labels);
  const classes = Math.max(...values) + 1;
  if (!values.includes(0) || new Set(values).size !== classes) {
    throw new Error(
      `dataset ${d.name}: labels must be 0…C−1 with background 0, got ${JSON.stringify(d.labels)}`,
    );
  }
  const ids = new Set<string>();
  for (const c of d.cases) {
    if (ids.has(c.id)) throw new Error(`dataset ${d.name}: case "${c.id}" appears twice`);
    ids.add(c.id);
    if (c.image.length !== d.channelNames.length) {
      throw new Error(
        `dataset ${d.name}: case "${c.id}" has ${c.image.length} channel(s), expected ${d.channelNames.length}`,
      );
    }
  }
  return classes;
}

/** Builds the run config of a fresh fine-tuning run. */
async function resolveFinetuneConfig(o: FinetuneOptions, classes: number): Promise<ResolvedRunConfig> {
  const family = o.arch.family;
  const arch = await resolveDownstreamArch(o);
  const { pre } = arch;
  const method = segmentationMethod(o.coreVersion);
  const schedule = FinetuneScheduleSchema.parse({
    ...(family === "vit" && o.schedule?.name === "sawtooth" ? { decoderLrFactor: 0.01 } : {}),
    ...o.schedule,
  });
  if (o.deepSupervision && !o.arch.deepSupervision) {
    throw new Error(
      `deep supervision: architecture ${o.arch.name} has no multi-scale decoder to supervise ` +
        "(it outputs at full resolution only); fine-tune it without deep supervision",
    );
  }
  if (schedule.name === "sawtooth" && !pre) {
    throw new Error("the sawtooth schedule fine-tunes a pretrained encoder: give --pretrained");
  }
  if (schedule.nnsslQuirk && family !== "cnn") {
    throw new Error("nnsslQuirk reproduces nnssl's ResEnc sawtooth (its Primus variant freezes correctly)");
  }
  const kind = o.optimizerKind ?? (family === "cnn" ? "sgd" : "adamw");
  const byKind = method.defaults[kind === "sgd" ? "cnn" : "vit"]!.optimizer!;
  const scratchLr = kind === "sgd" ? 1e-2 : 3e-4;
  const optimizer = OptimizerSchema.parse({
    ...(o.optimizer ?? byKind),
    ...(o.lr ? { lr: o.lr } : !o.optimizer && !pre ? { lr: scratchLr } : {}),
  });
  const ids = o.dataset.cases.map((c) => c.id);
  const splitSeed = o.splitSeed ?? 0;
  const split = o.split ?? seededSplit(ids, splitSeed);
  const fraction = o.labelFraction ?? 1;
  const train = labelFraction(split.train, fraction, splitSeed);
  const inChannels = o.dataset.channelNames.length;
  const segmentation: SegmentationConfig = {
    classes,
    labels: o.dataset.labels,
    channelNames: o.dataset.channelNames,
    dataset: o.dataset.name,
    spacing: o.dataset.spacing,
    normalization: o.dataset.channelNames.map(() => "zscore" as const),
    batchDice: o.batchDice ?? false,
    deepSupervision: o.deepSupervision ?? false,
    foregroundFraction: o.foregroundFraction ?? 0.33,
    schedule,
    pretrained: o.pretrained ?? null,
    ...downstreamKeys(pre, inChannels),
    split: { train, test: split.test },
    labelFraction: fraction,
  };
  return downstreamRunConfig(o, {
    method,
    methodConfig: segmentation,
    arch,
    optimizer,
    data: o.dataset.name,
    inChannels,
    command: "finetune",
  });
}

/** Runs (or resumes) a fine-tuning run to its end or a stop request, then scores its test cases. */
export async function finetuneSegmentation(o: FinetuneOptions): Promise<FinetuneResult> {
  const log = o.log ?? ((line: string) => console.log(line));
  const classes = await asConfigError(() => checkDataset(o.dataset));
  const config: ResolvedRunConfig = await asConfigError(async () => {
    if (!o.resume) return await resolveFinetuneConfig(o, classes);
    if (!o.out) throw new Error("resume: give the run folder (out)");
    return (await loadCheckpoint(join(o.out, "checkpoints", "latest.safetensors"))).meta.config;
  });
  const seg = config.resolvedMethod.config as SegmentationConfig;
  const byId = new Map(o.dataset.cases.map((c) => [c.id, c]));
  const pick = (ids: string[]) =>
    ids.map((id) => {
      const c = byId.get(id);
      if (!c) throw new Error(`dataset ${o.dataset.name} has no case "${id}" (the run's split names it)`);
      return c;
    });
  const [trainCases, testCases] = await asConfigError(() => [pick(seg.split.train), pick(seg.split.test)]);
  const augmentation: Augmentation = resolveAugmentation(config.augmentation);
  const train = segmentationBatches(
    trainCases,
    {
      patch: config.patch as Shape3,
      augmentation,
      foregroundFraction: seg.foregroundFraction,
      classes: seg.classes,
    },
    config.batch,
    config.seed,
  );
  const method = segmentationMethod(o.coreVersion);
  const run = await openRun({
    config,
    arch: o.arch,
    method,
    train,
    coreVersion: o.coreVersion,
    resume: o.resume,
    log,
    observer: o.observer,
    gpu: o.gpu,
    stopAfterStep: o.stopAfterStep,
  });
  log(
    `fine-tuning ${seg.pretrained ? `from ${seg.pretrained}` : "from scratch"} on ${seg.dataset}: ` +
      `${trainCases.length} training case(s) (label fraction ${seg.labelFraction}), ${testCases.length} test; ` +
      `${seg.classes} classes${
        seg.deepSupervision ? ", deep supervision" : ""
      }; schedule ${seg.schedule.name}${seg.schedule.nnsslQuirk ? " (nnssl's ResEnc quirk)" : ""}`,
  );
  const stop = listenForStop(run.log);
  let stoppedBy: string | undefined;
  let scores: TestScore | null = null;
  try {
    if (!o.resume && seg.pretrained) {
      const report = loadPretrainedEncoder(
        run.model.network,
        await readPretrainedWeights(seg.pretrained),
        config.patch,
      );
      log(describeEncoderLoad(report));
    }
    stoppedBy = await finetuneLoop(run, o, seg, stop, train);
    if (!stoppedBy) {
      await finishRun(run, o.coreVersion);
      if (o.evaluate ?? true) {
        scores = await scoreCases(
          run.model.network,
          testCases,
          (o.scoreWindow ?? config.patch) as Shape3,
          seg.classes,
        );
        await writeFileAtomic(
          join(run.paths.out, "test_scores.json"),
          JSON.stringify(scores, null, 2) + "\n",
        );
        log(
          `test Dice (${testCases.length} cases): ${
            scores.perClass.map((d, k) => `${labelName(seg, k + 1)} ${d.toFixed(4)}`).join(", ")
          }; mean ${scores.meanDice.toFixed(4)}`,
        );
      }
    }
  } finally {
    stop.dispose();
    closeRun(run);
    await train.close();
  }
  return {
    out: run.paths.out,
    checkpoint: join(run.paths.checkpoints, stoppedBy ? "latest.safetensors" : "final.safetensors"),
    steps: run.step,
    scores,
    stoppedBy,
  };
}

function labelName(seg: SegmentationConfig, value: number): string {
  return Object.entries(seg.labels).find(([, v]) => v === value)?.[0] ?? String(value);
}

/**
 * The fine-tuning loop shared by segmentation and classification: each step takes the schedule's rates
 * (null freezes the encoder group: no gradient, no update), logs, saves `latest` at each epoch's end,
 * and stops with a checkpoint on a stop request or `stopAfterStep`. Returns what stopped it early.
 */
export async function finetuneLoop(
  run: Run,
  o: Pick<FinetuneOptions, "coreVersion" | "stopAfterStep">,
  seg: Pick<SegmentationConfig, "schedule" | "encoderKeys" | "decoderKeys">,
  stop: { requested?: string },
  train: BatchSource,
): Promise<string | undefined> {
  const { config } = run;
  const total = config.epochs * config.stepsPerEpoch;
  const encoderParams = [...run.model.network.namedParameters()]
    .filter(([n]) => underPrefix(n, seg.encoderKeys) && !underPrefix(n, seg.decoderKeys))
    .map(([, t]) => t);
  const groupOf = run.groups.map((g) => g.name);
  while (run.step < total) {
    const rates = finetuneRates(seg.schedule, config.optimizer.lr, run.step, total);
    if (rates.resetOptimizer) {
      await run.optimizer.resetMoments();
      run.log(
        `step ${run.step}: whole-network phase; a new optimizer state (moments reset) as nnssl's sawtooth`,
      );
    }
    const frozen = rates.encoder === null;
    for (const p of encoderParams) p.requiresGrad = !frozen;
    const perGroup = groupOf.map((name) => (name === "encoder" ? rates.encoder : rates.decoder));
    await trainStep(run, await train.batch(run.step), perGroup);
    run.observer?.step?.(run);
    const endOfEpoch = run.step % config.stepsPerEpoch === 0;
    if (run.step % config.logEvery === 0 || endOfEpoch || run.step === total) {
      await logInterval(run, rates.decoder);
    }
    if (endOfEpoch && run.step < total) await saveRunCheckpoint(run, "latest.safetensors", o.coreVersion);
    const request = stop.requested ?? (o.stopAfterStep === run.step ? "stopAfterStep" : undefined);
    if (request && run.step < total) {
      await saveRunCheckpoint(run, "latest.safetensors", o.coreVersion);
      run.log(`stopped by ${request} at step ${run.step}; resume with --resume ${run.paths.out}`);
      return request;
    }
  }
  for (const p of encoderParams) p.requiresGrad = true;
  return undefined;
}
