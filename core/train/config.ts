/**
 * The run configuration: what `voxssl pretrain` flags and `--config FILE` set (zod-validated; unknown
 * keys are errors), and its resolution against the chosen plugins' defaults into the config a run
 * records and resumes from.
 */
import { z } from "zod";
import type { ZodInput, ZodOutput, ZodSchema } from "../plugin/zod_types.ts";
import type { ArchitecturePlugin, SslMethodPlugin, TrainingDefaults, Vec3 } from "../plugin/mod.ts";
import { type OptimizerConfig, OptimizerSchema, type Schedule, ScheduleSchema } from "../optim/mod.ts";
import { checkKnownKeys } from "../plugin/mod.ts";
import { DEFAULT_HEALTH, HealthSchema, type HealthSettings } from "./health.ts";

const vec3 = z.tuple([z.number().int().positive(), z.number().int().positive(), z.number().int().positive()]);

/**
 * @internal What a user may set (every field optional; defaults give the small embedded run). Public as
 * {@link RunConfigSchema}.
 */
const runConfigSchema = z.object({
  /** Architecture plugin and size, e.g. "resenc-l" (the reference), "resenc-tiny". */
  arch: z.string().default("resenc-l"),
  /** Overrides of the architecture plugin's config. */
  archConfig: z.record(z.string(), z.unknown()).default({}),
  method: z.string().default("mae"),
  methodConfig: z.record(z.string(), z.unknown()).default({}),
  /** "synthetic", a dataset index (.json) or a preprocessed cache folder. */
  data: z.string().default("synthetic"),
  /** The embedded synthetic dataset (used when data is "synthetic"). */
  synthetic: z.object({
    volumes: z.number().int().positive().default(16),
    size: vec3.default([48, 48, 48]),
  }).strict().default({ volumes: 16, size: [48, 48, 48] }),
  inChannels: z.number().int().positive().default(1),
  epochs: z.number().int().positive().default(6),
  stepsPerEpoch: z.number().int().positive().default(25),
  batch: z.number().int().positive().optional(),
  patch: vec3.optional(),
  optimizer: OptimizerSchema.optional(),
  /** Learning-rate override (applies to the method's optimizer). */
  lr: z.number().positive().optional(),
  schedule: ScheduleSchema.optional(),
  clipGradNorm: z.number().min(0).optional(),
  /** "mixed": the forward pass under autocast (f16 activations, f32 losses and reductions on devices with
   * shader-f16; all f32 elsewhere) with dynamic loss scaling; parameters stay f32. */
  precision: z.enum(["f32", "mixed"]).default("f32"),
  /** Data augmentation preset (default: the method's). */
  augmentation: z.enum(["none", "nnssl-mae", "nnunet"]).optional(),
  /**
   * Where the standard patch is augmented: "gpu" (workers ship raw crops, the GPU augments the batch),
   * "cpu" (workers augment), or "auto": the GPU where it fits (core/train/augment_device.ts).
   */
  augmentationDevice: z.enum(["auto", "gpu", "cpu"]).default("auto"),
  /** Image interpolation of the spatial transform: "linear", or "cubic" (Keys, a = −0.5). */
  interpolation: z.enum(["linear", "cubic"]).default("linear"),
  /**
   * What patches read outside the volume, on either augmentation device: "zero" (absent: zero) or
   * "border" (the nearest edge voxel), for the image and the masks.
   */
  padding: z.enum(["zero", "border"]).optional(),
  /** Probability of centring a patch on an anatomy voxel (nnssl's anatomy-centred variant: 0.33). */
  anatomyProbability: z.number().min(0).max(1).default(0),
  seed: z.number().int().min(0).default(0),
  /** Run folder; default runs/<date>-<arch>-<method>. */
  out: z.string().optional(),
  validationBatches: z.number().int().min(0).default(2),
  logEvery: z.number().int().positive().default(5),
  workers: z.number().int().min(0).default(1),
  /**
   * A sample that takes longer than this stops the run with an error (a method's data hook stuck in a
   * loop); needs workers ≥ 1.
   */
  sampleTimeoutSeconds: z.number().positive().default(120),
  /** Write TensorBoard event files (`events.out.tfevents.*`) beside metrics.jsonl (default true). */
  tensorboard: z.boolean().default(true),
  /** Third-party plugin modules (paths or URLs). */
  plugins: z.array(z.string()).default([]),
  /**
   * Initial network weights, loaded before the first step (not on resume): a PyTorch `.pth` (nnssl /
   * OpenMind checkpoint or state dict, mapped as `voxssl import` does) or a voxssl `network.safetensors`
   * or checkpoint.
   */
  init: z.string().optional(),
  /** When the run stops on its own: divergence, skipped steps, no progress (docs/reliability.md). */
  health: HealthSchema.default(DEFAULT_HEALTH),
}).strict();

/** @internal The schema's own type. */
type RunConfigShape = typeof runConfigSchema;

/** A user config (before defaults). */
export type RunConfigInput = ZodInput<RunConfigShape>;
/** A parsed user config. */
export type RunConfig = ZodOutput<RunConfigShape>;

/** The zod schema of a run config file (unknown keys are errors), with the defaults of {@link RunConfig}. */
export const RunConfigSchema: ZodSchema<RunConfig, RunConfigInput> = runConfigSchema;

/** The fully resolved config a run records. */
export interface ResolvedRunConfig
  extends Omit<RunConfig, "batch" | "patch" | "optimizer" | "schedule" | "clipGradNorm" | "out" | "health"> {
  /** When the run stops on its own (absent in checkpoints of older runs: the defaults apply). */
  health?: HealthSettings;
  /** The run folder (given, or `runs/<UTC time>-<arch>-<method>`). */
  out: string;
  /** Samples per step (given, or the method's default for the architecture's family). */
  batch: number;
  /** Patch size `[D, H, W]` in voxels (given, or the method's default). */
  patch: Vec3;
  /** The parsed optimizer config (given, or the method's default; `lr` overrides its rate). */
  optimizer: OptimizerConfig;
  /** The learning-rate schedule (given, or the method's default). */
  schedule: Schedule;
  /** Global gradient-norm clip (given, or the method's default; 0: none). */
  clipGradNorm: number;
  /** Resolved plugin configs. */
  resolvedArch: { plugin: string; version: string; size: string | null; config: unknown; family: string };
  /** The method plugin: name, version and parsed config. */
  resolvedMethod: { plugin: string; version: string; config: unknown };
}

/** Formats zod issues as "field: problem" lines. */
export function formatIssues(error: z.ZodError, where: string): string {
  return `${where}:\n` +
    error.issues.map((i) => `  - ${i.path.join(".") || "(root)"}: ${i.message}`).join("\n");
}

/** The default run folder: `runs/<UTC time>-<arch>-<method>` (relative to the working directory). */
export function defaultRunFolder(arch: string, method: string, now = new Date()): string {
  const stamp = now.toISOString().replace(/[:.]/g, "-").slice(0, 19);
  return `runs/${stamp}-${arch}-${method}`;
}

/** Merges a method's defaults, the architecture's size preset and the user's overrides. */
export function resolveRunConfig(
  config: RunConfig,
  arch: { plugin: ArchitecturePlugin; size: string | undefined },
  method: SslMethodPlugin,
  now = new Date(),
): ResolvedRunConfig {
  const family = arch.plugin.family;
  if (!method.supports.includes(family)) {
    throw new Error(
      `method ${method.name} does not support ${family} architectures (it supports ${
        method.supports.join(", ")
      })`,
    );
  }
  const defaults: TrainingDefaults | undefined = method.defaults[family];
  if (!defaults) throw new Error(`method ${method.name} has no defaults for ${family} architectures`);
  const archInput = { ...(arch.size ? arch.plugin.sizes?.[arch.size] : {}), ...config.archConfig };
  const archParsed = arch.plugin.config.safeParse(archInput);
  if (!archParsed.success) {
    throw new Error(formatIssues(archParsed.error, `archConfig for ${arch.plugin.name}`));
  }
  checkKnownKeys(archInput, archParsed.data, `archConfig for ${arch.plugin.name}`);
  const methodParsed = method.config.safeParse(config.methodConfig);
  if (!methodParsed.success) {
    throw new Error(formatIssues(methodParsed.error, `methodConfig for ${method.name}`));
  }
  checkKnownKeys(config.methodConfig, methodParsed.data, `methodConfig for ${method.name}`);
  const optimizer = OptimizerSchema.parse({
    ...(config.optimizer ?? defaults.optimizer),
    ...(config.lr ? { lr: config.lr } : {}),
  });
  const {
    batch: _b,
    patch: _p,
    optimizer: _o,
    schedule: _s,
    clipGradNorm: _c,
    out: _out,
    augmentation: _a,
    ...rest
  } = config;
  return {
    ...rest,
    augmentation: config.augmentation ?? defaults.augmentation ?? "none",
    out: config.out ?? defaultRunFolder(config.arch, config.method, now),
    batch: config.batch ?? defaults.batchSize,
    patch: config.patch ?? defaults.patchSize,
    optimizer,
    schedule: ScheduleSchema.parse(config.schedule ?? defaults.schedule),
    clipGradNorm: config.clipGradNorm ?? defaults.clipGradNorm,
    resolvedArch: {
      plugin: arch.plugin.name,
      version: arch.plugin.version,
      size: arch.size ?? null,
      config: archParsed.data,
      family,
    },
    resolvedMethod: { plugin: method.name, version: method.version, config: methodParsed.data },
  };
}
