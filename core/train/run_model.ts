/**
 * The modules of a run under the names checkpoints use: `network.*` (the architecture's, reference
 * names), `method.<module>.*` (the method's trainable modules) and `frozen.<module>.*` (modules the
 * method keeps but does not train, e.g. an EMA teacher). Built from the two plugins with seeded
 * initialisation.
 *
 * @module
 */
import type { Gpu } from "../gpu/mod.ts";
import { Module } from "../nn/mod.ts";
import {
  type ArchitecturePlugin,
  callPlugin,
  type MethodInstance,
  type Network,
  type NetworkNeeds,
  networkNeeds,
  type SslMethodPlugin,
} from "../plugin/mod.ts";
import { Generator, scope } from "../tensor/mod.ts";
import type { ResolvedRunConfig } from "./config.ts";

class Holder extends Module {
  add(name: string, m: Module): void {
    this.registerModule(name, m);
  }
}

/** The trained modules: `network.*` and `method.<name>.*`. */
export class RunModel extends Module {
  /** The architecture's network. */
  readonly network: Network;
  /** The method's trainable modules, as a module tree. */
  readonly method: Module;
  /** Builds the tree (names must be unique across `modules`). */
  constructor(network: Network, modules: Record<string, Module>) {
    super();
    this.network = this.registerModule("network", network);
    const holder = new Holder();
    for (const [name, m] of Object.entries(modules)) holder.add(name, m);
    this.method = this.registerModule("method", holder);
  }
}

/** Modules saved with the run but not optimised, under `frozen.<name>.*`. */
export class FrozenModules extends Module {
  /** Builds the tree. */
  constructor(modules: Record<string, Module>) {
    super();
    const holder = new Holder();
    for (const [name, m] of Object.entries(modules)) holder.add(name, m);
    this.registerModule("frozen", holder);
  }
}

/** A built run: trainable model, frozen modules and the method's instance. */
export interface BuiltRun {
  /** `network.*` and `method.*`. */
  model: RunModel;
  /** `frozen.*` (may hold nothing). */
  frozen: FrozenModules;
  /** The method bound to the network. */
  instance: MethodInstance;
}

/** Builds network and method from their plugins with a generator seeded by `config.seed`. */
export function buildRun(
  config: ResolvedRunConfig,
  arch: ArchitecturePlugin,
  method: SslMethodPlugin,
  gpu: Gpu,
): BuiltRun {
  const rng = new Generator(config.seed, gpu);
  const create = (needs: NetworkNeeds): Network => {
    const network = callPlugin(arch.name, "create", () =>
      arch.create({
        config: config.resolvedArch.config,
        inChannels: config.inChannels,
        outChannels: "outChannels" in needs ? needs.outChannels : 1,
        encoderOnly: "encoderOnly" in needs,
        patchSize: config.patch,
        rng,
      }));
    if (network.encoderOnly !== "encoderOnly" in needs) {
      throw new Error(
        `architecture ${arch.name} ignored the request for ${
          "encoderOnly" in needs ? "an encoder-only" : "a full"
        } network (method ${method.name})`,
      );
    }
    return network;
  };
  return scope(() => {
    const methodConfig = config.resolvedMethod.config;
    const needs = callPlugin(method.name, "network", () => networkNeeds(method, methodConfig));
    const network = create(needs);
    const instance = callPlugin(method.name, "build", () =>
      method.build({
        network,
        config: methodConfig,
        rng,
        patchSize: config.patch,
        createNetwork: (other = needs) => create(other),
      }));
    if (!instance || typeof instance.loss !== "function" || typeof instance.modules !== "object") {
      throw new Error(`plugin ${method.name}: build() must return { modules, loss, ... }`);
    }
    const frozenModules = instance.frozen ?? {};
    for (const name of Object.keys(frozenModules)) {
      if (name in instance.modules) {
        throw new Error(`method ${method.name} names "${name}" both a trainable and a frozen module`);
      }
    }
    const frozen = new FrozenModules(frozenModules);
    // frozen modules never get gradients
    for (const [, t] of frozen.namedParameters()) t.requiresGrad = false;
    return { model: new RunModel(network, instance.modules), frozen, instance };
  });
}
