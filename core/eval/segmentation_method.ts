/**
 * Segmentation fine-tuning as the Trainer sees it: a built-in "method" whose network is the architecture
 * with one output channel per class and whose loss is nnU-Net's Dice + CE on the batch's `image` and
 * `label` (with deep supervision: at every decoder resolution, deep_supervision.ts). It puts the encoder (the adaptation plan's encoder and stem keys) and everything else in two
 * parameter groups, "encoder" and "decoder", so schedules can give them different rates or freeze the
 * encoder. When the input projection was repeated over more channels than pretrained, it goes with the
 * decoder group, as nnssl's sawtooth trains it from the first phase on.
 *
 * Its resolved config is what a fine-tuned checkpoint records for inference (see checkpoint_format.ts).
 *
 * @module
 */
import { z } from "zod";
import type { SslMethodPlugin } from "../plugin/mod.ts";
import { diceCeLoss } from "./loss.ts";
import { deepSupervisionLoss } from "./deep_supervision.ts";
import type { ZodSchema } from "../plugin/zod_types.ts";
import type { FinetuneSchedule } from "./schedule.ts";
import { downstreamConfigFields, downstreamParameterGroup } from "./downstream_method_config.ts";

/** Everything a fine-tuning run records beside the Trainer's run config (what inference reads). */
export interface SegmentationConfig {
  /** Output classes including background (nnU-Net's label count). */
  classes: number;
  /** dataset.json's labels: name → value (values 0…classes−1). */
  labels: Record<string, number>;
  /** dataset.json's channel names, in channel order. */
  channelNames: string[];
  /** The dataset's name (for reports). */
  dataset: string;
  /** Voxel spacing [D, H, W] in mm the data was resampled to (null: kept as it was). */
  spacing: [number, number, number] | null;
  /** Intensity normalisation per channel ("zscore": per case, per channel). */
  normalization: "zscore"[];
  /** Batch Dice (nnU-Net plans' batch_dice). */
  batchDice: boolean;
  /** Deep supervision: Dice + CE at every decoder resolution, nnU-Net's weights (deep_supervision.ts). */
  deepSupervision: boolean;
  /** Foreground oversampling fraction (nnU-Net: 0.33). */
  foregroundFraction: number;
  /** The learning-rate schedule. */
  schedule: FinetuneSchedule;
  /** The pretraining checkpoint the encoder came from (null: from scratch). */
  pretrained: string | null;
  /** Parameter-name prefixes in the "encoder" group (the plan's encoder and stem keys). */
  encoderKeys: string[];
  /** Prefixes moved to the "decoder" group (a repeated input projection). */
  decoderKeys: string[];
  /** Training and test case ids (after the label fraction). */
  split: { train: string[]; test: string[] };
  /** Fraction of the training cases used (1, 0.25, 0.05, …). */
  labelFraction: number;
}

/** The zod schema of {@link SegmentationConfig} (unknown keys are errors). */
export const SegmentationConfigSchema: ZodSchema<SegmentationConfig, unknown> = z.object({
  ...downstreamConfigFields,
  /** Output classes including background (nnU-Net's label count). */
  classes: z.number().int().min(2),
  /** dataset.json's labels: name → value (values 0…classes−1). */
  labels: z.record(z.string(), z.number().int().min(0)),
  /** Batch Dice (nnU-Net plans' batch_dice). */
  batchDice: z.boolean().default(false),
  /** Deep supervision: Dice + CE at every decoder resolution, nnU-Net's weights (deep_supervision.ts). */
  deepSupervision: z.boolean().default(false),
  /** Foreground oversampling fraction (nnU-Net: 0.33). */
  foregroundFraction: z.number().min(0).max(1).default(0.33),
}).strict();

/** Name and version the method records in checkpoints (`plugins.method`). */
export const SEGMENTATION_METHOD = "segmentation";

/**
 * The built-in segmentation method for the core at `coreVersion`. Its `defaults` are nnssl's
 * fine-tuning settings (the fine-tuning entry overrides the learning rate for scratch runs).
 */
export function segmentationMethod(coreVersion: string): SslMethodPlugin<SegmentationConfig> {
  return {
    kind: "ssl-method",
    name: SEGMENTATION_METHOD,
    version: coreVersion,
    coreApi: `^${coreVersion}`,
    description: "segmentation fine-tuning (Dice + CE), built into voxssl finetune",
    config: SegmentationConfigSchema,
    supports: ["cnn", "vit"],
    network: (config) => ({ outChannels: config.classes }),
    defaults: {
      cnn: {
        optimizer: { name: "sgd", lr: 1e-3, momentum: 0.99, nesterov: true, weightDecay: 3e-5 },
        schedule: { name: "constant" },
        clipGradNorm: 12,
        patchSize: [160, 160, 160],
        batchSize: 2,
        augmentation: "nnunet",
      },
      vit: {
        optimizer: { name: "adamw", lr: 1e-4, betas: [0.9, 0.98], eps: 1e-8, weightDecay: 5e-2 },
        schedule: { name: "constant" },
        clipGradNorm: 1,
        patchSize: [160, 160, 160],
        batchSize: 2,
        augmentation: "nnunet",
      },
    },
    build({ network, config }) {
      const forwardAll = network.forwardDeepSupervision?.bind(network);
      if (config.deepSupervision && !forwardAll) {
        throw new Error(
          "deep supervision needs a network with a multi-scale decoder (forwardDeepSupervision); this one has none",
        );
      }
      return {
        modules: {},
        loss(batch) {
          const image = batch.get("image"), label = batch.get("label");
          const options = { batchDice: config.batchDice };
          const { loss, ce, dice } = config.deepSupervision
            ? deepSupervisionLoss(forwardAll!(image), label, options)
            : diceCeLoss(network.forward(image), label, options);
          return { loss, metrics: { ce, dice } };
        },
        parameterGroup: (name) => downstreamParameterGroup(name, config),
      };
    },
  };
}
