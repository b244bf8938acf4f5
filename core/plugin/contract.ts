/**
 * The plugin contracts. An architecture plugin builds networks; an SSL-method plugin turns batches of
 * patches into a loss. The Trainer owns everything else (loop, optimizer, schedule, precision,
 * checkpoints, logging, resume): a method that wants another optimizer says so in its defaults.
 *
 * Both kinds are plain objects made with {@link definePlugin} and validated by zod when loaded.
 */
import type { z } from "zod";
import type { ExtraArray, PrepareContext, PrepareSample } from "../data/sample.ts";
import type { HostTensor, Module } from "../nn/mod.ts";
import type { OptimizerConfig, Schedule } from "../optim/mod.ts";
import type { Generator, Tensor } from "../tensor/mod.ts";

/** Architecture families; methods declare which they support. */
export type ArchitectureFamily = "cnn" | "vit";

/** A 3D size (depth, height, width). */
export type Vec3 = [number, number, number];

/** Keys and facts downstream fine-tuning needs (nnssl's adaptation plan). */
export interface AdaptationPlan {
  architecture: { plugin: string; version: string; config: unknown };
  inChannels: number;
  /** Pretraining patch size; downstream default patch size. */
  patchSize: Vec3;
  recommendedDownstreamPatchSize: Vec3;
  /** Parameter-name prefixes: the encoder (loaded downstream), the stem (repeated for more input
   * channels), the input projection and the position embedding (interpolated for other patch sizes). */
  encoderKeys: string[];
  stemKeys: string[];
  inputProjectionKeys: string[];
  positionEmbeddingKeys: string[];
}

/** Per-call options of {@link Network.forward} and {@link Network.encode}. */
export interface ForwardOptions {
  /**
   * Randomness for stochastic layers in training mode (drop path). Methods pass their step's
   * `StepContext.rng`, so that a resumed run draws the same masks as an uninterrupted one; without it a
   * network falls back to a generator of its own.
   */
  rng?: Generator;
}

/** A network built by an architecture plugin. Parameter names follow the reference implementation. */
export interface Network extends Module {
  readonly family: ArchitectureFamily;
  /** [B, inChannels, D, H, W] → [B, outChannels, D, H, W]. */
  forward(x: Tensor, options?: ForwardOptions): Tensor;
  /** Encoder features: CNN, one per stage (shallow to deep); ViT, the token grid [B, C, d, h, w]. */
  encode(x: Tensor, options?: ForwardOptions): Tensor[];
  /** The adaptation plan for downstream use. */
  adaptationPlan(): AdaptationPlan;
  /**
   * Extra keys under which the reference implementation's state dict repeats a parameter (PyTorch
   * lists a module registered twice under both paths); exports write them so `load_state_dict` is
   * strict-clean, imports skip them.
   */
  referenceAliases?(name: string): string[];
  /**
   * Persistent non-parameter tensors of the reference state dict (PyTorch buffers such as Primus's
   * all-zero `mask_token`), by name with their values: exports write them so `load_state_dict` is
   * strict-clean, imports skip them.
   */
  referenceBuffers?(): Record<string, HostTensor>;
}

/** What an architecture plugin is asked to build. */
export interface ArchitectureRequest<C> {
  config: C;
  inChannels: number;
  outChannels: number;
  patchSize: Vec3;
  /** Seeded generator for parameter initialisation. */
  rng: Generator;
}

/** Fields every plugin manifest has. */
export interface PluginBase<C> {
  name: string;
  /** The plugin's own semver, recorded in checkpoints and leaderboards. */
  version: string;
  /** Range of core versions the plugin works with (semver range, e.g. "^0.1.0"). */
  coreApi: string;
  description: string;
  /** zod schema of the plugin's config, with defaults. */
  config: z.ZodType<C>;
}

/** An architecture plugin. */
export interface ArchitecturePlugin<C = unknown> extends PluginBase<C> {
  kind: "architecture";
  family: ArchitectureFamily;
  /** Named size presets: `--arch resenc-l` is plugin "resenc" with sizes.l merged into the config. */
  sizes?: Record<string, Partial<C>>;
  create(request: ArchitectureRequest<C>): Network;
  /**
   * Parameter count computed from the config without allocating (for tests and --dry-run). `patchSize`
   * is the run's patch, which sizes patch-dependent parameters (a ViT's position embedding).
   */
  countParameters?(config: C, inChannels: number, outChannels: number, patchSize: Vec3): number;
}

/** Training defaults a method brings (the Trainer applies them, overridden by config and flags). */
export interface TrainingDefaults {
  optimizer: OptimizerConfig;
  schedule: Schedule;
  /** Global gradient-norm clip (0: none). */
  clipGradNorm: number;
  patchSize: Vec3;
  batchSize: number;
  /** Data augmentation preset of the loader (default "none"). */
  augmentation?: "none" | "nnssl-mae" | "nnunet";
}

/** The data-side hook's types (run in the loader's workers; see core/data/sample.ts). */
export type { ExtraArray, PrepareContext, PrepareSample };

/** A batch on the GPU, as a method's loss receives it. */
export interface GpuBatch {
  /** [B, C, D, H, W] */
  image: Tensor;
  /** Masks batched to [B, 1, D, H, W] (f32 0/1). */
  masks: Record<string, Tensor>;
  /** `prepare`'s arrays, stacked along the batch as f32 [B, n] (reshape them to their real shape). */
  extra: Record<string, Tensor>;
}

/** What a method's loss returns. */
export interface LossOutput {
  /** A scalar. */
  loss: Tensor;
  /** Scalars to log (averaged over the logging interval). */
  metrics?: Record<string, Tensor>;
}

/** Context of one loss evaluation. */
export interface StepContext {
  step: number;
  training: boolean;
  /** GPU randomness for this step (dropout, noise), seeded by the Trainer. */
  rng: Generator;
}

/** A method bound to a network. */
export interface MethodInstance {
  /** Extra trainable modules (decoder, projector, mask token), optimised with the network. */
  modules: Record<string, Module>;
  loss(batch: GpuBatch, ctx: StepContext): LossOutput;
}

/** What an SSL-method plugin is given to build itself. */
export interface MethodRequest<C> {
  network: Network;
  config: C;
  rng: Generator;
}

/** An SSL-method plugin. */
export interface SslMethodPlugin<C = unknown> extends PluginBase<C> {
  kind: "ssl-method";
  supports: ArchitectureFamily[];
  /** Output channels the method needs from the architecture's head (1 for reconstruction). */
  outChannels: number;
  /** Defaults per architecture family. */
  defaults: Partial<Record<ArchitectureFamily, TrainingDefaults>>;
  /**
   * Data side, run in the loader's workers after augmentation: may modify the patch in place and
   * returns extra per-sample arrays (masks, targets, views). Pure function of (sample, context.rng,
   * context.config); no GPU, no I/O. `context.config` is this method's resolved config.
   */
  prepare?(sample: PrepareSample, context: PrepareContext): Record<string, ExtraArray> | void;
  /** Per-voxel masks the method needs in its batches (e.g. "deface" to leave defaced voxels out). */
  masks?(config: C): ("anatomy" | "deface")[];
  build(request: MethodRequest<C>): MethodInstance;
}

/** Any plugin. */
export type Plugin = ArchitecturePlugin<unknown> | SslMethodPlugin<unknown>;
