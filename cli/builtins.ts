/**
 * The built-in plugins. Each is a workspace member under plugins/ with its own version, written against
 * mod.ts exactly like a third-party plugin; this list is the only place that names them.
 */
import { type Plugin, PluginRegistry } from "../mod.ts";

/** Built-in plugins, in listing order. */
export const BUILTIN_PLUGINS: Plugin[] = [];

/** A registry holding the built-ins. */
export function builtinRegistry(): PluginRegistry {
  const registry = new PluginRegistry();
  for (const p of BUILTIN_PLUGINS) registry.add(p);
  return registry;
}
