/**
 * Reverse-mode autograd with hand-written backward rules.
 *
 * A differentiable op calls {@link record} with its inputs, output, the tensors its backward rule needs
 * (retained until that rule has run) and the rule itself, written with other ops. `backward(loss)` walks
 * the graph in reverse topological order, releases each node's saved tensors as soon as its rule has
 * run, and accumulates into the `grad` of leaves (tensors with `requiresGrad` and no node). Gradients
 * accumulate across calls until the caller clears them (gradient accumulation).
 */
import { currentOpFamily, withOpFamily } from "../gpu/op_family.ts";
import { autocast } from "./autocast.ts";
import { releaseNode, scopeOwned, trackNode } from "./scope.ts";
import { sameShape } from "./shape.ts";
import type { GradNode, Tensor } from "./tensor.ts";

let gradEnabled = true;

/** Whether ops currently record the graph. */
export function isGradEnabled(): boolean {
  return gradEnabled;
}

/**
 * Runs `fn` recording the graph even inside `backward()` (which records nothing): a checkpointed
 * segment recomputes its forward pass this way (core/tensor/checkpoint.ts).
 * @internal
 */
export function withGrad<T>(fn: () => T): T {
  const previous = gradEnabled;
  gradEnabled = true;
  try {
    return fn();
  } finally {
    gradEnabled = previous;
  }
}

/** Runs `fn` without recording the autograd graph (evaluation, optimizer updates). */
export function noGrad<T>(fn: () => T): T {
  const previous = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = previous;
  }
}

/**
 * Records a differentiable op. Call after computing `output`. `backward(grad)` returns one gradient (or
 * undefined) per input, shaped like that input, and may only use `saved` tensors and plain values.
 */
export function record(
  name: string,
  inputs: readonly Tensor[],
  output: Tensor,
  saved: readonly Tensor[],
  backward: (grad: Tensor) => readonly (Tensor | undefined)[],
): Tensor {
  if (!gradEnabled || !inputs.some((t) => t.requiresGrad)) return output;
  for (const t of saved) t.retain();
  const node: GradNode = { name, inputs, saved, backward, released: false, family: currentOpFamily() };
  output.requiresGrad = true;
  output.node = node;
  trackNode(node);
  return output;
}

/** Accumulation used for gradients; injected by the ops layer to avoid an import cycle. */
export interface GradMath {
  /** a + b as a new tensor. */
  add(a: Tensor, b: Tensor): Tensor;
  /** target += source in place. */
  addInPlace(target: Tensor, source: Tensor): void;
  /** A copy. */
  clone(a: Tensor): Tensor;
  /** A tensor of ones shaped like `a`. */
  onesLike(a: Tensor): Tensor;
  /** `a` converted to a float dtype (not recorded). */
  cast(a: Tensor, dtype: "f32" | "f16"): Tensor;
}

let math: GradMath | undefined;

/** @internal Installs the ops autograd needs (called once by the ops module). */
export function installGradMath(m: GradMath): void {
  math = m;
}

function topologicalOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const visited = new Set<Tensor>();
  const stack: [Tensor, number][] = [[root, 0]];
  visited.add(root);
  while (stack.length > 0) {
    const top = stack[stack.length - 1];
    const [t, i] = top;
    const inputs = t.node?.inputs ?? [];
    if (i < inputs.length) {
      top[1]++;
      const next = inputs[i];
      if (next.node && !visited.has(next)) {
        visited.add(next);
        stack.push([next, 0]);
      }
    } else {
      stack.pop();
      order.push(t);
    }
  }
  return order.reverse(); // root first
}

/** Options of {@link backward}. */
export interface BackwardOptions {
  /**
   * Called once per leaf as soon as its gradient is complete (every use of it in the graph processed),
   * while the rest of backward is still being recorded: e.g. to start averaging it across processes.
   */
  onLeafGradient?: (leaf: Tensor) => void;
}

/**
 * Computes gradients of `loss` (default seed: ones, so a scalar loss gives d loss / d leaf) and adds
 * them to the `grad` of every leaf that requires grad. Releases the graph as it goes.
 */
export function backward(loss: Tensor, seed?: Tensor, options: BackwardOptions = {}): void {
  if (!math) throw new Error("autograd ops are not installed (import core/tensor/mod.ts)");
  const m = math;
  if (!loss.requiresGrad) throw new Error(`backward(): ${loss} does not require grad (no graph to walk)`);
  if (seed && seed.size !== loss.size) throw new RangeError(`backward(): seed of ${seed} for ${loss}`);
  const previous = gradEnabled;
  gradEnabled = false;
  try {
    const grads = new Map<Tensor, Tensor>();
    const [first] = scopeOwned(() => [seed ? seed : m.onesLike(loss)]);
    if (!loss.node) {
      accumulateLeaf(loss, first!, m);
      first!.dispose();
      options.onLeafGradient?.(loss);
      return;
    }
    grads.set(loss, first!);
    const order = topologicalOrder(loss);
    // uses of each leaf still to be processed (only counted when someone listens)
    const pending = new Map<Tensor, number>();
    const notify = options.onLeafGradient;
    if (notify) {
      for (const t of order) {
        for (const input of t.node!.inputs) {
          if (input.requiresGrad && !input.node) pending.set(input, (pending.get(input) ?? 0) + 1);
        }
      }
    }
    const used = (node: NonNullable<Tensor["node"]>) => {
      if (!notify) return;
      for (const input of node.inputs) {
        const left = pending.get(input);
        if (left === undefined) continue;
        if (left > 1) pending.set(input, left - 1);
        else {
          pending.delete(input);
          notify(input);
        }
      }
    };
    for (const t of order) {
      const node = t.node!;
      const g = grads.get(t);
      grads.delete(t);
      if (!g || node.released) {
        g?.dispose();
        used(node);
        continue;
      }
      // autocast off: each rule follows the dtypes its op recorded (core/tensor/autocast.ts)
      const inputGrads = scopeOwned(() =>
        withOpFamily(node.family, () => autocast(() => node.backward(g), { enabled: false }))
      );
      g.dispose();
      releaseNode(node);
      node.inputs.forEach((input, i) => {
        let gi = inputGrads[i];
        if (!gi) return;
        if (!input.requiresGrad) return gi.dispose();
        if (gi.dtype !== input.dtype && (input.dtype === "f32" || input.dtype === "f16")) {
          // a gradient always has its tensor's dtype (mixed precision: an f16 activation read by an op
          // that computed in f32 gets its gradient back in f16)
          const converted = gi;
          gi = scopeOwned(() => [m.cast(converted, input.dtype as "f32" | "f16")])[0];
          converted.dispose();
        }
        if (!sameShape(gi.shape, input.shape)) {
          throw new Error(`backward of ${node.name}: gradient [${gi.shape}] for input [${input.shape}]`);
        }
        if (!input.node) {
          accumulateLeaf(input, gi, m);
          gi.dispose();
        } else {
          const existing = grads.get(input);
          if (!existing) grads.set(input, gi);
          else {
            const [sum] = scopeOwned(() => [m.add(existing, gi)]);
            existing.dispose();
            gi.dispose();
            grads.set(input, sum!);
          }
        }
      });
      used(node);
    }
    for (const g of grads.values()) g.dispose();
  } finally {
    gradEnabled = previous;
  }
}

function accumulateLeaf(leaf: Tensor, g: Tensor, m: GradMath): void {
  if (leaf.grad) {
    m.addInPlace(leaf.grad, g);
  } else {
    // A copy, never `g` itself: one gradient tensor may flow to several leaves (e.g. both sides of add).
    const [copy] = scopeOwned(() => [m.clone(g)]);
    leaf.grad = copy;
  }
}
