/**
 * The one error type of the data pipeline: a problem with one input file. It names the file and the
 * problem separately so that `index`, `preprocess` and the loader can skip the file, keep going, and list
 * every skipped file with its reason at the end.
 *
 * @module
 */

/** A file that cannot be used, with the reason. `message` is `"<path>: <problem>"`. */
export class DataFileError extends Error {
  /** The file (or folder) at fault, as the caller named it. */
  readonly path: string;
  /** What is wrong with it, in words (no path). */
  readonly problem: string;

  /** An error for `path` with `problem` (and an optional cause). */
  constructor(path: string, problem: string, options?: ErrorOptions) {
    super(`${path}: ${problem}`, options);
    this.name = "DataFileError";
    this.path = path;
    this.problem = problem;
  }
}

/** A skipped input and the reason, as listed in the summaries of `index`, `preprocess` and the loader. */
export interface SkippedFile {
  /** The file. */
  path: string;
  /** Why it was skipped. */
  reason: string;
}

/**
 * Turns any thrown value into a {@link DataFileError} for `path`: a `DataFileError` passes through; an
 * OS error (missing file, permission) or any other error becomes one whose problem is its message.
 */
export function asDataFileError(path: string, error: unknown): DataFileError {
  if (error instanceof DataFileError) return error;
  if (error instanceof Deno.errors.NotFound) {
    return new DataFileError(path, "file not found", { cause: error });
  }
  if (error instanceof Deno.errors.PermissionDenied) {
    return new DataFileError(path, "permission denied (unreadable)", { cause: error });
  }
  if (error instanceof Deno.errors.IsADirectory) {
    return new DataFileError(path, "is a directory, not a file", { cause: error });
  }
  const message = error instanceof Error ? error.message : String(error);
  return new DataFileError(path, message, { cause: error });
}

/**
 * A failure of an SSL method's own data code (its `sample` hook), as opposed to a bad input file: the run
 * stops with it, naming the plugin, instead of skipping the image. `denied` names the Deno permission when
 * the sandbox refused an access.
 */
export class SampleHookError extends Error {
  /** The plugin whose hook failed. */
  readonly plugin: string;
  /** Where: step, sample index and input. */
  readonly where: string;
  /** The Deno permission that was refused ("read", "net", …), when that was the failure. */
  readonly denied?: string;

  /** An error of `plugin`'s data hook at `where` with the hook's own `detail`. */
  constructor(plugin: string, where: string, detail: string, denied?: string) {
    super(
      denied
        ? `plugin ${plugin}: sample() was denied ${denied} access by the sandbox (${where}): ${detail}`
        : `plugin ${plugin}: sample() failed (${where}): ${detail}`,
    );
    this.name = "SampleHookError";
    this.plugin = plugin;
    this.where = where;
    this.denied = denied;
  }
}

/**
 * A sample that ran past the loader's time limit; its worker was stopped. Under heavy machine load this
 * is no bug, so the message names what timed out, the limit, and how to raise it (`raise`, in the
 * caller's words: a config field or flag).
 */
export class SampleTimeoutError extends Error {
  /** Who made the sample: "the patch loader" or "plugin <name>" (a method's sample() hook). */
  readonly who: string;
  /** Which sample: step, index and input. */
  readonly where: string;
  /** The limit it ran past, in seconds. */
  readonly limitSeconds: number;

  /** An error for the sample `where` made by `who`, past `limitSeconds`; `hook`: a plugin's hook made it. */
  constructor(who: string, where: string, limitSeconds: number, raise: string, hook: boolean) {
    super(
      `${who}: making ${where} took longer than ${limitSeconds} s, the sample time limit; its worker was ` +
        "stopped. " +
        (hook
          ? "Its sample() hook may be stuck in a loop; if the machine is only busy, "
          : "On a busy machine or slow storage, ") +
        `raise the limit: ${raise}`,
    );
    this.name = "SampleTimeoutError";
    this.who = who;
    this.where = where;
    this.limitSeconds = limitSeconds;
  }
}

/** The Deno permission named by a sandbox refusal ("Requires read access to …"), if `error` is one. */
export function deniedPermission(error: unknown): string | undefined {
  const message = error instanceof Error ? error.message : String(error);
  const match = /Requires (\w+) access/.exec(message);
  if (!match) return undefined;
  const isRefusal = error instanceof Deno.errors.NotCapable ||
    error instanceof Deno.errors.PermissionDenied ||
    /run again with the --allow-/.test(message);
  return isRefusal ? match[1] : undefined;
}
