/**
 * The SSL-method contract. A method declares what it needs — the architecture families it supports, the
 * network it wants (a decoder with N output channels, or the encoder alone), training defaults per
 * family, its data hook — and builds an instance that turns a batch into a loss. The Trainer owns
 * everything else (loop, optimizer, schedule, precision, checkpoints, logging, resume); the instance's
 * optional hooks are the Trainer's seams: metrics, parameter groups, after-step and end-of-epoch work,
 * and frozen modules (EMA teachers) saved with the run.
 *
 * Where each hook comes from (docs/plugins.md lists them with the nnssl methods that need them).
 *
 * @module
 */
import type { MaskName, SampleContext, SampleOutput } from "../data/mod.ts";
import type { Module } from "../nn/mod.ts";
import type { OptimizerConfig, Schedule } from "../optim/mod.ts";
import type { Generator, Tensor } from "../tensor/mod.ts";
import type { ArchitectureFamily, Network, Vec3 } from "./architecture.ts";
import type { PluginBase } from "./plugin_base.ts";

/** Augmentation presets of the loader a method may ask for. */
export type AugmentationPresetName = "none" | "nnssl-mae" | "nnunet";

/** Training defaults a method brings per architecture family (overridden by config and flags). */
export interface TrainingDefaults {
  /** Optimizer and its hyperparameters. */
  optimizer: OptimizerConfig;
  /** Learning-rate schedule over epochs. */
  schedule: Schedule;
  /** Global gradient-norm clip (0: none). */
  clipGradNorm: number;
  /** The run's patch size (what `context.patch()` cuts by default). */
  patchSize: Vec3;
  /** Samples per batch. */
  batchSize: number;
  /** Data augmentation preset of the run's standard patch (default "none"). */
  augmentation?: AugmentationPresetName;
}

/**
 * A function of a plugin's parsed config. (Declared through a method so that a plugin with a specific
 * config type still fits the contract's `unknown`: TypeScript checks method parameters bivariantly.)
 */
export type ConfigFunction<C, R> = { f(config: C): R }["f"];

/** The network a method needs from the architecture. */
export type NetworkNeeds = { outChannels: number } | { encoderOnly: true };

/** A batch on the GPU, as a method's loss receives it. */
export interface GpuBatch {
  /**
   * Every array the data side produced, stacked along a new leading axis: `[B, ...per-sample shape]`, in
   * its declared dtype. Without a `sample` hook: `image` [B, 1, D, H, W] f32 and the requested masks
   * [B, 1, D, H, W] u8.
   */
  readonly tensors: Readonly<Record<string, Tensor>>;
  /** `tensors[name]`, or an error naming the method's missing array and the ones there are. */
  get(name: string): Tensor;
  /** Samples in the batch (B). */
  readonly size: number;
  /** The file (or synthetic label) of each sample, for logs. */
  readonly sources: readonly string[];
}

/** What a method's loss returns. */
export interface LossOutput {
  /** A scalar (shape [] or [1]). */
  loss: Tensor;
  /**
   * Scalars to log beside the loss (e.g. each term of a composite loss): averaged over the logging
   * interval on the GPU and written to `metrics.jsonl` and the progress line.
   */
  metrics?: Record<string, Tensor>;
  /**
   * Reconstruction methods: what the network was shown and what it made of it, for the run report's
   * slices and viewer. A function, so that nothing extra runs during training: the Trainer calls it only
   * when it draws the report, inside the same scope. Contrastive methods leave it out.
   */
  reconstruction?: () => Reconstruction;
}

/** One batch as a reconstruction method sees it; every tensor is `[B, C, D, H, W]` (C may be 1). */
export interface Reconstruction {
  /** The clean input volume. */
  input: Tensor;
  /** What the network was given: the masked or corrupted input. */
  corrupted: Tensor;
  /** The network's output. */
  prediction: Tensor;
  /** What the loss compares the prediction with. */
  target: Tensor;
}

/** Context of one loss evaluation. */
export interface StepContext {
  /** Optimizer steps done before this one (validation: the batch index). */
  step: number;
  /** The epoch. */
  epoch: number;
  /** False during validation (evaluated under `noGrad`, network in eval mode). */
  training: boolean;
  /** GPU randomness for this step (dropout, noise), seeded by the Trainer and restored on resume. */
  rng: Generator;
}

/** What the after-step hook is told. */
export interface StepEvent {
  /** Optimizer steps done, including this one. */
  step: number;
  /** The epoch of this step. */
  epoch: number;
  /** Epochs in the run. */
  epochs: number;
  /** Learning rate of this step (the schedule's base rate). */
  lr: number;
}

/** What the end-of-epoch hook is told. */
export interface EpochEvent {
  /** The epoch that just ended (0-based). */
  epoch: number;
  /** Epochs in the run. */
  epochs: number;
  /** Optimizer steps done. */
  step: number;
}

/** Where a parameter goes: its group, and the group's learning-rate factor and weight decay. */
export interface ParameterGroupChoice {
  /** Group name; parameters with the same name share one arena and one optimizer dispatch. */
  group: string;
  /** Multiplier of the scheduled learning rate (default 1). */
  lrScale?: number;
  /** Weight decay of the group (default the optimizer's). */
  weightDecay?: number;
}

/** A method bound to a network: its modules, its loss and its optional Trainer hooks. */
export interface MethodInstance {
  /** Extra trainable modules (decoder, projector, mask token), optimised with the network. */
  modules: Record<string, Module>;
  /**
   * Modules saved in checkpoints but not optimised (EMA teachers, running statistics): their parameters
   * get no gradients and no optimizer state; update them in `afterStep`.
   */
  frozen?: Record<string, Module>;
  /** The loss of a batch; runs inside the Trainer's memory scope (and under autocast for mixed precision). */
  loss(batch: GpuBatch, context: StepContext): LossOutput;
  /**
   * Assigns each trainable parameter (by checkpoint name: `network.…`, `method.<module>.…`) to a
   * parameter group; undefined keeps it in the default group. See {@link noWeightDecayGroups}.
   */
  parameterGroup?(name: string, parameter: Tensor): ParameterGroupChoice | undefined;
  /** After each optimizer step, under `noGrad` (EMA teacher updates, momentum schedules). */
  afterStep?(event: StepEvent): void;
  /** After each epoch, before validation and the checkpoint. */
  endOfEpoch?(event: EpochEvent): void | Promise<void>;
}

/** What an SSL-method plugin is given to build itself. */
export interface MethodRequest<C> {
  /** The network, built as the method's `network` asked. */
  network: Network;
  /** The parsed config. */
  config: C;
  /** Seeded generator for the method's own initialisation. */
  rng: Generator;
  /** The run's patch size. */
  patchSize: Vec3;
  /**
   * Builds another network of the run's architecture and config (e.g. an EMA teacher, then returned in
   * `frozen`); initialised from the same seeded stream.
   */
  createNetwork(needs?: NetworkNeeds): Network;
}

/** An SSL-method plugin. */
export interface SslMethodPlugin<C = unknown> extends PluginBase<C> {
  /** Selects this contract. */
  kind: "ssl-method";
  /** Architecture families the method works with. */
  supports: ArchitectureFamily[];
  /** The network it needs: a decoder with `outChannels` outputs, or the encoder alone (or a function of the config). */
  network: NetworkNeeds | ConfigFunction<C, NetworkNeeds>;
  /** Training defaults per architecture family. */
  defaults: Partial<Record<ArchitectureFamily, TrainingDefaults>>;
  /** Masks the run's standard patch carries (e.g. "deface" to leave defaced voxels out of a loss). */
  masks?(config: C): MaskName[];
  /**
   * Data side, run in the loader's workers: builds one sample's arrays from the volume (crops, views,
   * masks, targets, a second volume); see `SampleContext`. Without it a sample is the run's standard
   * patch (`image`) and its masks. Pure in the context's generators; no GPU; no I/O of its own.
   */
  sample?(context: SampleContext<C>): SampleOutput | Promise<SampleOutput>;
  /**
   * Whether the run's standard patch may be augmented on the GPU for this method: its `sample` hook
   * returns `context.patch()`'s image (and masks) as arrays without reading or changing their values.
   * The first `context.patch()` with the run's defaults then holds zeros in the workers, and the batch's
   * arrays of those names are filled on the GPU before the loss (see docs/data.md). Default false.
   */
  gpuAugmentation?: boolean;
  /**
   * Whether the method's own per-crop pipelines may run on the GPU: its `sample` hook augments crops with
   * `context.augment(crop, pipeline, rng, { array, index })` and puts each crop's image there unchanged
   * afterwards. When the run augments on the GPU those calls only draw the plan, and the batch's arrays
   * are augmented in place before the loss (see docs/data.md). Default false.
   */
  gpuViewAugmentation?: boolean;
  /** Builds the method for a network. */
  build(request: MethodRequest<C>): MethodInstance;
}

/** The network a method asks for under `config`. */
export function networkNeeds<C>(method: SslMethodPlugin<C>, config: C): NetworkNeeds {
  return typeof method.network === "function" ? method.network(config) : method.network;
}

/**
 * A parameter-group rule: no weight decay for biases, norm weights and other vectors (rank ≤ 1), position
 * embeddings, mask tokens and class tokens; everything else in the default group. Methods that want
 * this return it from `parameterGroup`.
 */
export function noWeightDecayGroups(name: string, parameter: Tensor): ParameterGroupChoice | undefined {
  const leaf = name.slice(name.lastIndexOf(".") + 1);
  const special = /(^|_)(pos_embed|mask_token|cls_token)$/.test(leaf) || /pos_embed|mask_token/.test(name);
  return parameter.rank <= 1 || special ? { group: "no-decay", weightDecay: 0 } : undefined;
}
