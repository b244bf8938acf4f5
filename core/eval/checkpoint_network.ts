/**
 * The network of a voxssl checkpoint, rebuilt for inference: the architecture named in its adaptation
 * plan, built with the given input channels, output classes and patch, and loaded strictly from the
 * checkpoint's `network.*` tensors (every parameter present, nothing extra). What `voxssl predict` expects
 * of a fine-tuned checkpoint (docs/downstream.md).
 *
 * @module
 */
import { loadStateDict } from "../nn/mod.ts";
import type { ArchitecturePlugin, Network } from "../plugin/mod.ts";
import { Generator, scope } from "../tensor/mod.ts";
import type { Checkpoint } from "../train/mod.ts";

/** The geometry the network is rebuilt with. */
export interface InferenceShape {
  /** Input channels (the dataset's). */
  inChannels: number;
  /** Output classes, background included. */
  outChannels: number;
  /** Window size `[pd, ph, pw]`. */
  patchSize: [number, number, number];
}

/**
 * Builds `arch` (which must be the plugin named by `checkpoint.meta.adaptationPlan.architecture`) with
 * the plan's config and loads the checkpoint's `network.*` weights. Throws naming `source` when the
 * weights do not match the network (another architecture, channel or class count).
 */
export function networkFromCheckpoint(
  checkpoint: Checkpoint,
  arch: ArchitecturePlugin,
  shape: InferenceShape,
  source = "checkpoint",
): Network {
  const plan = checkpoint.meta.adaptationPlan;
  if (!plan?.architecture) throw new Error(`${source}: no adaptation plan (not a voxssl checkpoint?)`);
  if (plan.architecture.plugin !== arch.name) {
    throw new Error(`${source}: built with architecture "${plan.architecture.plugin}", not "${arch.name}"`);
  }
  const network = scope(() =>
    arch.create({
      config: arch.config.parse(plan.architecture.config),
      inChannels: shape.inChannels,
      outChannels: shape.outChannels,
      patchSize: shape.patchSize,
      encoderOnly: false,
      rng: new Generator(0),
    })
  );
  const weights = Object.fromEntries(
    Object.entries(checkpoint.weights).filter(([name]) => name.startsWith("network.")).map((
      [name, t],
    ) => [name.slice("network.".length), t]),
  );
  try {
    loadStateDict(network, weights, { source });
  } catch (error) {
    network.dispose();
    throw error;
  }
  return network;
}
