/**
 * Is this process one rank of a parallel job, and which? The launcher says so in the environment
 * (MPICH's Hydra `mpiexec` and `srun --mpi=pmi2`: PMI_RANK/PMI_SIZE; an `srun` step without PMI:
 * SLURM_PROCID/SLURM_STEP_NUM_TASKS; PMIx:
 * PMIX_RANK; Open MPI: OMPI_COMM_WORLD_*). Only when it names more than one process is MPI loaded and
 * initialised; a plain run, or a job of one, never touches an MPI library.
 *
 * @module
 */
import { type Mpi, MpiError, openMpi } from "./mpi.ts";

/** What the launcher's environment says about this process. */
export interface LaunchInfo {
  /** The launcher that set the variables. */
  launcher: "mpich" | "slurm" | "pmix" | "openmpi";
  /** Rank according to the environment. */
  rank: number;
  /** Processes according to the environment. */
  size: number;
  /** Rank among the processes on this node (when the launcher says). */
  localRank?: number;
  /** Processes on this node (when the launcher says). */
  localSize?: number;
}

/**
 * A variable's value, or undefined where this process may not read it: the plugin sandbox grants only the
 * variables it names, and a sandboxed run is never part of an MPI job (cli/commands/pretrain.ts refuses it).
 */
function readGrantedEnv(name: string): string | undefined {
  if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") return undefined;
  return Deno.env.get(name);
}

const int = (value: string | undefined) => {
  if (value === undefined || !/^\d+$/.test(value.trim())) return undefined;
  return Number(value);
};

/** Reads the launcher's variables from `env` (default: the process's); undefined outside a parallel job. */
export function launchInfo(
  env: (name: string) => string | undefined = readGrantedEnv,
): LaunchInfo | undefined {
  const read = (launcher: LaunchInfo["launcher"], rank: string, size: string, lr?: string, ls?: string) => {
    const r = int(env(rank)), s = int(env(size));
    if (r === undefined || s === undefined) return undefined;
    const localRank = lr ? int(env(lr)) : undefined;
    const localSize = ls ? int(env(ls)) : undefined;
    return {
      launcher,
      rank: r,
      size: s,
      ...(localRank !== undefined ? { localRank } : {}),
      ...(localSize !== undefined ? { localSize } : {}),
    };
  };
  return read("mpich", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS") ??
    read(
      "openmpi",
      "OMPI_COMM_WORLD_RANK",
      "OMPI_COMM_WORLD_SIZE",
      "OMPI_COMM_WORLD_LOCAL_RANK",
      "OMPI_COMM_WORLD_LOCAL_SIZE",
    ) ??
    read("pmix", "PMIX_RANK", "PMIX_SIZE") ??
    // Slurm sets SLURM_NTASKS in the batch script too: only an srun step (SLURM_STEP_ID) is a parallel job
    (int(env("SLURM_STEP_ID")) !== undefined
      ? read("slurm", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID")
      : undefined);
}

/** This process's place in the job: rank 0 of 1 outside MPI. */
export interface Distributed {
  /** This process's rank (0 … size−1). */
  readonly rank: number;
  /** Processes in the job. */
  readonly size: number;
  /** Rank among the processes on this node (0 outside a job; from the launcher or MPI). */
  readonly localRank: number;
  /** Whether this rank writes logs, metrics, checkpoints and summaries (rank 0). */
  readonly primary: boolean;
  /** The initialised MPI library (absent for a single process). */
  readonly mpi?: Mpi;
  /** Finalises MPI (nothing for a single process). Call once at the end. */
  finalize(): void;
}

/** A single process: rank 0 of 1, no MPI. */
export const SINGLE_PROCESS: Distributed = {
  rank: 0,
  size: 1,
  localRank: 0,
  primary: true,
  finalize() {},
};

/** Options of {@link initDistributed}. */
export interface InitDistributedOptions {
  /** Environment lookup (default: `Deno.env.get` where the variable may be read). */
  env?: (name: string) => string | undefined;
  /** Opens MPI (default {@link openMpi}); tests pass a fake. */
  open?: () => Mpi;
  /** Whether file descriptor `fd` is open in this process (default: /proc/self/fd). */
  fdIsOpen?: (fd: number) => boolean;
}

function procFdIsOpen(fd: number): boolean {
  try {
    Deno.lstatSync(`/proc/self/fd/${fd}`);
    return true;
  } catch (error) {
    // no /proc (not Linux) or no permission to look: assume open and let MPI decide
    return !(error instanceof Deno.errors.NotFound);
  }
}

/**
 * MPICH aborts the process inside `MPI_Init` when the launcher's PMI connection is missing, with an
 * error stack that does not say why; this names the usual cause first. Only for PMI-1 launchers (Hydra,
 * `srun --mpi=pmi2`), which pass the connection as PMI_FD or PMI_PORT.
 */
function checkPmiConnection(
  info: LaunchInfo,
  env: (name: string) => string | undefined,
  fdIsOpen: (fd: number) => boolean,
): void {
  if (info.launcher !== "mpich" || env("PMI_PORT")) return;
  const fd = env("PMI_FD");
  const problem = fd === undefined
    ? "PMI_FD and PMI_PORT are not set"
    : !/^\d+$/.test(fd) || !fdIsOpen(Number(fd))
    ? `PMI_FD=${fd} is not an open file descriptor of this process`
    : undefined;
  if (!problem) return;
  throw new MpiError(
    `launched as rank ${info.rank} of ${info.size} (PMI_RANK/PMI_SIZE are set) but ${problem}: the process ` +
      "was not started directly by the MPI launcher. Run the real deno binary under mpiexec " +
      "(`mpiexec -n 2 ./deno task pretrain ...`), not a launcher that closes inherited descriptors " +
      "(e.g. npx deno), and do not copy PMI_* variables into other processes.",
  );
}

/**
 * Joins the parallel job this process was launched in, or returns {@link SINGLE_PROCESS} when it was not
 * (or the job has one process). Throws an {@link MpiError} that says what to fix when the MPI library is
 * missing, is not MPICH-compatible, or disagrees with the launcher (e.g. Open MPI's `mpirun` starting
 * processes linked against MPICH: each would be a job of one).
 */
export function initDistributed(options: InitDistributedOptions = {}): Distributed {
  const env = options.env ?? readGrantedEnv;
  const info = launchInfo(env);
  if (!info || info.size <= 1) return SINGLE_PROCESS;
  checkPmiConnection(info, env, options.fdIsOpen ?? procFdIsOpen);
  let mpi: Mpi;
  try {
    mpi = (options.open ?? openMpi)();
  } catch (error) {
    if (!(error instanceof MpiError)) throw error;
    throw new MpiError(
      `launched as rank ${info.rank} of ${info.size} (${info.launcher} environment) but MPI did not start: ` +
        `${error.message}${launcherHint(info)}`,
      error.code,
    );
  }
  if (mpi.size !== info.size || mpi.rank !== info.rank) {
    const found = { size: mpi.size, rank: mpi.rank };
    mpi.finalize();
    throw new MpiError(
      `the launcher says rank ${info.rank} of ${info.size} (${info.launcher}) but MPI (${mpi.library}) says rank ` +
        `${found.rank} of ${found.size}: the launcher and the MPI library do not belong together.` +
        launcherHint(info),
    );
  }
  return {
    rank: mpi.rank,
    size: mpi.size,
    localRank: info.localRank ?? 0,
    primary: mpi.rank === 0,
    mpi,
    finalize: () => mpi.finalize(),
  };
}

function launcherHint(info: LaunchInfo): string {
  switch (info.launcher) {
    case "openmpi":
      return " voxssl binds the MPICH ABI (MPICH, Intel MPI, Cray MPICH, MVAPICH); Open MPI's mpirun cannot " +
        "start it. Use MPICH's mpiexec (Debian: apt-get install mpich) or srun --mpi=pmi2.";
    case "slurm":
      return " Under Slurm, start the ranks with `srun --mpi=pmi2` (or pmix where MPICH was built with it).";
    default:
      return " Start the ranks with the mpiexec of the same MPI installation as the library " +
        "(`mpiexec -n 2 ./deno task pretrain ...`; set VOXSSL_MPI_LIBRARY to pick the library).";
  }
}
