/**
 * Calls into plugin code with its name attached to whatever goes wrong: an exception becomes a
 * {@link PluginError} naming the plugin and the hook, and a sandbox refusal also names the permission.
 *
 * @module
 */
import { deniedPermission } from "../data/mod.ts";
import { currentActivity, setActivity } from "./activity.ts";
import { PluginError } from "./manifest.ts";

/** The error for a failure of `plugin`'s `hook`. */
export function pluginHookError(plugin: string, hook: string, error: unknown): PluginError {
  if (error instanceof PluginError) return error;
  const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  const denied = deniedPermission(error);
  return new PluginError(
    denied
      ? `plugin ${plugin}: ${hook}() was denied ${denied} access by the sandbox: ${message}`
      : `plugin ${plugin}: ${hook}() failed: ${message}`,
    { cause: error },
  );
}

/**
 * Runs `fn` (plugin code), naming `plugin` and `hook` in any error it throws or rejects with, and
 * recording the call as the current activity (what a watchdog reports when it never returns).
 */
export function callPlugin<T>(plugin: string, hook: string, fn: () => T): T {
  const before = currentActivity();
  setActivity(`plugin ${plugin}: ${hook}()`);
  let result: T;
  try {
    result = fn();
  } catch (error) {
    setActivity(before);
    throw pluginHookError(plugin, hook, error);
  }
  if (result instanceof Promise) {
    return result.then((value) => {
      setActivity(before);
      return value;
    }, (error) => {
      setActivity(before);
      throw pluginHookError(plugin, hook, error);
    }) as T;
  }
  setActivity(before);
  return result;
}
