/**
 * What a graph keeps for backward: the bytes of the distinct storage ranges its nodes saved, split by
 * dtype. Parameters (leaves that require grad) are left out, and so are their f16 copies under autocast
 * (a cast of a parameter), counted apart as `weightCopies`: their size is the model's, not the
 * activations'. Used by
 * the mixed-precision and checkpointing tests and by bench/activation_memory.ts.
 */
import type { GradNode, Tensor } from "./tensor.ts";

/** Saved bytes of a graph, in total and per dtype. */
export interface SavedBytes {
  /** Bytes of all saved activations. */
  total: number;
  /** Bytes per dtype ("f16", "f32", "i32", …). */
  byDtype: Record<string, number>;
  /** Autograd nodes walked. */
  nodes: number;
  /** Bytes of saved f16 copies of parameters (autocast's weight casts), not in `total`. */
  weightCopies: number;
}

/** A parameter: a leaf that requires grad. */
const isParameter = (t: Tensor) => t.requiresGrad && !t.node;

/** Counts the activations the graph behind `root` saved for backward (each storage range once). */
export function savedActivationBytes(root: Tensor): SavedBytes {
  const seenNodes = new Set<GradNode>();
  const seenRanges = new Set<string>();
  const byDtype: Record<string, number> = {};
  let total = 0;
  let weightCopies = 0;
  const stack = [root];
  while (stack.length > 0) {
    const node = stack.pop()!.node;
    if (!node || node.released || seenNodes.has(node)) continue;
    seenNodes.add(node);
    stack.push(...node.inputs);
    for (const t of node.saved) {
      if (isParameter(t) || t.disposed) continue;
      const key = `${t.buffer.id}:${t.byteOffset}:${t.byteLength}`;
      if (seenRanges.has(key)) continue;
      seenRanges.add(key);
      if (t.node?.name === "cast" && isParameter(t.node.inputs[0])) {
        weightCopies += t.byteLength;
        continue;
      }
      total += t.byteLength;
      byDtype[t.dtype] = (byDtype[t.dtype] ?? 0) + t.byteLength;
    }
  }
  return { total, byDtype, nodes: seenNodes.size, weightCopies };
}
