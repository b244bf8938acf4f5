/**
 * Memory scopes. A training step runs inside `scope(() => ...)`: every tensor and autograd node created
 * in it is released when it returns, except the tensors in its result (moved to the enclosing scope) and
 * tensors passed to `keep()`. Parameters and optimizer state are created outside scopes (or kept).
 *
 * Scopes are synchronous on purpose: an `await` inside one would let unrelated work register tensors in
 * it. Read values back (`await t.item()`) after the scope returns.
 */
import type { GradNode, Tensor } from "./tensor.ts";

interface ScopeFrame {
  tensors: Tensor[];
  nodes: GradNode[];
}

const stack: ScopeFrame[] = [];

/** @internal Registers a new tensor with the innermost scope. */
export function trackTensor(t: Tensor): void {
  stack.at(-1)?.tensors.push(t);
}

/** @internal Registers a new autograd node with the innermost scope. */
export function trackNode(node: GradNode): void {
  stack.at(-1)?.nodes.push(node);
}

/** @internal Releases the tensors an autograd node saved for backward. */
export function releaseNode(node: GradNode): void {
  if (node.released) return;
  node.released = true;
  for (const t of node.saved) t.dispose();
}

/**
 * Objects that own tensors (modules, optimizers) implement this method so that returning them from a
 * scope keeps their tensors alive.
 */
export const OWNED_TENSORS: unique symbol = Symbol.for("voxssl.ownedTensors");

/** An object that lists the tensors it owns. */
export interface TensorOwner {
  /** Every tensor the object owns (each once); called when the object is returned from a scope. */
  [OWNED_TENSORS](): Iterable<Tensor>;
}

function collectTensors(value: unknown, into: Set<Tensor>, depth = 0): void {
  if (value === null || typeof value !== "object" || depth > 4) return;
  if (OWNED_TENSORS in value) {
    for (const t of (value as TensorOwner)[OWNED_TENSORS]()) into.add(t);
  } else if ("dispose" in value && "shape" in value && "dtype" in value) {
    into.add(value as Tensor);
  } else if (Array.isArray(value)) {
    for (const v of value) collectTensors(v, into, depth + 1);
  } else if (value instanceof Map) {
    for (const v of value.values()) collectTensors(v, into, depth + 1);
  } else if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collectTensors(v, into, depth + 1);
  }
}

/** Nodes of the graphs that produced `roots` (walking inputs). */
function reachableNodes(roots: Iterable<Tensor>): Set<GradNode> {
  const seen = new Set<GradNode>();
  const stack = [...roots];
  while (stack.length > 0) {
    const node = stack.pop()!.node;
    if (!node || seen.has(node) || node.released) continue;
    seen.add(node);
    stack.push(...node.inputs);
  }
  return seen;
}

/**
 * Runs `fn` in a new memory scope. Tensors in the result (a tensor, or arrays / plain objects / Maps of
 * them, or tensor owners such as modules) survive and move to the enclosing scope; every other tensor
 * created inside is disposed. In a nested scope, the autograd nodes the result depends on survive too (a
 * helper scope inside a forward pass keeps the graph intact); the outermost scope releases the whole
 * graph built inside it, so call `backward()` before it returns.
 */
export function scope<T>(fn: () => T): T {
  const frame: ScopeFrame = { tensors: [], nodes: [] };
  stack.push(frame);
  let result: T;
  try {
    result = fn();
    if (result instanceof Promise) {
      throw new Error("scope() callbacks must be synchronous; read values back after the scope returns");
    }
  } catch (error) {
    stack.pop();
    for (const node of frame.nodes) releaseNode(node);
    for (const t of frame.tensors) t.dispose();
    throw error;
  }
  stack.pop();
  const survivors = new Set<Tensor>();
  collectTensors(result, survivors);
  const parent = stack.at(-1);
  // Inside another scope, the graph the result depends on stays alive (the outer scope may still run
  // backward through it); the outermost scope ends the graph: call backward() before it returns.
  const needed = parent ? reachableNodes(survivors) : new Set<GradNode>();
  for (const node of frame.nodes) {
    if (needed.has(node)) parent!.nodes.push(node);
    else releaseNode(node);
  }
  for (const t of frame.tensors) {
    if (!survivors.has(t)) t.dispose();
    else if (parent) parent.tensors.push(t);
    else t.node = undefined;
  }
  return result;
}

/**
 * Takes tensors out of the innermost scope: they survive it and belong to the caller, who disposes
 * them. Returns its argument.
 */
export function keep<T extends Tensor | readonly Tensor[]>(tensors: T): T {
  const frame = stack.at(-1);
  if (!frame) return tensors;
  const list = Array.isArray(tensors) ? tensors : [tensors as Tensor];
  for (const t of list) {
    const i = frame.tensors.indexOf(t);
    if (i >= 0) frame.tensors.splice(i, 1);
  }
  return tensors;
}

/**
 * Runs `fn` in a scope whose result tensors become owned by the caller with one reference per
 * occurrence (a tensor returned twice, or one from outside, gets an extra reference each time). Used by
 * autograd to hold gradients exactly as long as needed.
 * @internal
 */
export function scopeOwned<T extends readonly (Tensor | undefined)[]>(fn: () => T): T {
  const frame: ScopeFrame = { tensors: [], nodes: [] };
  stack.push(frame);
  let result: T;
  try {
    result = fn();
  } finally {
    stack.pop();
  }
  for (const t of result) t?.retain();
  for (const node of frame.nodes) releaseNode(node);
  for (const t of frame.tensors) t.dispose();
  return result;
}

/** Depth of the scope stack (0 outside any scope). */
export function scopeDepth(): number {
  return stack.length;
}
