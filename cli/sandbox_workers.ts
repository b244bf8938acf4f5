/**
 * Loader Workers started before the sandboxed process locks itself: a Worker must read its code when it
 * starts, which the locked process no longer may. The command starts as many as its loaders will use;
 * the loaders take them through their `isolation.spawn`.
 *
 * @module
 */
import type { PatchLoaderOptions } from "../core/data/mod.ts";
import { SANDBOX_ENV, sandboxPlan, startupGrants } from "./sandbox.ts";

const reserve: Worker[] = [];

/** Starts `count` loader Workers and waits until each has loaded its code. */
export async function startLoaderWorkers(count: number): Promise<void> {
  const url = new URL("./sandbox_worker.ts", import.meta.url);
  const started = Array.from({ length: count }, () => new Worker(url.href, { type: "module" }));
  try {
    await Promise.all(started.map((worker) =>
      new Promise<void>((ready, fail) => {
        worker.onmessage = (event) => {
          if ((event.data as { kind?: string })?.kind === "ready") ready();
        };
        worker.onerror = (event) => {
          event.preventDefault();
          fail(new Error(`a data loader worker failed to start: ${event.message}`));
        };
      })
    ));
  } catch (error) {
    for (const w of started) w.terminate();
    throw error;
  }
  for (const w of started) {
    w.onmessage = null;
    w.onerror = null;
  }
  reserve.push(...started);
}

/** The isolation options of the sandboxed run's loaders (undefined outside the sandbox). */
export function loaderIsolation(): PatchLoaderOptions["isolation"] {
  const plan = sandboxPlan();
  if (!plan) return undefined;
  return {
    spawn: () => {
      const worker = reserve.shift();
      if (!worker) {
        throw new Error(
          "sandbox: no data loader worker left (workers are started before a plugin loads and cannot be " +
            "replaced after; a worker that crashed or timed out stops the run)",
        );
      }
      return worker;
    },
    revoke: { read: startupGrants(plan), env: [SANDBOX_ENV] },
  };
}

/** Terminates the Workers no loader took. */
export function closeLoaderWorkers(): void {
  for (const w of reserve.splice(0)) w.terminate();
}
