/**
 * What a fine-tuned checkpoint holds for `voxssl predict`, and its reader.
 *
 * A fine-tuning run writes the Trainer's checkpoints (`<out>/checkpoints/{latest,final}.safetensors`,
 * format `voxssl-checkpoint/2`, see core/train/checkpoint.ts) and `<out>/network.safetensors`. In the
 * checkpoint's `voxssl` metadata:
 *
 * - `plugins.method` is `"segmentation@<core version>"`, `plugins.architecture` `"<arch>@<version>"`;
 * - `config.resolvedArch` = `{ plugin, version, size, config }`: build the network with
 *   `arch.create({ config, inChannels: config.inChannels, outChannels: classes, patchSize: config.patch,
 *   encoderOnly: false, rng })` and load the `network.*` tensors (prefix stripped) strictly;
 * - `config.inChannels`, `config.patch` (the training patch: the sliding window's size);
 * - `config.resolvedMethod.config` is the {@link SegmentationConfig}: `classes` (output channels,
 *   background included), `labels` (dataset.json's name → value), `channelNames`, `dataset`,
 *   `spacing` ([D, H, W] mm the data was resampled to; null: not resampled), `normalization`
 *   (per channel, "zscore": per-case mean/std), the split, the label fraction and the pretrained source.
 *
 * {@link readFinetunedCheckpoint} returns exactly these, checked.
 *
 * @module
 */
import type { HostTensor } from "../nn/mod.ts";
import type { Vec3 } from "../plugin/mod.ts";
import { type Checkpoint, loadCheckpoint, type ResolvedRunConfig } from "../train/mod.ts";
import {
  SEGMENTATION_METHOD,
  type SegmentationConfig,
  SegmentationConfigSchema,
} from "./segmentation_method.ts";

/** What inference needs from a fine-tuned checkpoint. */
export interface FinetunedModel {
  /** The architecture plugin's name, version, size preset and resolved config. */
  architecture: { plugin: string; version: string; size: string | null; config: unknown };
  /** Input channels. */
  inChannels: number;
  /** The training patch [D, H, W] (the sliding window). */
  patch: Vec3;
  /** Classes, labels, channels, spacing, normalisation, split. */
  segmentation: SegmentationConfig;
  /** Network weights by the network's own parameter names. */
  weights: Record<string, HostTensor>;
  /** The whole run config, as recorded. */
  runConfig: ResolvedRunConfig;
  /** Optimizer steps the weights were trained for. */
  step: number;
}

/** Reads a fine-tuned checkpoint; errors name the file and what is missing. */
export async function readFinetunedCheckpoint(path: string): Promise<FinetunedModel> {
  return finetunedModel(await loadCheckpoint(path), path);
}

/** Whether a loaded checkpoint was written by segmentation fine-tuning (`plugins.method`). */
export function isFinetunedCheckpoint(ckpt: Checkpoint): boolean {
  return (ckpt.meta.plugins?.method ?? "").startsWith(`${SEGMENTATION_METHOD}@`);
}

/** What inference needs from a loaded fine-tuned checkpoint (`path` names it in errors). */
export function finetunedModel(ckpt: Checkpoint, path: string): FinetunedModel {
  const method = ckpt.meta.plugins?.method ?? "";
  if (!method.startsWith(`${SEGMENTATION_METHOD}@`)) {
    throw new Error(
      `${path}: not a fine-tuned segmentation checkpoint (it was trained with method "${method}"; ` +
        "a pretraining checkpoint goes to voxssl finetune --pretrained)",
    );
  }
  const config = ckpt.meta.config;
  const parsed = SegmentationConfigSchema.safeParse(config.resolvedMethod?.config);
  if (!parsed.success) {
    throw new Error(`${path}: its segmentation config is invalid: ${parsed.error.issues[0]?.message}`);
  }
  const weights: Record<string, HostTensor> = {};
  for (const [name, t] of Object.entries(ckpt.weights)) {
    if (name.startsWith("network.")) weights[name.slice("network.".length)] = t;
  }
  const { plugin, version, size, config: archConfig } = config.resolvedArch;
  return {
    architecture: { plugin, version, size, config: archConfig },
    inChannels: config.inChannels,
    patch: config.patch,
    segmentation: parsed.data,
    weights,
    runConfig: config,
    step: ckpt.meta.step,
  };
}
