/**
 * Fields every plugin manifest has: identity, version and the core versions it works with.
 *
 * @module
 */
import type { ZodSchema } from "./zod_types.ts";

/** Fields every plugin manifest has. */
export interface PluginBase<C> {
  /** Lower-case name (letters, digits, dashes), unique per kind; used on the command line. */
  name: string;
  /** The plugin's own semver, recorded in checkpoints and leaderboards (docs/plugins.md: versioning). */
  version: string;
  /** Range of core API versions the plugin works with (a semver range, e.g. "^0.2.0"). */
  coreApi: string;
  /** One line for `voxssl plugins`. */
  description: string;
  /** zod schema of the plugin's config, with defaults; the parsed config is what the hooks receive. */
  config: ZodSchema<C>;
}
