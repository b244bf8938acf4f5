/**
 * Checkpoints: one safetensors file holding the weights of every trained module (`network.*` with the
 * reference implementation's names, `method.<module>.*`), the optimizer's arenas (`optimizer.*`) and a
 * JSON `voxssl` metadata entry (step, epoch, resolved config, plugin versions, generator state, best
 * validation loss, adaptation plan). Written to a temporary file and renamed: a crash mid-write leaves
 * the previous checkpoint intact.
 */
import { decodeSafetensors, encodeSafetensors, type HostTensor, writeFileAtomic } from "../nn/mod.ts";
import type { OptimizerState } from "../optim/mod.ts";
import type { AdaptationPlan } from "../plugin/mod.ts";
import type { GeneratorState } from "../tensor/mod.ts";
import type { ResolvedRunConfig } from "./config.ts";

/** The checkpoint format tag. */
export const CHECKPOINT_FORMAT = "voxssl-checkpoint/1";

/** Everything in a checkpoint besides tensors. */
export interface CheckpointMeta {
  format: typeof CHECKPOINT_FORMAT;
  coreVersion: string;
  /** Optimizer steps completed. */
  step: number;
  epoch: number;
  config: ResolvedRunConfig;
  plugins: { architecture: string; method: string };
  generator: GeneratorState;
  bestValidationLoss: number | null;
  adaptationPlan: AdaptationPlan;
  savedAt: string;
  /** The training-loss sum and step count of the unfinished logging interval (exact resume of the log). */
  lossAccumulator?: { sum: number; steps: number };
}

/** A checkpoint in memory. */
export interface Checkpoint {
  meta: CheckpointMeta;
  /** Module weights by prefixed name ("network.…", "method.…"). */
  weights: Record<string, HostTensor>;
  optimizer: OptimizerState;
}

/** Serialises and writes a checkpoint atomically. */
export async function saveCheckpoint(path: string, checkpoint: Checkpoint): Promise<void> {
  const tensors: Record<string, HostTensor> = { ...checkpoint.weights };
  tensors["optimizer.step_state"] = {
    dtype: "F32",
    shape: [checkpoint.optimizer.stepState.length],
    data: Float32Array.from(checkpoint.optimizer.stepState),
  };
  checkpoint.optimizer.groups.forEach((moments, g) =>
    moments.forEach((
      m,
      k,
    ) => (tensors[`optimizer.group${g}.moment${k}`] = { dtype: "F32", shape: [m.length], data: m }))
  );
  await writeFileAtomic(path, encodeSafetensors(tensors, { voxssl: JSON.stringify(checkpoint.meta) }));
}

/** Reads a checkpoint; errors name the file and what is wrong. */
export async function loadCheckpoint(path: string): Promise<Checkpoint> {
  const { tensors, metadata } = decodeSafetensors(await Deno.readFile(path), path);
  if (!metadata.voxssl) throw new Error(`${path}: not a voxssl checkpoint (no "voxssl" metadata)`);
  const meta = JSON.parse(metadata.voxssl) as CheckpointMeta;
  if (meta.format !== CHECKPOINT_FORMAT) {
    throw new Error(`${path}: checkpoint format ${meta.format}, this voxssl reads ${CHECKPOINT_FORMAT}`);
  }
  const weights: Record<string, HostTensor> = {};
  const groups: Float32Array[][] = [];
  let stepState: number[] = [];
  for (const [name, t] of Object.entries(tensors)) {
    const moment = /^optimizer\.group(\d+)\.moment(\d+)$/.exec(name);
    if (name === "optimizer.step_state") stepState = [...t.data];
    else if (moment) (groups[+moment[1]] ??= [])[+moment[2]] = t.data;
    else weights[name] = t;
  }
  return { meta, weights, optimizer: { stepState, groups } };
}
