/**
 * Why a run stopped on its own: training went wrong in a way no retry fixes (the loss diverged, every
 * step was skipped, a step stopped making progress) or the run folder does not allow the run. The CLI
 * prints these as one or two lines and exits non-zero, never with a stack trace.
 *
 * @module
 */

/** A run stopped because training cannot usefully continue; the message says why and what to do. */
export class RunStoppedError extends Error {
  /** Always "RunStoppedError". */
  override name = "RunStoppedError";
}

/** The run folder is unusable as asked (an existing run without `--resume`/`--overwrite`, a file, …). */
export class RunFolderError extends Error {
  /** Always "RunFolderError". */
  override name = "RunFolderError";
}
