/**
 * What segmentation (finetune.ts) and classification (classification/finetune.ts) fine-tuning resolve
 * alike for a fresh run: the pretrained checkpoint and architecture config (checked against each other),
 * the encoder/decoder parameter keys of the adaptation plan, and the Trainer's run config around the
 * method's own config (seeds, epochs, precision, patch, clip, …). Each caller keeps what differs: its
 * optimizer defaults, schedule rules, split and method config.
 *
 * @module
 */
import type { OptimizerConfig } from "../optim/mod.ts";
import type { ArchitecturePlugin, SslMethodPlugin, Vec3 } from "../plugin/mod.ts";
import { defaultRunFolder, formatIssues, type ResolvedRunConfig } from "../train/mod.ts";
import { type AdaptReport, type PretrainedWeights, readPretrainedWeights } from "./adapt.ts";

/**
 * A problem with the options, the dataset or the pretrained checkpoint, found before the first step (named
 * "ConfigError" so the CLI prints it without a stack trace).
 */
export class FinetuneConfigError extends Error {
  /** "ConfigError": the CLI's name for a user's mistake. */
  override name = "ConfigError";
}

/** Runs `fn`, turning any error into a {@link FinetuneConfigError} with the same message. */
export async function asConfigError<T>(fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    if (error instanceof FinetuneConfigError) throw error;
    throw new FinetuneConfigError((error as Error).message);
  }
}

/** The options both downstream runs share, as their callers give them. */
export interface DownstreamRunOptions {
  /** The architecture plugin. */
  arch: ArchitecturePlugin;
  /** Its size preset; default: the pretraining checkpoint's config, else the plugin's defaults. */
  size?: string;
  /** Overrides of the architecture config. */
  archConfig?: Record<string, unknown>;
  /** A pretraining checkpoint or `network.safetensors` (undefined: from scratch). */
  pretrained?: string;
  /** The run folder (default runs/<time>-<arch>-<command>). */
  out?: string;
  /** Epochs (default 10). */
  epochs?: number;
  /** Steps per epoch (default 25). */
  stepsPerEpoch?: number;
  /** Samples per step (default 2). */
  batch?: number;
  /** Patch [D, H, W] (default: the plan's recommended downstream patch, else the method's). */
  patch?: Vec3;
  /** Gradient-norm clip (default: the method's for the family). */
  clipGradNorm?: number;
  /** Seed of initialisation and batches (default 0). */
  seed?: number;
  /** Augmentation preset (default "nnunet"). */
  augmentation?: "nnunet" | "none";
  /** Precision (default f32). */
  precision?: "f32" | "mixed";
  /** Log every N steps (default 5). */
  logEvery?: number;
}

/** The pretrained side and the architecture config of a fresh downstream run. */
export interface DownstreamArch {
  /** The pretraining checkpoint's weights and plan (undefined: from scratch). */
  pre: PretrainedWeights | undefined;
  /** The architecture config, parsed: the size preset, else the checkpoint's, with the overrides on top. */
  config: unknown;
}

/**
 * Reads the pretrained checkpoint (if any) and resolves the architecture config; errors name the flag
 * (`--pretrained`, the size, `archConfig`) and what was expected.
 */
export async function resolveDownstreamArch(o: DownstreamRunOptions): Promise<DownstreamArch> {
  const pre = o.pretrained ? await readPretrainedWeights(o.pretrained) : undefined;
  if (pre && pre.plan.architecture.plugin !== o.arch.name) {
    throw new Error(
      `--pretrained ${o.pretrained}: pretrained with architecture "${pre.plan.architecture.plugin}", ` +
        `fine-tuning asks for "${o.arch.name}"`,
    );
  }
  if (o.size && !o.arch.sizes?.[o.size]) {
    throw new Error(
      `architecture ${o.arch.name} has no size "${o.size}" (${Object.keys(o.arch.sizes ?? {}).join(", ")})`,
    );
  }
  // the pretrained network's own config unless a size or overrides say otherwise
  const base = o.size
    ? o.arch.sizes![o.size]
    : (pre?.plan.architecture.config as Record<string, unknown>) ?? {};
  const parsed = o.arch.config.safeParse({ ...base, ...o.archConfig });
  if (!parsed.success) throw new Error(formatIssues(parsed.error, `archConfig for ${o.arch.name}`));
  return { pre, config: parsed.data };
}

/**
 * The parameter-name prefixes of the "encoder" group (the plan's encoder and stem keys) and those moved
 * to the "decoder" group (an input projection repeated over more channels than pretrained).
 */
export function downstreamKeys(
  pre: PretrainedWeights | undefined,
  inChannels: number,
): { encoderKeys: string[]; decoderKeys: string[] } {
  return {
    encoderKeys: pre ? [...pre.plan.encoderKeys, ...pre.plan.stemKeys] : [],
    decoderKeys: pre && pre.plan.inChannels !== inChannels ? pre.plan.inputProjectionKeys : [],
  };
}

/** What the caller resolved itself, for {@link downstreamRunConfig}. */
export interface DownstreamRunParts<C> {
  /** The method (segmentation or classification) at the running core's version. */
  method: SslMethodPlugin<C>;
  /** Its resolved config (what the checkpoint records). */
  methodConfig: C;
  /** From {@link resolveDownstreamArch}. */
  arch: DownstreamArch;
  /** The optimizer, resolved. */
  optimizer: OptimizerConfig;
  /** The dataset's name. */
  data: string;
  /** Image channels. */
  inChannels: number;
  /** The command, for the default run folder (runs/<time>-<arch>-<command>). */
  command: string;
}

/** The Trainer's run config of a fresh downstream run (options' defaults, the method's per family). */
export function downstreamRunConfig<C>(
  o: DownstreamRunOptions,
  parts: DownstreamRunParts<C>,
): ResolvedRunConfig {
  const family = o.arch.family;
  const defaults = parts.method.defaults[family]!;
  const archName = o.size ? `${o.arch.name}-${o.size}` : o.arch.name;
  return {
    arch: archName,
    archConfig: o.archConfig ?? {},
    method: parts.method.name,
    methodConfig: {},
    data: parts.data,
    synthetic: { volumes: 0, size: [1, 1, 1] },
    inChannels: parts.inChannels,
    epochs: o.epochs ?? 10,
    stepsPerEpoch: o.stepsPerEpoch ?? 25,
    precision: o.precision ?? "f32",
    augmentation: o.augmentation ?? "nnunet",
    // patches are cut and augmented in this process (seg_batches.ts, classification/batches.ts), never
    // by the loader's GPU path
    augmentationDevice: "cpu",
    interpolation: "linear",
    tensorboard: true,
    anatomyProbability: 0,
    seed: o.seed ?? 0,
    validationBatches: 0,
    logEvery: o.logEvery ?? 5,
    workers: 0,
    sampleTimeoutSeconds: 120,
    plugins: [],
    out: o.out ?? defaultRunFolder(archName, parts.command),
    batch: o.batch ?? 2,
    patch: o.patch ?? parts.arch.pre?.plan.recommendedDownstreamPatchSize ?? defaults.patchSize,
    optimizer: parts.optimizer,
    // the Trainer's per-epoch schedule is unused: fine-tuning's is in the method config
    schedule: { name: "constant" },
    clipGradNorm: o.clipGradNorm ?? defaults.clipGradNorm,
    resolvedArch: {
      plugin: o.arch.name,
      version: o.arch.version,
      size: o.size ?? null,
      config: parts.arch.config,
      family,
    },
    resolvedMethod: { plugin: parts.method.name, version: parts.method.version, config: parts.methodConfig },
  };
}

/** The log line of `loadPretrainedEncoder`'s report: tensors loaded, fresh, repeated, resized. */
export function describeEncoderLoad(report: AdaptReport): string {
  return `loaded ${report.loaded.length} encoder/stem tensors, ${report.fresh.length} fresh` +
    Object.entries(report.repeated).map(([k, c]) => `; ${k} repeated over ${c} channels`).join("") +
    Object.entries(report.resized).map(([k, [a, b]]) => `; ${k} resized ${a.join("×")} → ${b.join("×")}`)
      .join("");
}
