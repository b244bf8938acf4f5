/**
 * What a graph keeps for backward: the bytes of the distinct storage ranges its nodes saved, split by
 * dtype, leaves that require grad (parameters, whose memory is not an activation's) left out. Used by
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
}

/** Counts the activations the graph behind `root` saved for backward (each storage range once). */
export function savedActivationBytes(root: Tensor): SavedBytes {
  const seenNodes = new Set<GradNode>();
  const seenRanges = new Set<string>();
  const byDtype: Record<string, number> = {};
  let total = 0;
  const stack = [root];
  while (stack.length > 0) {
    const node = stack.pop()!.node;
    if (!node || node.released || seenNodes.has(node)) continue;
    seenNodes.add(node);
    stack.push(...node.inputs);
    for (const t of node.saved) {
      if (t.requiresGrad && !t.node) continue; // a parameter
      if (t.disposed) continue;
      const key = `${t.buffer.id}:${t.byteOffset}:${t.byteLength}`;
      if (seenRanges.has(key)) continue;
      seenRanges.add(key);
      total += t.byteLength;
      byDtype[t.dtype] = (byDtype[t.dtype] ?? 0) + t.byteLength;
    }
  }
  return { total, byDtype, nodes: seenNodes.size };
}
