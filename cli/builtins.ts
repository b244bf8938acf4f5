/**
 * The built-in plugins. Each is a workspace member under plugins/ with its own version, written against
 * `@voxssl/core` exactly like a third-party plugin; this list is the only place that names them. The
 * module URL travels with each, because a method's `sample` hook runs in the data loader's workers,
 * which import it.
 */
import { type Plugin, PluginRegistry } from "../core/plugin/mod.ts";
import primus from "../plugins/arch/primus/mod.ts";
import resenc from "../plugins/arch/resenc/mod.ts";
import mae from "../plugins/ssl/mae/mod.ts";
import modelsGenesis from "../plugins/ssl/models-genesis/mod.ts";
import simclr from "../plugins/ssl/simclr/mod.ts";
import voco from "../plugins/ssl/voco/mod.ts";
import simmim from "../plugins/ssl/simmim/mod.ts";
import swinunetrPretext from "../plugins/ssl/swinunetr-pretext/mod.ts";
import volumeFusion from "../plugins/ssl/volume-fusion/mod.ts";
import spark from "../plugins/ssl/spark/mod.ts";

/** A built-in plugin and the module that default-exports it. */
export interface BuiltinPlugin {
  plugin: Plugin;
  module: string;
}

/** Built-in plugins, in listing order. */
export const BUILTIN_PLUGINS: BuiltinPlugin[] = [
  { plugin: primus, module: new URL("../plugins/arch/primus/mod.ts", import.meta.url).href },
  { plugin: resenc, module: new URL("../plugins/arch/resenc/mod.ts", import.meta.url).href },
  { plugin: mae, module: new URL("../plugins/ssl/mae/mod.ts", import.meta.url).href },
  {
    plugin: modelsGenesis,
    module: new URL("../plugins/ssl/models-genesis/mod.ts", import.meta.url).href,
  },
  { plugin: simclr, module: new URL("../plugins/ssl/simclr/mod.ts", import.meta.url).href },
  { plugin: voco, module: new URL("../plugins/ssl/voco/mod.ts", import.meta.url).href },
  { plugin: simmim, module: new URL("../plugins/ssl/simmim/mod.ts", import.meta.url).href },
  {
    plugin: swinunetrPretext,
    module: new URL("../plugins/ssl/swinunetr-pretext/mod.ts", import.meta.url).href,
  },
  { plugin: volumeFusion, module: new URL("../plugins/ssl/volume-fusion/mod.ts", import.meta.url).href },
  { plugin: spark, module: new URL("../plugins/ssl/spark/mod.ts", import.meta.url).href },
];

/** A registry holding the built-ins. */
export function builtinRegistry(): PluginRegistry {
  const registry = new PluginRegistry();
  for (const { plugin } of BUILTIN_PLUGINS) registry.add(plugin);
  return registry;
}

/** The module URL of a plugin in `registry` (built-in or loaded from a path/URL). */
export function pluginModule(registry: PluginRegistry, kind: Plugin["kind"], name: string): string {
  const entry = registry.list().find((e) => e.plugin.kind === kind && e.plugin.name === name);
  if (!entry) throw new Error(`no ${kind} plugin "${name}"`);
  if (entry.source !== "built-in") return entry.source;
  return BUILTIN_PLUGINS.find((b) => b.plugin === entry.plugin)!.module;
}
