/**
 * Module: a named tree of parameters and child modules, with PyTorch-style dotted parameter names
 * (`encoder.stages.0.0.convs.0.conv.weight`) so weights move to and from PyTorch state dicts.
 *
 * Layers read their parameters by name at call time (`this.p("weight")`), never from cached fields:
 * the optimizer moves parameters into arenas after the model is built (see parameter_groups.ts).
 */
import { OWNED_TENSORS, type Tensor, type TensorOwner } from "../tensor/mod.ts";

/**
 * A tree node holding parameters and children. Subclasses add a `forward`. Returning a module from a
 * `scope()` keeps its parameters.
 */
export class Module implements TensorOwner {
  /** Training mode (dropout, drop path active). */
  training = true;
  readonly #params = new Map<string, Tensor>();
  readonly #buffers = new Map<string, Tensor>();
  readonly #children = new Map<string, Module>();

  /** Registers a trainable parameter (marked `requiresGrad`) under `name`. Returns it. */
  protected registerParameter(name: string, value: Tensor): Tensor {
    if (name.includes(".")) throw new Error(`parameter name "${name}" must not contain a dot`);
    this.#checkFree(name);
    value.requiresGrad = true;
    this.#params.set(name, value);
    return value;
  }

  /**
   * Registers a non-trainable tensor under `name`: saved in state dicts and checkpoints, never given a
   * gradient or optimizer state (running statistics, a queue, an EMA value). Update it in place.
   */
  protected registerBuffer(name: string, value: Tensor): Tensor {
    if (name.includes(".")) throw new Error(`buffer name "${name}" must not contain a dot`);
    this.#checkFree(name);
    if (value.dtype !== "f32") throw new TypeError(`buffer "${name}" is ${value.dtype}; buffers are f32`);
    value.requiresGrad = false;
    this.#buffers.set(name, value);
    return value;
  }

  /** The buffer registered as `name` on this module. */
  protected buffer(name: string): Tensor {
    const t = this.#buffers.get(name);
    if (!t) throw new Error(`${this.constructor.name} has no buffer "${name}"`);
    return t;
  }

  #checkFree(name: string): void {
    if (this.#params.has(name) || this.#buffers.has(name) || this.#children.has(name)) {
      throw new Error(`"${name}" is already registered`);
    }
  }

  /** Registers a child module under `name` (numbers for lists: "0", "1", ...). Returns it. */
  protected registerModule<T extends Module>(name: string, child: T): T {
    if (name.includes(".")) throw new Error(`module name "${name}" must not contain a dot`);
    this.#checkFree(name);
    this.#children.set(name, child);
    return child;
  }

  /** The parameter registered as `name` on this module. */
  protected p(name: string): Tensor {
    const t = this.#params.get(name);
    if (!t) throw new Error(`${this.constructor.name} has no parameter "${name}"`);
    return t;
  }

  /** Whether this module has a parameter `name` (optional ones like bias). */
  protected hasParameter(name: string): boolean {
    return this.#params.has(name);
  }

  /** The child registered as `name`. */
  child<T extends Module = Module>(name: string): T {
    const c = this.#children.get(name);
    if (!c) throw new Error(`${this.constructor.name} has no child "${name}"`);
    return c as T;
  }

  /** Direct children in registration order. */
  children(): [string, Module][] {
    return [...this.#children];
  }

  /** Every parameter with its dotted name, depth first in registration order. */
  *namedParameters(prefix = ""): Generator<[string, Tensor]> {
    for (const [name, t] of this.#params) yield [prefix + name, t];
    for (const [name, c] of this.#children) yield* c.namedParameters(`${prefix}${name}.`);
  }

  /** Every buffer with its dotted name, depth first in registration order. */
  *namedBuffers(prefix = ""): Generator<[string, Tensor]> {
    for (const [name, t] of this.#buffers) yield [prefix + name, t];
    for (const [name, c] of this.#children) yield* c.namedBuffers(`${prefix}${name}.`);
  }

  /** Every parameter. */
  parameters(): Tensor[] {
    return [...this.namedParameters()].map(([, t]) => t);
  }

  /** Every module with its dotted name (this one as ""). */
  *namedModules(prefix = ""): Generator<[string, Module]> {
    yield [prefix.replace(/\.$/, ""), this];
    for (const [name, c] of this.#children) yield* c.namedModules(`${prefix}${name}.`);
  }

  /** Replaces the parameter at a dotted name (used to move parameters into arenas). */
  replaceParameter(dottedName: string, value: Tensor): Tensor {
    const parts = dottedName.split(".");
    const owner = parts.slice(0, -1).reduce<Module>((m, part) => m.child(part), this);
    const name = parts[parts.length - 1];
    const old = owner.#params.get(name);
    if (!old) throw new Error(`no parameter "${dottedName}"`);
    if (old.shape.join() !== value.shape.join()) {
      throw new RangeError(`parameter ${dottedName}: shape [${value.shape}] does not match [${old.shape}]`);
    }
    value.requiresGrad = true;
    owner.#params.set(name, value);
    return old;
  }

  /** Sets training mode on this module and every descendant. */
  train(on = true): this {
    for (const [, m] of this.namedModules()) m.training = on;
    return this;
  }

  /** Evaluation mode (`train(false)`). */
  eval(): this {
    return this.train(false);
  }

  /** Number of parameter elements. */
  parameterCount(): number {
    let n = 0;
    for (const [, t] of this.namedParameters()) n += t.size;
    return n;
  }

  /** The parameters and buffers, for memory scopes. */
  [OWNED_TENSORS](): Iterable<Tensor> {
    return [...this.parameters(), ...[...this.namedBuffers()].map(([, t]) => t)];
  }

  /**
   * Disposes every parameter (and its gradient) and buffer: this module's own, then each child's through the
   * child's `dispose()`, so a module that holds other tensors (e.g. a cached rotary table) overrides
   * `dispose()` to release them too.
   */
  dispose(): void {
    for (const t of this.#params.values()) t.dispose();
    for (const t of this.#buffers.values()) t.dispose();
    for (const c of this.#children.values()) c.dispose();
  }
}
