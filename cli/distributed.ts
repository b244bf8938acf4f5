/**
 * The CLI side of multi-process runs: joining the MPI job (errors as user errors), and what a
 * data-parallel rank changes in a run: its share of the global batch, no validation or log lines
 * except on rank 0, the gradient averaging and the stop agreement.
 *
 * @module
 */
import {
  dataParallel,
  type Distributed,
  type Gpu,
  initDistributed,
  MpiError,
  type ResolvedRunConfig,
  shareOfBatch,
  type TrainerOptions,
} from "../mod.ts";
import { ConfigError } from "./errors.ts";

/** Joins the job this process was launched in (`mpiexec`, `srun`), or returns the single process. */
export function joinJob(): Distributed {
  try {
    return initDistributed();
  } catch (error) {
    if (error instanceof MpiError) throw new ConfigError(error.message);
    throw error;
  }
}

/** How a run differs on a data-parallel rank. */
export interface DataParallelRun {
  /** The config the batch loaders are opened with (this rank's batch; validation on rank 0 only). */
  loaderConfig: ResolvedRunConfig;
  /** This rank's first sample in each global batch. */
  firstSample: number;
  /** Trainer options of this rank (none for a single process). */
  trainer: Pick<TrainerOptions, "gradientHook" | "distributed" | "log">;
}

/** This rank's loader config and Trainer options; a single process gets the run unchanged. */
export function dataParallelRun(dist: Distributed, gpu: Gpu, config: ResolvedRunConfig): DataParallelRun {
  const parallel = dataParallel(dist, gpu);
  if (!parallel) return { loaderConfig: config, firstSample: 0, trainer: {} };
  let share;
  try {
    share = shareOfBatch(config.batch, dist);
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }
  const adapter = gpu.adapterInfo;
  console.log(
    `rank ${dist.rank}/${dist.size} (local ${dist.localRank}): ${share.batch} of ${config.batch} samples a step ` +
      `on ${adapter.description || adapter.device || adapter.vendor || "the default adapter"}`,
  );
  return {
    loaderConfig: {
      ...config,
      batch: share.batch,
      validationBatches: dist.primary ? config.validationBatches : 0,
    },
    firstSample: share.firstSample,
    trainer: {
      gradientHook: parallel.gradientHook,
      distributed: parallel.role,
      ...(dist.primary ? {} : { log: () => {} }),
    },
  };
}
