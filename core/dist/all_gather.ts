/**
 * All-gather of embeddings for contrastive losses across ranks (SimCLR, VoCo, the SwinUNETR pretext):
 * every rank gets every rank's rows, so a loss can use the whole global batch as negatives. The rows of
 * other ranks arrive as constants; this rank's rows stay the tensor it passed, so gradients flow to its
 * own embeddings (the usual rule of distributed contrastive training: each rank back-propagates the
 * loss terms through its own samples, and the gradient allreduce adds up the rest).
 *
 * A method's `loss()` is synchronous while the gather waits for a GPU readback and the network, so a
 * method calls this from an asynchronous hook (or before its loss), not inside `loss()`.
 *
 * @module
 */
import { cast, concat, type Tensor, tensor } from "../tensor/mod.ts";
import type { Mpi } from "./mpi.ts";

/**
 * Every rank's `local` (shape `[B, ...]`, the same on every rank) stacked along axis 0 in rank order:
 * `[size·B, ...]`, f32. Rows `rank·B … rank·B + B − 1` are `local` itself (differentiable); the others are
 * constants. With one process (`mpi` undefined) it returns `local` (cast to f32).
 */
export async function allGatherRows(mpi: Mpi | undefined, local: Tensor): Promise<Tensor> {
  if (local.rank < 1) throw new RangeError(`allGatherRows(): expected a tensor [B, ...], got a scalar`);
  const own = local.dtype === "f32" ? local : cast(local, "f32");
  if (!mpi || mpi.size === 1) return own;
  const host = Float32Array.from(await own.toArray());
  const shape = local.shape;
  const lengths = new Int32Array([host.length]);
  const all = mpi.allgather(lengths);
  if (all.some((n) => n !== host.length)) {
    throw new RangeError(
      `allGatherRows(): ranks hold different sizes (${
        [...all].join(", ")
      } values); every rank must pass [B, ...] ` +
        `of the same shape (rank ${mpi.rank}: [${shape}])`,
    );
  }
  const gathered = mpi.allgather(host);
  const rows = (r: number) =>
    tensor(gathered.subarray(r * host.length, (r + 1) * host.length), [...shape], { gpu: local.gpu });
  const parts: Tensor[] = [];
  for (let r = 0; r < mpi.size; r++) parts.push(r === mpi.rank ? own : rows(r));
  return concat(parts, 0);
}

/**
 * Every rank's `value` (JSON-serialisable) in rank order: for merging per-rank summaries (e.g. the
 * shards of distributed preprocessing). With one process (`mpi` undefined) it returns `[value]`.
 */
export function allGatherJson<T>(mpi: Mpi | undefined, value: T): T[] {
  if (!mpi || mpi.size === 1) return [value];
  const bytes = new TextEncoder().encode(JSON.stringify(value));
  const lengths = mpi.allgather(new Int32Array([bytes.length]));
  const width = Math.max(...lengths);
  const padded = new Uint8Array(width);
  padded.set(bytes);
  const all = mpi.allgather(padded);
  const decoder = new TextDecoder();
  return [...lengths].map((n, r) => JSON.parse(decoder.decode(all.subarray(r * width, r * width + n))) as T);
}
