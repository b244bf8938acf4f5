/**
 * Loads third-party plugins by path or URL. The module's default export must be a manifest made with
 * `definePlugin()`; it is validated and checked against the running core before anything uses it.
 * Sandboxing (narrowed Deno permissions) is applied by the process that runs the plugin: see
 * cli/sandbox.ts. A refused access while the module loads is reported with the plugin and the permission.
 */
import { setActivity } from "./activity.ts";
import { isAbsolute, resolve } from "node:path";
import { toFileUrl } from "./file_url.ts";
import { deniedPermission } from "../data/mod.ts";
import { type Plugin, PluginError, validatePlugin } from "./manifest.ts";

/** Turns a `--plugin` argument (path or URL) into an import specifier. */
export function pluginSpecifier(spec: string, cwd: string): string {
  if (/^(https?|file|jsr|npm):/.test(spec)) return spec;
  return toFileUrl(isAbsolute(spec) ? spec : resolve(cwd, spec));
}

/** Imports and validates a plugin module. */
export async function loadPlugin(spec: string, coreVersion: string, cwd = Deno.cwd()): Promise<Plugin> {
  const specifier = pluginSpecifier(spec, cwd);
  let module: Record<string, unknown>;
  setActivity(`plugin ${spec}: loading (module top level)`);
  try {
    module = await import(specifier);
  } catch (error) {
    const denied = deniedPermission(error);
    throw new PluginError(
      denied
        ? `plugin ${spec} was denied ${denied} access by the sandbox while loading: ${
          (error as Error).message
        }`
        : `cannot import plugin ${spec}: ${(error as Error).message}`,
      { cause: error },
    );
  }
  if (!("default" in module)) {
    throw new PluginError(`plugin ${spec} has no default export (export default definePlugin({...}))`);
  }
  return validatePlugin(module.default, coreVersion, spec);
}
