/** `voxssl plugins`: name, kind, version, compatibility with this core, and description of each plugin. */
import type { Command } from "@commander-js/extra-typings";
import semver from "semver";
import { loadPlugin, VERSION } from "../../mod.ts";
import { builtinRegistry } from "../builtins.ts";

/** Adds `plugins` to the program. */
export function registerPlugins(program: Command): void {
  program
    .command("plugins")
    .description("list the built-in plugins (and any given with --plugin)")
    .option("--plugin <path-or-url...>", "also load these third-party plugins")
    .action(async (options) => {
      const registry = builtinRegistry();
      for (const spec of options.plugin ?? []) registry.add(await loadPlugin(spec, VERSION), spec);
      const rows = registry.list().map(({ plugin, source }) => [
        plugin.name,
        plugin.kind,
        plugin.version,
        semver.satisfies(VERSION, plugin.coreApi) ? `ok (${plugin.coreApi})` : `NO (${plugin.coreApi})`,
        source === "built-in" ? plugin.description : `${plugin.description} [${source}]`,
      ]);
      const header = ["name", "kind", "version", `core ${VERSION}`, "description"];
      const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
      const line = (r: string[]) => r.map((c, i) => (i < r.length - 1 ? c.padEnd(widths[i]) : c)).join("  ");
      console.log(line(header));
      for (const r of rows) console.log(line(r));
    });
}
