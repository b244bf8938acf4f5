/**
 * The config fields and parameter grouping the segmentation (segmentation_method.ts) and classification
 * (classification/method.ts) methods share: the dataset's channels and spacing, the schedule, the
 * pretrained checkpoint with its encoder/decoder keys, and the split. Each method's schema spreads
 * {@link downstreamConfigFields} beside its own fields.
 *
 * @module
 */
import { z } from "zod";
import { FinetuneScheduleSchema } from "./schedule.ts";

const vec3 = z.tuple([z.number().positive(), z.number().positive(), z.number().positive()]);

/** The zod fields both downstream method configs hold (their interfaces document them). */
export const downstreamConfigFields = {
  /** The dataset's channel names (or the CSV's image columns), in channel order. */
  channelNames: z.array(z.string()).min(1),
  /** The dataset's name (for reports). */
  dataset: z.string(),
  /** Voxel spacing [D, H, W] in mm the data was resampled to (null: kept as it was). */
  spacing: vec3.nullable(),
  /** Intensity normalisation per channel (nnssl: z-score per channel, per case). */
  normalization: z.array(z.literal("zscore")),
  /** The learning-rate schedule. */
  schedule: FinetuneScheduleSchema,
  /** The pretraining checkpoint the encoder came from (null: from scratch). */
  pretrained: z.string().nullable(),
  /** Parameter-name prefixes in the "encoder" group (the plan's encoder and stem keys). */
  encoderKeys: z.array(z.string()),
  /** Prefixes moved to the "decoder" group (a repeated input projection). */
  decoderKeys: z.array(z.string()).default([]),
  /** Training and test case ids (after the label fraction). */
  split: z.object({ train: z.array(z.string()), test: z.array(z.string()) }),
  /** Fraction of the training cases used (1, 0.25, 0.05, …). */
  labelFraction: z.number().positive().max(1),
};

/** Whether a parameter `name` is `prefix` or lies under it (`prefix.…`) for one of the prefixes. */
export const underPrefix = (name: string, prefixes: readonly string[]): boolean =>
  prefixes.some((p) => name === p || name.startsWith(p + "."));

/**
 * The parameter group of a run's parameter `name` (`network.…` for the architecture's): "encoder" for
 * the network's encoder keys unless moved to the decoder, "decoder" for everything else (decoder, head).
 */
export function downstreamParameterGroup(
  name: string,
  config: { encoderKeys: readonly string[]; decoderKeys: readonly string[] },
): { group: "encoder" | "decoder" } {
  if (!name.startsWith("network.")) return { group: "decoder" };
  const local = name.slice("network.".length);
  const encoder = underPrefix(local, config.encoderKeys) && !underPrefix(local, config.decoderKeys);
  return { group: encoder ? "encoder" : "decoder" };
}
