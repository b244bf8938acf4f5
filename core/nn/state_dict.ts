/**
 * State dicts: a module's parameters by dotted name on the host, to and from safetensors files.
 * Loading checks names and shapes and says exactly what is missing, unexpected or mismatched.
 */
import {
  decodeSafetensors,
  encodeSafetensors,
  type HostTensor,
  type SafetensorsDtype,
} from "./safetensors.ts";
import type { Module } from "./module.ts";

/** Reads every parameter and buffer to the host (f32 values, stored as `dtype` when encoded). */
export async function stateDict(
  module: Module,
  dtype: SafetensorsDtype = "F32",
): Promise<Record<string, HostTensor>> {
  const out: Record<string, HostTensor> = {};
  for (const [name, t] of [...module.namedParameters(), ...module.namedBuffers()]) {
    out[name] = { dtype, shape: [...t.shape], data: Float32Array.from(await t.toArray()) };
  }
  return out;
}

/** What {@link loadStateDict} did. */
export interface LoadReport {
  /** Module names that were written. */
  loaded: string[];
  /** Module names the file had no tensor for (left as they were; an error when `strict`). */
  missing: string[];
  /** File names that matched no parameter or buffer (skipped; an error when `strict`). */
  unexpected: string[];
}

/**
 * Writes host tensors into the module's parameters. With `strict` (default) any missing or unexpected
 * name is an error; shape mismatches are always errors. `rename` maps file names to module names
 * (e.g. to load only an encoder under another prefix); return undefined to skip an entry.
 */
export function loadStateDict(
  module: Module,
  tensors: Record<string, HostTensor>,
  { strict = true, rename = (n: string) => n as string | undefined, source = "state dict" } = {},
): LoadReport {
  const params = new Map([...module.namedParameters(), ...module.namedBuffers()]);
  const report: LoadReport = { loaded: [], missing: [], unexpected: [] };
  const seen = new Set<string>();
  for (const [fileName, t] of Object.entries(tensors)) {
    const name = rename(fileName);
    if (name === undefined) continue;
    const p = params.get(name);
    if (!p) {
      report.unexpected.push(fileName);
      continue;
    }
    if (p.shape.join() !== t.shape.join()) {
      throw new Error(
        `${source}: "${fileName}" has shape [${t.shape}], the model's "${name}" is [${p.shape}]`,
      );
    }
    p.write(t.data);
    seen.add(name);
    report.loaded.push(name);
  }
  report.missing = [...params.keys()].filter((n) => !seen.has(n));
  if (strict && (report.missing.length > 0 || report.unexpected.length > 0)) {
    const list = (xs: string[]) => xs.slice(0, 8).join(", ") + (xs.length > 8 ? `, … (${xs.length})` : "");
    throw new Error(
      `${source} does not match the model: ` +
        (report.missing.length ? `missing ${list(report.missing)}` : "") +
        (report.missing.length && report.unexpected.length ? "; " : "") +
        (report.unexpected.length ? `unexpected ${list(report.unexpected)}` : ""),
    );
  }
  return report;
}

/** Writes `path` atomically: a temporary file in the same folder, then a rename. */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const tmp = `${path}.tmp-${Deno.pid}-${Date.now()}`;
  try {
    const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
    try {
      const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
      let written = 0;
      while (written < bytes.length) written += await file.write(bytes.subarray(written));
      await file.sync();
    } finally {
      file.close();
    }
    await Deno.rename(tmp, path);
  } catch (error) {
    // a full disk or a vanished folder: leave no partial file, and say which file could not be written
    await Deno.remove(tmp).catch(() => {});
    throw nameFileInError(error, path);
  }
}

/** Prefixes an OS error's message with `path` (OS write errors such as ENOSPC do not name the file). */
export function nameFileInError(error: unknown, path: string): unknown {
  if (error instanceof Error && !error.message.includes(`'${path}'`)) {
    error.message = `${path}: cannot write: ${error.message}`;
  }
  return error;
}

/** Saves the module's parameters as safetensors (atomically). */
export async function saveSafetensors(
  module: Module,
  path: string,
  { dtype = "F32" as SafetensorsDtype, metadata = {} as Record<string, string> } = {},
): Promise<void> {
  await writeFileAtomic(path, encodeSafetensors(await stateDict(module, dtype), metadata));
}

/** Loads a safetensors file into the module (see {@link loadStateDict} for the options). */
export async function loadSafetensors(
  module: Module,
  path: string,
  options: { strict?: boolean; rename?: (name: string) => string | undefined } = {},
): Promise<LoadReport> {
  const { tensors } = decodeSafetensors(await Deno.readFile(path), path);
  return loadStateDict(module, tensors, { ...options, source: path });
}
