/** Errors of the CLI that are the user's to fix (printed without a stack trace by cli/main.ts). */

/** A flag, config file or config value is wrong; the message names it and says what was expected. */
export class ConfigError extends Error {
  override name = "ConfigError";
}
