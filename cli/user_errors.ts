/**
 * Which errors are the user's to fix, and how they are printed: one or two lines naming the file, flag
 * or field, no stack trace (unless `--debug`). Decided by `instanceof` on the real error classes (never
 * by name strings, which drift when a class is renamed), plus the operating system's errors about files
 * (missing, permission, read-only filesystem, full disk), whose message names the file.
 *
 * @module
 */
import { DataFileError, SampleHookError, SampleTimeoutError } from "../core/data/mod.ts";
import { MpiError } from "../core/dist/mod.ts";
import { FinetuneConfigError } from "../core/eval/mod.ts";
import { GpuUnavailableError } from "../core/gpu/mod.ts";
import { PthError } from "../core/nn/mod.ts";
import { PluginConfigError, PluginError } from "../core/plugin/mod.ts";
import { RunFolderError, RunStoppedError } from "../core/train/mod.ts";
import { ConfigError } from "./errors.ts";

/** Error classes whose message is complete for the user. */
const USER_ERROR_CLASSES: (abstract new (...args: never[]) => Error)[] = [
  ConfigError,
  PluginError,
  PluginConfigError,
  DataFileError,
  SampleHookError,
  SampleTimeoutError, // a sample past its time limit: names the limit and how to raise it
  GpuUnavailableError,
  RunStoppedError,
  RunFolderError,
  PthError, // a bad or foreign .pth (core/nn/pth), named with its file and key
  MpiError, // a missing MPI library or a launcher that does not match it
  FinetuneConfigError, // fine-tuning options, dataset or pretrained checkpoint (finetune, classify)
];

/** OS error codes that are about the user's files or machine, with what they mean. */
const OS_ERRORS: Record<string, string> = {
  ENOSPC: "no space left on the device",
  EDQUOT: "disk quota exceeded",
  EROFS: "read-only filesystem",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  ENOENT: "no such file or folder",
  ENOTDIR: "not a folder",
  EISDIR: "is a folder",
  EEXIST: "already exists",
};

const FS_ERROR_CLASSES = [
  Deno.errors.NotFound,
  Deno.errors.PermissionDenied,
  Deno.errors.AlreadyExists,
  Deno.errors.IsADirectory,
  Deno.errors.NotADirectory,
  Deno.errors.NotCapable,
];

/** The one- or two-line message of a user error, or undefined for an internal error (a bug). */
export function userErrorMessage(error: unknown): string | undefined {
  if (!(error instanceof Error)) return undefined;
  if (USER_ERROR_CLASSES.some((c) => error instanceof c)) return error.message;
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string" && code in OS_ERRORS) return `${error.message} (${OS_ERRORS[code]})`;
  if (FS_ERROR_CLASSES.some((c) => error instanceof c)) return error.message;
  return undefined;
}

/**
 * Prints `error` for the user and returns the exit code: a user error as `voxssl: <message>`; any other
 * error as an internal error with a hint to rerun with `--debug`; with `debug`, the stack as well.
 */
export function reportError(error: unknown, debug: boolean): number {
  const message = userErrorMessage(error);
  if (message !== undefined) {
    console.error(`voxssl: ${message}`);
  } else {
    const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    console.error(`voxssl: internal error: ${text}`);
    if (!debug) {
      console.error("(this is a bug in voxssl or a plugin; rerun with --debug for the stack trace)");
    }
  }
  if (debug && error instanceof Error && error.stack) console.error(error.stack);
  return 1;
}

/** Removes `--debug` from the arguments; returns whether it was there. */
export function takeDebugFlag(args: string[]): { debug: boolean; args: string[] } {
  const rest = args.filter((a) => a !== "--debug");
  return { debug: rest.length !== args.length, args: rest };
}
