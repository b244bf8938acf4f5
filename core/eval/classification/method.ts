/**
 * Classification fine-tuning as the Trainer sees it: a built-in "method" that asks the architecture for
 * its encoder alone, adds the pooled-encoder head (head.ts, module `method.head`) and trains with
 * label-smoothed cross-entropy against the batch's `target` rows. Parameters go in two groups as in
 * segmentation: "encoder" (the adaptation plan's encoder and stem keys) and "decoder" (the head, plus a
 * repeated input projection), so the same schedules give them their rates or freeze the encoder.
 *
 * Its resolved config is what a classification checkpoint records (classes, channels, spacing, split).
 *
 * @module
 */
import { z } from "zod";
import type { SslMethodPlugin } from "../../plugin/mod.ts";
import type { ZodSchema } from "../../plugin/zod_types.ts";
import type { FinetuneSchedule } from "../schedule.ts";
import { downstreamConfigFields, downstreamParameterGroup } from "../downstream_method_config.ts";
import { ClassificationHead, classificationLogits } from "./head.ts";
import { softTargetCrossEntropy } from "./loss.ts";

/** Everything a classification run records beside the Trainer's run config. */
export interface ClassificationConfig {
  /** Class names; logit k is class `classes[k]`. */
  classes: string[];
  /** The CSV's image columns, in channel order ("image", or "image_0000", "image_0001", …). */
  channelNames: string[];
  /** The dataset (the CSV file). */
  dataset: string;
  /** Voxel spacing [D, H, W] in mm the images were resampled to (null: kept as they were). */
  spacing: [number, number, number] | null;
  /** Intensity normalisation per channel ("zscore": per case, per channel). */
  normalization: "zscore"[];
  /** Label smoothing ε of the cross-entropy (SSL3D_classification: 0.2). */
  labelSmoothing: number;
  /** Head dropout while training (SSL3D_classification: 0.2). */
  dropout: number;
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
  /** Fraction of the training cases used (per class). */
  labelFraction: number;
}

/** The zod schema of {@link ClassificationConfig} (unknown keys are errors). */
export const ClassificationConfigSchema: ZodSchema<ClassificationConfig, unknown> = z.object({
  ...downstreamConfigFields,
  /** Class names; logit k is class `classes[k]`. */
  classes: z.array(z.string()).min(2),
  /** Label smoothing ε. */
  labelSmoothing: z.number().min(0).lt(1).default(0.2),
  /** Head dropout while training. */
  dropout: z.number().min(0).lt(1).default(0.2),
}).strict();

/** Name the method records in checkpoints (`plugins.method` = `classification@<core version>`). */
export const CLASSIFICATION_METHOD = "classification";

/**
 * The built-in classification method for the core at `coreVersion`. Its defaults are
 * SSL3D_classification's (methods.md §13): AdamW lr 1e-4, weight decay 1e-2, 160³ crops; the gradient
 * clip is nnssl's per family.
 */
export function classificationMethod(coreVersion: string): SslMethodPlugin<ClassificationConfig> {
  const adamw = { name: "adamw" as const, lr: 1e-4, betas: [0.9, 0.999] as [number, number], eps: 1e-8 };
  return {
    kind: "ssl-method",
    name: CLASSIFICATION_METHOD,
    version: coreVersion,
    coreApi: `^${coreVersion}`,
    description: "classification fine-tuning (pooled encoder + head, label-smoothed CE), voxssl classify",
    config: ClassificationConfigSchema,
    supports: ["cnn", "vit"],
    network: { encoderOnly: true },
    defaults: {
      cnn: {
        optimizer: { ...adamw, weightDecay: 1e-2 },
        schedule: { name: "constant" },
        clipGradNorm: 12,
        patchSize: [160, 160, 160],
        batchSize: 2,
        augmentation: "nnunet",
      },
      vit: {
        optimizer: { ...adamw, weightDecay: 1e-2 },
        schedule: { name: "constant" },
        clipGradNorm: 1,
        patchSize: [160, 160, 160],
        batchSize: 2,
        augmentation: "nnunet",
      },
    },
    build({ network, config, rng }) {
      const features = network.featureChannels[network.featureChannels.length - 1];
      const head = new ClassificationHead(features, config.classes.length, rng, { dropout: config.dropout });
      return {
        modules: { head },
        loss(batch, context) {
          const logits = classificationLogits(
            network,
            head,
            batch.get("image"),
            context.training ? context.rng : undefined,
          );
          return { loss: softTargetCrossEntropy(logits, batch.get("target")) };
        },
        parameterGroup: (name) => downstreamParameterGroup(name, config),
      };
    },
  };
}
