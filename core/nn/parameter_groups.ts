/**
 * Moves a module's parameters into arenas, one per parameter group, with a gradient arena of the same
 * layout. Afterwards every parameter is a view into its group's arena and its `grad` a view into the
 * gradient arena, so backward accumulates in place and a fused optimizer updates a group per dispatch.
 */
import { runElementwise } from "../../kernels/mod.ts";
import { type Arena, contiguousStrides, createArena, planArena, type Tensor } from "../tensor/mod.ts";
import type { Module } from "./module.ts";

/** Parameters of one group, packed. */
export interface ParameterGroup {
  /** Dotted names, in arena order. */
  names: string[];
  /** The group's parameters, packed: each parameter is a view into it. */
  params: Arena;
  /** Their gradients, in the same layout: each parameter's `grad` is a view into it. */
  grads: Arena;
  /** Per-group hyperparameter overrides (e.g. no weight decay for norms and biases). */
  options: { weightDecay?: number };
}

/** Options of {@link packParameters}. */
export interface PackOptions {
  /** Assigns a parameter to a group by name (default: one group). */
  group?: (name: string, param: Tensor) => number;
  /** Overrides per group index. */
  groupOptions?: ParameterGroup["options"][];
}

/** Packs `module`'s parameters into arenas (f32). Call once, before training. */
export function packParameters(module: Module, options: PackOptions = {}): ParameterGroup[] {
  const named = [...module.namedParameters()];
  if (named.length === 0) throw new Error("packParameters(): the module has no parameters");
  const gpu = named[0][1].gpu;
  const byGroup = new Map<number, [string, Tensor][]>();
  for (const [name, t] of named) {
    if (t.dtype !== "f32") throw new TypeError(`parameter ${name} is ${t.dtype}; master weights are f32`);
    const g = options.group?.(name, t) ?? 0;
    if (!byGroup.has(g)) byGroup.set(g, []);
    byGroup.get(g)!.push([name, t]);
  }
  const groups: ParameterGroup[] = [];
  for (const [index, members] of [...byGroup].sort((a, b) => a[0] - b[0])) {
    const layout = planArena(
      members.map(([, t]) => t.shape),
      "f32",
      gpu.limits.minStorageBufferOffsetAlignment,
    );
    const params = createArena(gpu, layout, "f32");
    const grads = createArena(gpu, layout, "f32");
    members.forEach(([name, old], i) => {
      const part = params.parts[i];
      runElementwise(
        gpu,
        { name: "copy", expr: "a", inputs: ["f32"], output: "f32" },
        [{ binding: old.binding, strides: contiguousStrides(old.shape) }],
        part.binding,
        old.shape,
      );
      module.replaceParameter(name, part).dispose();
      part.grad = grads.parts[i];
    });
    groups.push({
      names: members.map(([n]) => n),
      params,
      grads,
      options: options.groupOptions?.[index] ?? {},
    });
  }
  return groups;
}
