/**
 * `voxssl plugins`: name, kind, version, compatibility with this core, and description of each plugin.
 * Third-party plugins (`--plugin`) are listed from inside the sandbox, like every command that loads
 * them.
 *
 * @module
 */
import type { Command } from "@commander-js/extra-typings";
import semver from "semver";
import { VERSION } from "../../mod.ts";
import { loadPlugin } from "../../core/plugin/mod.ts";
import { builtinRegistry } from "../builtins.ts";
import { isSandboxed, lockSandbox, pluginPackageRoot, pluginPath, relaunchSandboxed } from "../sandbox.ts";

/** Adds `plugins` to the program. */
export function registerPlugins(program: Command): void {
  program
    .command("plugins")
    .description("list the built-in plugins (and any given with --plugin)")
    .option("--plugin <path...>", "also load these third-party plugins (sandboxed)")
    .action(async (options) => {
      const paths = (options.plugin ?? []).map((p) => pluginPath(p, Deno.cwd()));
      if (paths.length > 0 && !isSandboxed()) {
        const plan = {
          plugins: [...new Set(paths.map((p) => pluginPackageRoot(p)))],
          data: [],
          env: [],
          startup: [],
        };
        Deno.exit(await relaunchSandboxed(plan, Deno.args));
      }
      await lockSandbox();
      const registry = builtinRegistry();
      for (const path of paths) registry.add(await loadPlugin(path, VERSION), path);
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
