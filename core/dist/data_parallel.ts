/**
 * Data-parallel training from a {@link Distributed} process: the pieces the Trainer takes (its
 * `gradientHook` and `distributed` role) and the split of the global batch over the ranks.
 *
 * The run config's `batch` is the global batch: each of N ranks trains on `batch / N` samples, rank r on
 * samples `r·batch/N …` of every step's global batch (the loader's `firstSample`), so N ranks draw exactly
 * the samples one process would and a checkpoint resumes under any number of ranks that divides the batch.
 *
 * @module
 */
import type { Gpu } from "../gpu/mod.ts";
import type { ParameterGroup } from "../nn/mod.ts";
import type { Tensor } from "../tensor/mod.ts";
import { GradientSync, type GradientSyncOptions } from "./gradient_sync.ts";
import type { Distributed } from "./launch.ts";
import { agreeOnStop } from "./stop.ts";
import { averageOverRanks } from "./average_metrics.ts";

/** This rank's share of a global batch. */
export interface BatchShare {
  /** Samples per step on this rank. */
  batch: number;
  /** Index of this rank's first sample in the global batch. */
  firstSample: number;
}

/** Splits a global batch of `global` samples over the ranks of `dist`; it must divide evenly. */
export function shareOfBatch(global: number, dist: Pick<Distributed, "rank" | "size">): BatchShare {
  if (global % dist.size !== 0) {
    throw new RangeError(
      `batch ${global} does not split over ${dist.size} processes: the global batch (--batch) must be a ` +
        `multiple of the number of ranks`,
    );
  }
  const batch = global / dist.size;
  return { batch, firstSample: dist.rank * batch };
}

/** What the Trainer needs from a data-parallel process. */
export interface DataParallel {
  /** Averages the gradients over the ranks (the Trainer's `gradientHook`). */
  gradientHook: (groups: ParameterGroup[]) => Promise<void>;
  /** The Trainer's `distributed` role: rank, the stop agreement, the logged means over ranks. */
  role: {
    rank: number;
    agreeStop(local: string | undefined): string | undefined;
    averageMetrics(local: Record<string, number>): Record<string, number>;
    onGradientReady(param: Tensor): void;
  };
  /** The gradient averaging (its `last` timings). */
  sync: GradientSync;
}

/** The Trainer hooks of a data-parallel rank; undefined for a single process. */
export function dataParallel(
  dist: Distributed,
  gpu: Gpu,
  options: GradientSyncOptions = {},
): DataParallel | undefined {
  const mpi = dist.mpi;
  if (!mpi || dist.size === 1) return undefined;
  const sync = new GradientSync(mpi, gpu, options);
  return {
    gradientHook: (groups) => sync.allreduce(groups),
    role: {
      rank: dist.rank,
      agreeStop: (local) => agreeOnStop(mpi, local),
      averageMetrics: (local) => averageOverRanks(mpi, local),
      onGradientReady: (param) => sync.gradientReady(param),
    },
    sync,
  };
}
