/**
 * `voxssl autotune`: shows the autotuner's disk cache (kernels/autotune_cache.ts) for this process's
 * adapter, or for every adapter with `--all`: per shape class the choice and its time against the
 * reasoned choice's. `--clear` removes this adapter's entry (with `--all`, the whole file).
 */
import type { Command } from "@commander-js/extra-typings";
import { createGpu, type Gpu, GpuUnavailableError } from "../../core/gpu/mod.ts";
import { ConfigError } from "../errors.ts";
import {
  type AdapterEntry,
  adapterIdentity,
  autotuneApplies,
  autotuneModeFromEnvironment,
  clearCache,
  defaultCachePath,
  readCacheFile,
  type TuneRecord,
} from "../../kernels/mod.ts";

/** Whether `pretrain` tunes on `gpu` (or, without one, what VOXSSL_AUTOTUNE asks for), in words. */
export function describeAutotuneMode(gpu?: Pick<Gpu, "adapterInfo">): string {
  let mode;
  try {
    mode = autotuneModeFromEnvironment();
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }
  if (mode === "off") return "off (VOXSSL_AUTOTUNE=0)";
  if (!gpu) return mode === "on" ? "on (VOXSSL_AUTOTUNE=1)" : "on in pretrain, except on CPU adapters";
  return autotuneApplies(mode, gpu)
    ? "on in pretrain (--no-autotune or VOXSSL_AUTOTUNE=0 turn it off)"
    : "off on this CPU adapter (VOXSSL_AUTOTUNE=1 turns it on)";
}

/** One line per tuned class: its choice, its time and the reasoned candidate's (the first timed). */
export function describeClasses(classes: Record<string, TuneRecord>): string[] {
  const lines: string[] = [];
  for (const [key, r] of Object.entries(classes).sort(([a], [b]) => a.localeCompare(b))) {
    const [reasoned, reasonedMs] = Object.entries(r.ms)[0] ?? [r.choice, null];
    const best = r.ms[r.choice];
    const speed = best && reasonedMs ? `, ×${(reasonedMs / best).toFixed(2)} faster` : "";
    const ms = (v: number | null | undefined) => (v == null ? "failed" : `${v.toFixed(3)} ms`);
    lines.push(
      r.choice === reasoned
        ? `  ${key}\n      ${r.choice} (the reasoned choice) ${ms(best)}`
        : `  ${key}\n      ${r.choice} ${ms(best)} (reasoned ${reasoned} ${ms(reasonedMs)}${speed})`,
    );
  }
  return lines;
}

function describeEntry(key: string, entry: AdapterEntry): string[] {
  const n = Object.keys(entry.classes).length;
  return [`adapter ${key}: ${n} shape class${n === 1 ? "" : "es"}`, ...describeClasses(entry.classes)];
}

/** Adds `autotune` to the program. */
export function registerAutotune(program: Command): void {
  program
    .command("autotune")
    .description("show or clear the choices made by measurement (conv/matmul tiles, attention backward)")
    .option("--all", "every adapter in the cache file (no GPU needed); with --clear, remove the whole file")
    .option("--clear", "remove this adapter's measurements (re-tuned on next use)")
    .action(async (options) => {
      const path = defaultCachePath();
      const warn = (m: string) => console.error(`warning: ${m}`);
      console.log(`cache: ${path}`);
      if (options.all) {
        console.log(`autotune: ${describeAutotuneMode()}`);
        if (options.clear) {
          console.log(`cleared: ${await clearCache(path, warn)} shape classes removed`);
          return;
        }
        const cache = await readCacheFile(path, warn);
        const entries = Object.entries(cache.adapters);
        if (entries.length === 0) console.log("no measurements yet");
        for (const [key, entry] of entries) console.log(describeEntry(key, entry).join("\n"));
        return;
      }
      let identity;
      try {
        const gpu = await createGpu();
        identity = adapterIdentity(gpu);
        console.log(`autotune: ${describeAutotuneMode(gpu)}`);
        gpu.destroy();
      } catch (error) {
        if (error instanceof GpuUnavailableError) {
          console.error(`voxssl autotune: ${error.message}\n(--all shows the cache without a GPU)`);
          Deno.exit(1);
        }
        throw error;
      }
      if (options.clear) {
        const removed = await clearCache(path, warn, identity.key);
        console.log(`cleared: ${removed} shape classes of adapter ${identity.key}`);
        return;
      }
      const entry = (await readCacheFile(path, warn)).adapters[identity.key];
      if (!entry) console.log(`adapter ${identity.key}: no measurements yet`);
      else console.log(describeEntry(identity.key, entry).join("\n"));
    });
}
