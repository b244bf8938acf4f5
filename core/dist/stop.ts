/**
 * Agreeing on when to stop. A signal may reach one rank, all of them, or reach them between different
 * steps; each step every rank contributes its local stop request to a max-allreduce, so every rank
 * sees the same decision after the same step and the job saves one checkpoint and ends together
 * instead of leaving ranks waiting in a collective forever.
 *
 * @module
 */
import type { Mpi } from "./mpi.ts";

/** Stop reasons in their agreed priority order (the highest code wins). */
export const STOP_REASONS = ["stopAfterStep", "SIGINT", "SIGUSR1", "SIGTERM"] as const;

/**
 * The job-wide stop decision for this step: undefined when no rank asked to stop, else the most urgent
 * reason any rank had. One 4-byte allreduce; every rank must call it once per step.
 */
export function agreeOnStop(mpi: Mpi | undefined, local: string | undefined): string | undefined {
  if (!mpi || mpi.size === 1) return local;
  const known = local === undefined ? -1 : STOP_REASONS.indexOf(local as typeof STOP_REASONS[number]);
  const code = new Int32Array([local === undefined ? 0 : known >= 0 ? known + 1 : STOP_REASONS.length + 1]);
  mpi.allreduce(code, "max");
  if (code[0] === 0) return undefined;
  return STOP_REASONS[code[0] - 1] ?? "stop";
}
