/**
 * Checkpoints: one safetensors file holding the weights and buffers of every module (`network.*` with the
 * reference implementation's names, `method.<module>.*`, `frozen.<module>.*`), the optimizer's arenas
 * (`optimizer.*`) and a JSON `voxssl` metadata entry (step, epoch, resolved config, plugin versions,
 * generator state, best validation loss, adaptation plan, parameter groups, the unfinished logging
 * interval's sums). Written to a temporary file and renamed: a crash mid-write leaves the previous
 * checkpoint intact.
 */
import { decodeSafetensors, encodeSafetensors, type HostTensor, writeFileAtomic } from "../nn/mod.ts";
import type { OptimizerState } from "../optim/mod.ts";
import type { AdaptationPlan } from "../plugin/mod.ts";
import type { GeneratorState } from "../tensor/mod.ts";
import type { AccumulatorState } from "./accumulator.ts";
import type { ResolvedRunConfig } from "./config.ts";

/** The checkpoint format tag. */
export const CHECKPOINT_FORMAT = "voxssl-checkpoint/2";

/** Everything in a checkpoint besides tensors. */
export interface CheckpointMeta {
  /** Format tag. */
  format: typeof CHECKPOINT_FORMAT;
  /** The core that wrote it. */
  coreVersion: string;
  /** Optimizer steps completed. */
  step: number;
  /** Epochs completed (step ÷ steps per epoch). */
  epoch: number;
  /** The resolved run config (what `--resume` runs again). */
  config: ResolvedRunConfig;
  /** `name@version` of each plugin. */
  plugins: { architecture: string; method: string };
  /** The step generator's state. */
  generator: GeneratorState;
  /** Lowest validation loss so far. */
  bestValidationLoss: number | null;
  /** For downstream use. */
  adaptationPlan: AdaptationPlan;
  /** ISO time of writing. */
  savedAt: string;
  /** Optimizer groups in arena order (name and parameter count): a resume must group alike. */
  parameterGroups: { name: string; count: number }[];
  /** Loss and metric sums of the unfinished logging interval (exact resume of the log). */
  accumulator: AccumulatorState;
  /** Steps in the unfinished logging interval. */
  intervalSteps: number;
}

/** A checkpoint in memory. */
export interface Checkpoint {
  /** Everything besides tensors. */
  meta: CheckpointMeta;
  /** Module weights by prefixed name ("network.…", "method.…"). */
  weights: Record<string, HostTensor>;
  /** The optimizer's moments and step state. */
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
