/**
 * Log values over ranks: each rank's interval means of the loss and metrics, averaged, so the logged loss
 * is that of the global batch (every rank trains on the same number of samples), as one process logs it.
 *
 * @module
 */
import { allGatherJson } from "./all_gather.ts";
import type { Mpi } from "./mpi.ts";

/** The mean over ranks of each named value (a name some rank lacks is averaged over the ranks that have it). */
export function averageOverRanks(
  mpi: Mpi | undefined,
  local: Record<string, number>,
): Record<string, number> {
  if (!mpi || mpi.size === 1) return local;
  const all = allGatherJson(mpi, local);
  const out: Record<string, number> = {};
  for (const name of Object.keys(local)) {
    const values = all.map((values) => values[name]).filter((v) => typeof v === "number");
    out[name] = values.reduce((s, v) => s + v, 0) / values.length;
  }
  return out;
}
