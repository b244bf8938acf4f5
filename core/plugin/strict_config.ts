/**
 * Plugin configs are strict: a key the plugin's schema does not know (a typo such as `blok` for
 * `block`) is an error naming the key and the plugin, not silently dropped. Works for any schema, whatever
 * the plugin wrote: zod objects strip unknown keys when parsing, so a key present in the input and
 * absent from the parsed output was not recognised. (A schema that keeps unknown keys on purpose, with
 * `.passthrough()` or `.loose()`, keeps accepting them.)
 *
 * @module
 */

/** A plugin config with a key its plugin does not know. */
export class PluginConfigError extends Error {
  /** Always "PluginConfigError". */
  override name = "PluginConfigError";
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * Throws a {@link PluginConfigError} when `input` has keys that parsing dropped from `parsed`, at any
 * depth of nested objects. `where` names the config, e.g. "methodConfig for mae".
 */
export function checkKnownKeys(input: unknown, parsed: unknown, where: string): void {
  const unknown: string[] = [];
  const walk = (a: unknown, b: unknown, path: string) => {
    if (!isRecord(a) || !isRecord(b)) return;
    for (const [key, value] of Object.entries(a)) {
      if (value === undefined) continue;
      if (!(key in b)) unknown.push(path + key);
      else walk(value, b[key], `${path}${key}.`);
    }
  };
  walk(input, parsed, "");
  if (unknown.length === 0) return;
  const known = isRecord(parsed) ? Object.keys(parsed) : [];
  throw new PluginConfigError(
    `${where}: unknown key${unknown.length > 1 ? "s" : ""} ${unknown.map((k) => `"${k}"`).join(", ")}` +
      (known.length ? ` (known: ${known.join(", ")})` : ""),
  );
}
