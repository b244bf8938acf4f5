/**
 * Activation checkpointing: a segment of the forward pass (a ResEnc encoder stage, a transformer block)
 * keeps none of its activations for backward; its backward recomputes the segment's forward pass from
 * the saved inputs and walks that small graph. Memory: the segment's saved activations are replaced by
 * its inputs; cost: one more forward pass of the segment.
 *
 * How: the forward pass runs the segment in a memory scope with the graph recorded, notes the leaves
 * it reaches (the parameters it reads), and returns a detached copy of the output, so the scope releases
 * the segment's graph and its intermediate tensors at once. One autograd node stands for the segment
 * (inputs: the segment's inputs and its parameters; saved: the inputs). Its backward rule recomputes
 * the segment under the same autocast state and generator states, runs `backward()` through it with the
 * output gradient as seed (the parameters' gradients accumulate as usual) and returns the inputs'
 * gradients. The recomputation runs the same kernels on the same values, so the gradients equal those of
 * the uncheckpointed graph bit for bit as long as the kernels are deterministic (they are: no atomics).
 *
 * A segment must be a pure function of its inputs, the parameters it reads and the given generators;
 * tensors it creates and keeps elsewhere (a cache) must be taken out of the scope with `keep()`.
 */
import { backward, isGradEnabled, record, withGrad } from "./autograd.ts";
import { autocast, isAutocastEnabled } from "./autocast.ts";
import type { Generator, GeneratorState } from "./random.ts";
import { scope, trackTensor } from "./scope.ts";
import type { GradNode, Tensor } from "./tensor.ts";

/** Options of {@link checkpoint}. */
export interface CheckpointOptions {
  /** Generators the segment draws from (dropout, drop path): the recomputation replays their draws. */
  generators?: readonly (Generator | undefined)[];
}

/** A view of `t` that is a leaf (no graph), with `t`'s requiresGrad. */
function detached(t: Tensor): Tensor {
  const v = t.view(t.shape);
  v.requiresGrad = t.requiresGrad;
  return v;
}

/**
 * The leaves that require grad (the parameters), reached from the segment's output `root` through its
 * graph, which stops at the segment's own inputs `xs`. A tensor with a graph made before the segment
 * (ids are increasing; `xs` were made first) is an input the caller did not pass: refused, as the
 * recomputation could not reach its graph without running (and releasing) the rest of the backward pass.
 */
function leavesOf(root: Tensor, xs: readonly Tensor[]): Tensor[] {
  const exclude = new Set(xs);
  const firstId = Math.min(root.id, ...xs.map((x) => x.id));
  const leaves: Tensor[] = [];
  const seen = new Set<GradNode>();
  const found = new Set<Tensor>();
  const stack = [root];
  while (stack.length > 0) {
    const t = stack.pop()!;
    const node = t.node;
    if (!node) {
      if (t.requiresGrad && !exclude.has(t) && !found.has(t)) {
        found.add(t);
        leaves.push(t);
      }
      continue;
    }
    if (seen.has(node)) continue;
    if (t.id < firstId) {
      throw new Error(
        `checkpoint(): the segment reads ${t}, which has a graph but is not one of its inputs; pass it in inputs`,
      );
    }
    seen.add(node);
    stack.push(...node.inputs);
  }
  return leaves;
}

/**
 * Runs `segment(...inputs)` with activation checkpointing: the same output and gradients as calling it
 * directly, without keeping the segment's activations for backward (they are recomputed there). Without
 * a graph to record (`noGrad()`, or no input or parameter requiring grad) it simply calls the segment.
 * @example
 * h = checkpoint((x) => block.forward(x, rope, rng), [h], { generators: [rng] });
 */
export function checkpoint(
  segment: (...inputs: Tensor[]) => Tensor,
  inputs: readonly Tensor[],
  options: CheckpointOptions = {},
): Tensor {
  if (!isGradEnabled()) return segment(...inputs);
  const generators = options.generators?.filter((g): g is Generator => g !== undefined) ?? [];
  const states: GeneratorState[] = generators.map((g) => g.state);
  const mixed = isAutocastEnabled();
  let parameters: Tensor[] = [];
  const output = scope(() => {
    const xs = inputs.map(detached);
    const y = segment(...xs);
    parameters = leavesOf(y, xs);
    return detached(y);
  });
  const recorded = record("checkpoint", [...inputs, ...parameters], output, inputs, (g) => {
    const after = generators.map((gen) => gen.state);
    generators.forEach((gen, i) => (gen.state = states[i]));
    try {
      const grads = scope(() =>
        withGrad(() => {
          const xs = inputs.map(detached);
          const y = autocast(() => segment(...xs), { enabled: mixed });
          if (y.requiresGrad) backward(y, g);
          return xs.map((x) => {
            const grad = x.grad;
            x.grad = undefined; // handed over to the caller (the scope would otherwise dispose it)
            if (grad) trackTensor(grad);
            return grad;
          });
        })
      );
      return [...grads, ...parameters.map(() => undefined)];
    } finally {
      generators.forEach((gen, i) => (gen.state = after[i]));
    }
  });
  return recorded;
}
