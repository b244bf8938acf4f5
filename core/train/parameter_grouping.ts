/**
 * Packs the run's trainable parameters into optimizer groups as the method asks
 * (`MethodInstance.parameterGroup`): each group gets its own arena, learning-rate factor and weight
 * decay. Without a rule every parameter is in the group "default". The group list is recorded in
 * checkpoints, and a resume with another grouping is refused.
 *
 * @module
 */
import { type Module, packParameters, type ParameterGroup } from "../nn/mod.ts";
import { callPlugin, type MethodInstance, type ParameterGroupChoice } from "../plugin/mod.ts";

/** A packed group with its name and learning-rate factor. */
export interface NamedGroup {
  /** The group's name ("default" for parameters no rule claimed). */
  name: string;
  /** Multiplier of the scheduled learning rate. */
  lrScale: number;
  /** Weight decay (undefined: the optimizer's). */
  weightDecay?: number;
  /** Parameters in the group. */
  count: number;
}

/** Packs `model`'s parameters into groups by the method's rule. */
export function groupParameters(
  model: Module,
  instance: MethodInstance,
  methodName: string,
): { groups: ParameterGroup[]; named: NamedGroup[] } {
  const choices = new Map<string, ParameterGroupChoice>([["default", { group: "default" }]]);
  const order = ["default"];
  const byName = new Map<string, string>();
  for (const [name, p] of model.namedParameters()) {
    const choice = callPlugin(methodName, "parameterGroup", () => instance.parameterGroup?.(name, p)) ??
      { group: "default" };
    const known = choices.get(choice.group);
    if (
      known && ((known.lrScale ?? 1) !== (choice.lrScale ?? 1) || known.weightDecay !== choice.weightDecay)
    ) {
      throw new Error(
        `method ${methodName}: parameter group "${choice.group}" was given different settings ` +
          `(${JSON.stringify(known)} and ${JSON.stringify(choice)} for ${name})`,
      );
    }
    if (!known) {
      choices.set(choice.group, choice);
      order.push(choice.group);
    }
    byName.set(name, choice.group);
  }
  const used = order.filter((g) => [...byName.values()].includes(g));
  const index = new Map(used.map((g, i) => [g, i]));
  const groups = packParameters(model, {
    group: (name) => index.get(byName.get(name)!)!,
    groupOptions: used.map((g) => ({ weightDecay: choices.get(g)!.weightDecay })),
  });
  const named = used.map((g) => ({
    name: g,
    lrScale: choices.get(g)!.lrScale ?? 1,
    weightDecay: choices.get(g)!.weightDecay,
    count: [...byName.values()].filter((x) => x === g).length,
  }));
  return { groups, named };
}
