/**
 * Flag values shared by the fine-tuning commands (`finetune`, `classify`): sizes and numbers checked with
 * an error that names the flag.
 *
 * @module
 */
import { ConfigError } from "./errors.ts";

/** One size or three (`160`, `160,160,160`, `160x160x160`), each > 0. */
export function vec3(value: string, flag: string): [number, number, number] {
  const parts = value.split(/[,x×]/).map((s) => Number(s.trim()));
  const v = parts.length === 1 ? [parts[0], parts[0], parts[0]] : parts;
  if (v.length !== 3 || v.some((x) => !(x > 0))) {
    throw new ConfigError(`${flag}: expected one size or three (e.g. 160 or 160,160,160), got "${value}"`);
  }
  return v as [number, number, number];
}

/** A finite number passing `check` (described by `what` in the error), or undefined for an absent flag. */
export function number(
  value: string | undefined,
  flag: string,
  check: (x: number) => boolean,
  what: string,
): number | undefined {
  if (value === undefined) return undefined;
  const x = Number(value);
  if (!Number.isFinite(x) || !check(x)) throw new ConfigError(`${flag}: expected ${what}, got "${value}"`);
  return x;
}

/** Whether `path` is an existing file. */
export const isFile = (path: string): Promise<boolean> => Deno.stat(path).then((s) => s.isFile, () => false);
