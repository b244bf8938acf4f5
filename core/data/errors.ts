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
