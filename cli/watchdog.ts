/**
 * The run's watchdog: a Worker (cli/watchdog_worker.ts) that watches the training thread from outside
 * its event loop.
 *
 * - **No progress**: when the activity record (core/plugin/activity.ts: every plugin call, batch and
 *   step moves it) has not moved for `stallSeconds`, it prints what was running — the plugin and hook,
 *   or the phase — and ends the process (in the sandbox, where a process may not signal itself, it writes
 *   the status file and the launcher ends it).
 * - **Parent gone**: when the parent process id changes (the launcher or `deno task` was killed), it
 *   asks the run to stop as on SIGTERM (save, exit) and ends the process if that has not happened within
 *   `orphanGraceSeconds`.
 * - **Second signal**: after a second SIGINT/SIGTERM the training thread exits by itself; if it is stuck
 *   and cannot, the watchdog ends the process 2 s later.
 *
 * In the sandbox the status file is also the completion handshake with the launcher (cli/sandbox.ts):
 * {@link markCompleted} writes `done` when the command returned, and a process that ends any other way
 * (a plugin calling `Deno.exit`) leaves the activity it was in, so the launcher reports it as a failure
 * naming the plugin.
 *
 * @module
 */
import { activityBuffer, currentActivity } from "../core/plugin/mod.ts";
import { requestStop } from "../core/train/mod.ts";
import { sandboxPlan } from "./sandbox.ts";

/** What the watchdog Worker is started with. */
export interface WatchdogSetup {
  /** The activity record (core/plugin/activity.ts). */
  activity: SharedArrayBuffer;
  /** No progress for this long stops the run. */
  stallMs: number;
  /** The parent process id at start; 0: do not watch the parent. */
  ppid: number;
  /** After the parent died, how long the run may take to stop by itself. */
  orphanGraceMs: number;
  /** Whether this process may signal itself (not in the sandbox). */
  canKill: boolean;
  /** The sandbox's status file (see cli/sandbox.ts). */
  statusFile?: string;
}

/** A running watchdog. */
export interface Watchdog {
  /** Stops watching (the run ended). */
  stop(): void;
}

/** Starts the watchdog; resolves once its Worker is running. */
export async function startWatchdog(
  options: { stallSeconds: number; orphanGraceSeconds?: number },
): Promise<Watchdog> {
  const worker = new Worker(new URL("./watchdog_worker.ts", import.meta.url).href, { type: "module" });
  const setup: WatchdogSetup = {
    activity: activityBuffer(),
    stallMs: options.stallSeconds * 1000,
    ppid: sandboxPlan() || parentIsDeno() ? Deno.ppid : 0,
    orphanGraceMs: (options.orphanGraceSeconds ?? 60) * 1000,
    canKill: Deno.permissions.querySync({ name: "run" }).state === "granted",
    statusFile: sandboxPlan()?.status,
  };
  await new Promise<void>((ready, fail) => {
    worker.onmessage = (event) => {
      if ((event.data as { kind?: string }).kind === "ready") ready();
    };
    worker.onerror = (event) => {
      event.preventDefault();
      fail(new Error(`the watchdog failed to start: ${event.message}`));
    };
    worker.postMessage(setup);
  });
  worker.onmessage = (event) => {
    if ((event.data as { kind?: string }).kind === "orphaned") {
      requestStop("the launching process died");
    }
  };
  return { stop: () => worker.terminate() };
}

/**
 * Whether the parent process is Deno (`deno task`, or the sandbox launcher): only then does its death
 * mean the user stopped the run. A run started straight from a shell under `nohup` outlives its shell
 * on purpose, so a parent that is not Deno (or that cannot be identified) is not watched.
 */
export function parentIsDeno(ppid = Deno.ppid): boolean {
  try {
    const argv0 = Deno.readTextFileSync(`/proc/${ppid}/cmdline`).split("\0")[0];
    return /(^|\/)deno$/.test(argv0) || argv0 === Deno.execPath();
  } catch {
    return false;
  }
}

let completed = false;

/** The sandboxed child's side of the completion handshake: the command returned normally. */
export function markCompleted(): void {
  completed = true;
  const file = sandboxPlan()?.status;
  if (file) Deno.writeTextFileSync(file, JSON.stringify({ state: "done" }));
}

/**
 * In the sandboxed child: when the process ends without {@link markCompleted} (a plugin called
 * `Deno.exit`), record what it was doing for the launcher's report.
 */
export function recordUnfinishedExit(): void {
  const file = sandboxPlan()?.status;
  if (!file) return;
  globalThis.addEventListener("unload", () => {
    if (completed) return;
    try {
      Deno.writeTextFileSync(file, JSON.stringify({ state: "exited", what: currentActivity() }));
    } catch {
      // nothing more can be done while exiting
    }
  });
}
