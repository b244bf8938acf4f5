/**
 * Agreeing on a string across ranks: the root's value wins. Used where each rank would otherwise compute
 * its own (a run folder named after the clock, which can tick over between ranks).
 *
 * @module
 */
import type { Mpi } from "./mpi.ts";

/**
 * Returns `root`'s `text` on every rank (a collective: every rank must call it, with any text). Without
 * MPI (a single process) the text is returned as it is.
 * @example
 * const same = broadcastText(undefined, "runs/2026-12-03T20-41-55-resenc-mae");
 * if (same !== "runs/2026-12-03T20-41-55-resenc-mae") throw new Error("a single process keeps its text");
 */
export function broadcastText(mpi: Mpi | undefined, text: string, root = 0): string {
  if (!mpi) return text;
  const mine = new TextEncoder().encode(text);
  const length = Int32Array.of(mine.length);
  mpi.broadcast(length, root);
  const bytes = new Uint8Array(length[0]);
  if (mpi.rank === root) bytes.set(mine);
  mpi.broadcast(bytes, root);
  return new TextDecoder().decode(bytes);
}
