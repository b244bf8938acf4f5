/**
 * The run folder before a run writes into it: a new run never replaces an earlier one unless asked
 * (`--overwrite`), a path that is a file is refused, and temporary files that a kill or a full disk left
 * behind (`*.tmp-*`, from atomic writes) are removed.
 *
 * @module
 */
import { join } from "node:path";
import { RunFolderError } from "./run_errors.ts";

/** What a run folder holds. */
export interface RunFolderState {
  /** The path exists (as anything). */
  exists: boolean;
  /** The path is a file, not a folder. */
  isFile: boolean;
  /** Files of an earlier run found there (config, checkpoints, weights); empty when none. */
  runFiles: string[];
}

/** Files written by a run; their presence makes a folder an earlier run. */
const RUN_FILES = ["config.json", "network.safetensors", "metrics.jsonl"];

/** Looks at `out` without changing it. */
export async function inspectRunFolder(out: string): Promise<RunFolderState> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(out);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
      return { exists: false, isFile: false, runFiles: [] };
    }
    throw error;
  }
  if (!info.isDirectory) return { exists: true, isFile: true, runFiles: [] };
  const runFiles: string[] = [];
  for (const name of RUN_FILES) {
    if (await isNonEmptyFile(join(out, name))) runFiles.push(name);
  }
  const checkpoints = await listNames(join(out, "checkpoints"));
  if (checkpoints.some((n) => n.endsWith(".safetensors"))) runFiles.push("checkpoints/");
  return { exists: true, isFile: false, runFiles };
}

/**
 * Refuses a run folder that a new run must not write into: a file, or an earlier run (unless
 * `overwrite`). `flag` names the setting in messages (e.g. "--out").
 */
export function checkNewRunFolder(
  out: string,
  state: RunFolderState,
  overwrite: boolean,
  flag = "--out",
): void {
  if (state.isFile) {
    throw new RunFolderError(`${flag} ${out}: is a file; the run folder must be a folder (or not exist yet)`);
  }
  if (state.runFiles.length > 0 && !overwrite) {
    throw new RunFolderError(
      `${flag} ${out}: holds an earlier run (${state.runFiles.join(", ")}); continue it with ` +
        `--resume ${out}, replace it with --overwrite, or choose another ${flag}`,
    );
  }
}

/**
 * Makes `out` ready: refuses as {@link checkNewRunFolder} does (new runs), removes an earlier run's
 * files when `overwrite`, and removes stale `*.tmp-*` files. Returns the names of the files removed.
 */
export async function prepareRunFolder(
  out: string,
  options: { resume: boolean; overwrite?: boolean; flag?: string },
): Promise<string[]> {
  const state = await inspectRunFolder(out);
  if (!options.resume) checkNewRunFolder(out, state, options.overwrite ?? false, options.flag);
  await checkWritable(out, options.flag ?? (options.resume ? "--resume" : "--out"));
  const removed: string[] = [];
  if (!options.resume && state.runFiles.length > 0) {
    for (const name of [...RUN_FILES, "loss_curve.svg", "checkpoints"]) {
      await Deno.remove(join(out, name), { recursive: true }).then(() => removed.push(name), () => {});
    }
  }
  for (const dir of [out, join(out, "checkpoints")]) {
    for (const name of await listNames(dir)) {
      if (/\.tmp-\d+-\d+$/.test(name)) {
        await Deno.remove(join(dir, name));
        removed.push(join(dir === out ? "" : "checkpoints", name));
      }
    }
  }
  return removed;
}

/** Creates the folder and writes a probe file, so an unwritable place fails now, naming the folder. */
async function checkWritable(out: string, flag: string): Promise<void> {
  const probe = join(out, `.voxssl-write-test-${Deno.pid}`);
  try {
    await Deno.mkdir(join(out, "checkpoints"), { recursive: true });
    await Deno.writeTextFile(probe, "");
    await Deno.remove(probe);
  } catch (error) {
    const code = (error as { code?: string }).code;
    throw new RunFolderError(
      `${flag} ${out}: the run folder cannot be written (${code ?? (error as Error).name}: ` +
        `${(error as Error).message.replace(/ \(os error \d+\)/, "")})`,
      { cause: error },
    );
  }
}

async function isNonEmptyFile(path: string): Promise<boolean> {
  try {
    const info = await Deno.stat(path);
    return info.isFile && info.size > 0;
  } catch {
    return false;
  }
}

async function listNames(dir: string): Promise<string[]> {
  try {
    return (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) return [];
    throw error;
  }
}
