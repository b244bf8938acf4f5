/**
 * Classification fine-tuning (`voxssl classify`): the architecture's encoder, loaded from a pretraining
 * checkpoint through its adaptation plan (or from scratch), with the pooled-encoder head, trained with
 * label-smoothed cross-entropy under segmentation's schedules (warm-up + poly, or the sawtooth that
 * trains the head first with the encoder really frozen) on a seeded stratified split and label fraction,
 * then scored on the test cases: `<out>/test_predictions.csv` and `<out>/test_scores.json` (score.ts).
 *
 * It runs on the Trainer's pipeline as segmentation does (finetune.ts): `openRun`, the shared
 * `finetuneLoop`, checkpoints, resume, signals, `metrics.jsonl`; only the method (method.ts), the
 * batches (batches.ts) and the scoring differ.
 *
 * @module
 */
import { join } from "node:path";
import { resolveAugmentation, type Shape3 } from "../../data/mod.ts";
import type { Gpu } from "../../gpu/mod.ts";
import { type OptimizerConfig, OptimizerSchema } from "../../optim/mod.ts";
import type { ArchitecturePlugin, Vec3 } from "../../plugin/mod.ts";
import {
  closeRun,
  finishRun,
  formatIssues,
  listenForStop,
  loadCheckpoint,
  openRun,
  type ResolvedRunConfig,
} from "../../train/mod.ts";
import type { RunObserver } from "../../train/run_events.ts";
import { loadPretrainedEncoder, readPretrainedWeights } from "../adapt.ts";
import {
  asConfigError,
  describeEncoderLoad,
  downstreamKeys,
  downstreamRunConfig,
  resolveDownstreamArch,
} from "../downstream_run_config.ts";
import { finetuneLoop } from "../finetune.ts";
import { type FinetuneSchedule, FinetuneScheduleSchema } from "../schedule.ts";
import type { CaseSplit } from "../splits.ts";
import { classificationBatches } from "./batches.ts";
import type { ClassificationData } from "./data.ts";
import type { ClassificationHead } from "./head.ts";
import { CLASSIFICATION_METHOD, type ClassificationConfig, classificationMethod } from "./method.ts";
import { type ClassificationScores, scoreClassifier, writeClassificationScores } from "./score.ts";
import { stratifiedLabelFraction, stratifiedSplit } from "./split.ts";

/** Inputs of {@link finetuneClassification}. */
export interface ClassificationFinetuneOptions {
  /** The preprocessed dataset. */
  data: ClassificationData;
  /** The architecture plugin. */
  arch: ArchitecturePlugin;
  /** Its size preset; default: the pretraining checkpoint's config, else the plugin's defaults. */
  size?: string;
  /** Overrides of the architecture config. */
  archConfig?: Record<string, unknown>;
  /** A pretraining checkpoint or `network.safetensors` (undefined: from scratch). */
  pretrained?: string;
  /** The run folder (default runs/<time>-<arch>-classify). */
  out?: string;
  /** The running core's version. */
  coreVersion: string;
  /** Epochs (default 10). */
  epochs?: number;
  /** Steps per epoch (default 25). */
  stepsPerEpoch?: number;
  /** Samples per step (default 2). */
  batch?: number;
  /** Patch [D, H, W] (default: the plan's recommended downstream patch, else 160³). */
  patch?: Vec3;
  /** Base learning rate (default 1e-4, SSL3D_classification's, pretrained or not). */
  lr?: number;
  /** The optimizer (default AdamW, weight decay 1e-2). */
  optimizer?: OptimizerConfig;
  /** Gradient-norm clip (default 12 CNN, 1 ViT). */
  clipGradNorm?: number;
  /** The schedule (default warm-up + poly with a 10 % warm-up: SSL3D_classification's 20 of 200 epochs). */
  schedule?: Partial<FinetuneSchedule>;
  /** A given split (default: seeded, stratified 50/50 with `splitSeed`). */
  split?: CaseSplit;
  /** Seed of the split and of the label fraction (default 0). */
  splitSeed?: number;
  /** Fraction of each class's training cases to train on (default 1). */
  labelFraction?: number;
  /** Seed of initialisation, batches and dropout (default 0). */
  seed?: number;
  /** Label smoothing ε (default 0.2). */
  labelSmoothing?: number;
  /** Head dropout (default 0.2). */
  dropout?: number;
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
  /** Where lines go (default console.log). */
  log?: (line: string) => void;
  /** Told of every step, metrics record and checkpoint. */
  observer?: RunObserver;
  /** The device (default the process's). */
  gpu?: Gpu;
}

/** What a classification run did. */
export interface ClassificationFinetuneResult {
  /** The run folder. */
  out: string;
  /** The checkpoint (`final`, or `latest` when stopped early). */
  checkpoint: string;
  /** Optimizer steps done. */
  steps: number;
  /** Test-set scores (null when stopped early or not evaluated). */
  scores: ClassificationScores | null;
  /** The signal (or "stopAfterStep") that stopped the run early. */
  stoppedBy?: string;
}

function checkData(d: ClassificationData): void {
  if (d.classes.length < 2) {
    throw new Error(
      `${d.name}: only one class (${
        d.classes.join("")
      }) in the label column; classification needs at least 2`,
    );
  }
  for (const c of d.cases) {
    if (c.image.length !== d.channelNames.length) {
      throw new Error(
        `${d.name}: case "${c.id}" has ${c.image.length} channel(s), expected ${d.channelNames.length}`,
      );
    }
  }
}

/** Builds the run config of a fresh classification run. */
async function resolveConfig(o: ClassificationFinetuneOptions): Promise<ResolvedRunConfig> {
  const family = o.arch.family;
  const arch = await resolveDownstreamArch(o);
  const { pre } = arch;
  const method = classificationMethod(o.coreVersion);
  const defaults = method.defaults[family]!;
  // the head phase of the sawtooth runs at lr for ViTs too: nnssl's Primus factor 0.01 is for its
  // segmentation decoder, and a fresh linear head at 1e-6 would hardly move
  const schedule = FinetuneScheduleSchema.parse({ warmup: 0.1, ...o.schedule });
  if (schedule.name === "sawtooth" && !pre) {
    throw new Error("the sawtooth schedule fine-tunes a pretrained encoder: give --pretrained");
  }
  if (schedule.nnsslQuirk) {
    throw new Error(
      "nnsslQuirk reproduces nnssl's ResEnc segmentation sawtooth; classification has no decoder",
    );
  }
  const optimizer = OptimizerSchema.parse({
    ...(o.optimizer ?? defaults.optimizer),
    ...(o.lr ? { lr: o.lr } : {}),
  });
  const byId = new Map(o.data.cases.map((c) => [c.id, c]));
  const splitSeed = o.splitSeed ?? 0;
  const split = o.split ?? stratifiedSplit(o.data.cases, splitSeed);
  const labelled = (ids: string[], side: string) =>
    ids.map((id) => {
      const c = byId.get(id);
      if (!c) throw new Error(`split: ${side} case "${id}" is not in ${o.data.name}`);
      return c;
    });
  const fraction = o.labelFraction ?? 1;
  const train = stratifiedLabelFraction(labelled(split.train, "train"), fraction, splitSeed);
  const trainClasses = new Set(train.map((id) => byId.get(id)!.classIndex));
  if (trainClasses.size < 2) {
    throw new Error(
      `the training split of ${o.data.name} holds one class only (${
        o.data.classes[[...trainClasses][0]]
      }); classification needs at least 2`,
    );
  }
  labelled(split.test, "test");
  const inChannels = o.data.channelNames.length;
  const classification: ClassificationConfig = {
    classes: o.data.classes,
    channelNames: o.data.channelNames,
    dataset: o.data.name,
    spacing: o.data.spacing,
    normalization: o.data.channelNames.map(() => "zscore" as const),
    labelSmoothing: o.labelSmoothing ?? 0.2,
    dropout: o.dropout ?? 0.2,
    schedule,
    pretrained: o.pretrained ?? null,
    ...downstreamKeys(pre, inChannels),
    split: { train, test: split.test },
    labelFraction: fraction,
  };
  const parsed = method.config.safeParse(classification);
  if (!parsed.success) throw new Error(formatIssues(parsed.error, "classification config"));
  return downstreamRunConfig(o, {
    method,
    methodConfig: parsed.data,
    arch,
    optimizer,
    data: o.data.name,
    inChannels,
    command: "classify",
  });
}

/** Runs (or resumes) a classification run to its end or a stop request, then scores its test cases. */
export async function finetuneClassification(
  o: ClassificationFinetuneOptions,
): Promise<ClassificationFinetuneResult> {
  const log = o.log ?? ((line: string) => console.log(line));
  await asConfigError(() => checkData(o.data));
  const config: ResolvedRunConfig = await asConfigError(async () => {
    if (!o.resume) return await resolveConfig(o);
    if (!o.out) throw new Error("resume: give the run folder (out)");
    const path = join(o.out, "checkpoints", "latest.safetensors");
    const meta = (await loadCheckpoint(path)).meta;
    if (meta.config.resolvedMethod.plugin !== CLASSIFICATION_METHOD) {
      throw new Error(`${path}: not a classification run (method "${meta.config.resolvedMethod.plugin}")`);
    }
    return meta.config;
  });
  const cls = config.resolvedMethod.config as ClassificationConfig;
  const byId = new Map(o.data.cases.map((c) => [c.id, c]));
  const [trainCases, testCases] = await asConfigError(() => {
    if (cls.classes.join("\n") !== o.data.classes.join("\n")) {
      throw new Error(
        `${o.data.name}: classes ${o.data.classes.join(", ")}, the run was made with ${
          cls.classes.join(", ")
        }`,
      );
    }
    if (cls.channelNames.join() !== o.data.channelNames.join()) {
      throw new Error(
        `${o.data.name}: image columns ${o.data.channelNames.join(", ")}, the run was made with ` +
          cls.channelNames.join(", "),
      );
    }
    if (JSON.stringify(cls.spacing) !== JSON.stringify(o.data.spacing)) {
      const mm = (s: number[] | null) => (s ? s.join(",") : "none");
      throw new Error(
        `${o.data.name}: preprocessed at spacing ${mm(o.data.spacing)}, the run was made at ` +
          `${mm(cls.spacing)} (give the run's --spacing)`,
      );
    }
    return [cls.split.train, cls.split.test].map((ids) =>
      ids.map((id) => {
        const c = byId.get(id);
        if (!c) throw new Error(`${o.data.name} has no case "${id}" (the run's split names it)`);
        return c;
      })
    );
  });
  const train = classificationBatches(
    trainCases,
    {
      patch: config.patch as Shape3,
      augmentation: resolveAugmentation(config.augmentation),
      classes: cls.classes.length,
      labelSmoothing: cls.labelSmoothing,
    },
    config.batch,
    config.seed,
  );
  const method = classificationMethod(o.coreVersion);
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
  const perClass = cls.classes.map((name, k) =>
    `${name} ${trainCases.filter((c) => c.classIndex === k).length}/${
      testCases.filter((c) => c.classIndex === k).length
    }`
  );
  log(
    `classification ${cls.pretrained ? `from ${cls.pretrained}` : "from scratch"} on ${cls.dataset}: ` +
      `${trainCases.length} training case(s) (label fraction ${cls.labelFraction}), ${testCases.length} test; ` +
      `classes (train/test) ${perClass.join(", ")}; schedule ${cls.schedule.name}`,
  );
  const stop = listenForStop(run.log);
  let stoppedBy: string | undefined;
  let scores: ClassificationScores | null = null;
  try {
    if (!o.resume && cls.pretrained) {
      const report = loadPretrainedEncoder(
        run.model.network,
        await readPretrainedWeights(cls.pretrained),
        config.patch,
      );
      log(describeEncoderLoad(report));
    }
    stoppedBy = await finetuneLoop(run, o, cls, stop, train);
    if (!stoppedBy) {
      await finishRun(run, o.coreVersion);
      if (o.evaluate ?? true) {
        const head = run.instance.modules.head as ClassificationHead;
        scores = await scoreClassifier(
          run.model.network,
          head,
          testCases,
          config.patch as Shape3,
          cls.classes,
        );
        await writeClassificationScores(run.paths.out, scores, o.data.sources);
        log(
          `test (${testCases.length} cases): accuracy ${scores.accuracy.toFixed(4)}, balanced accuracy ` +
            `${scores.balancedAccuracy.toFixed(4)}, AUROC ${
              scores.auroc === null ? "n/a" : scores.auroc.toFixed(4)
            }`,
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
