/**
 * The plugin registry: built-ins are added by the CLI, third-party plugins by the loader. Lookup by kind
 * and name; `--arch resenc-l` resolves to plugin "resenc" with size preset "l".
 */
import type { ArchitecturePlugin } from "./architecture.ts";
import type { SslMethodPlugin } from "./method.ts";
import { type Plugin, PluginError } from "./manifest.ts";

/** Where a plugin came from. */
export interface PluginEntry {
  plugin: Plugin;
  source: "built-in" | string;
}

/** Holds the plugins of a run. */
export class PluginRegistry {
  readonly #entries = new Map<string, PluginEntry>();

  /** Adds a plugin; a name already taken by the same kind is an error. */
  add(plugin: Plugin, source: PluginEntry["source"] = "built-in"): void {
    const key = `${plugin.kind}:${plugin.name}`;
    const existing = this.#entries.get(key);
    if (existing) {
      throw new PluginError(
        `two ${plugin.kind} plugins are named "${plugin.name}" (${existing.source} and ${source})`,
      );
    }
    this.#entries.set(key, { plugin, source });
  }

  /** Every plugin, sorted by kind then name. */
  list(): PluginEntry[] {
    return [...this.#entries.values()].sort((a, b) =>
      a.plugin.kind.localeCompare(b.plugin.kind) || a.plugin.name.localeCompare(b.plugin.name)
    );
  }

  /** An SSL method by name. */
  method(name: string): SslMethodPlugin {
    const e = this.#entries.get(`ssl-method:${name}`);
    if (!e) {
      throw new PluginError(`unknown SSL method "${name}"; known: ${this.#names("ssl-method").join(", ")}`);
    }
    return e.plugin as SslMethodPlugin;
  }

  /**
   * An architecture and size from "name" or "name-size" (e.g. "resenc-l"); the longest plugin name that
   * matches wins, so plugin names may contain dashes.
   */
  architecture(spec: string): { plugin: ArchitecturePlugin; size: string | undefined } {
    const names = this.#names("architecture").sort((a, b) => b.length - a.length);
    for (const name of names) {
      const plugin = this.#entries.get(`architecture:${name}`)!.plugin as ArchitecturePlugin;
      if (spec === name) return { plugin, size: undefined };
      if (spec.startsWith(name + "-")) {
        const size = spec.slice(name.length + 1);
        if (!plugin.sizes || !(size in plugin.sizes)) {
          throw new PluginError(
            `architecture "${name}" has no size "${size}"; sizes: ${
              Object.keys(plugin.sizes ?? {}).join(", ") || "none"
            }`,
          );
        }
        return { plugin, size };
      }
    }
    throw new PluginError(`unknown architecture "${spec}"; known: ${names.join(", ")}`);
  }

  #names(kind: Plugin["kind"]): string[] {
    return [...this.#entries.values()].filter((e) => e.plugin.kind === kind).map((e) => e.plugin.name);
  }
}
