/**
 * The watchdog's thread (see cli/watchdog.ts). It runs outside the training thread's event loop, so it
 * keeps working while that thread is stuck in a plugin's endless loop: it reads the shared activity
 * record, polls the parent process id, and counts stop signals.
 *
 * @module
 */
import { readActivity } from "../core/plugin/activity.ts";
import type { WatchdogSetup } from "./watchdog.ts";

const scope = self as unknown as {
  onmessage: ((e: MessageEvent<WatchdogSetup>) => void) | null;
  postMessage: (message: unknown) => void;
};
const post = (message: unknown) => scope.postMessage(message);

function writeStatus(path: string | undefined, status: Record<string, unknown>): void {
  if (!path) return;
  try {
    Deno.writeTextFileSync(path, JSON.stringify(status));
  } catch {
    // the launcher then sees no status: it still reports the run's exit
  }
}

/** Ends the whole process (a Worker's Deno.exit ends only the Worker). */
function killProcess(setup: WatchdogSetup): void {
  if (setup.canKill) Deno.kill(Deno.pid, "SIGKILL");
  // without the permission (the sandbox) the launcher reads the status file and ends this process
}

scope.onmessage = (event) => {
  const setup = event.data;
  let progress = readActivity(setup.activity).progress;
  let lastChange = Date.now();
  let stalled = false;
  let orphanedAt: number | undefined;
  const tick = Math.max(50, Math.min(1000, setup.stallMs / 4));
  setInterval(() => {
    const now = Date.now();
    const activity = readActivity(setup.activity);
    if (activity.progress !== progress) {
      progress = activity.progress;
      lastChange = now;
    } else if (!stalled && now - lastChange > setup.stallMs) {
      stalled = true;
      const seconds = Math.round(setup.stallMs / 1000);
      console.error(
        `voxssl: no progress for ${seconds} s while "${activity.what}"; stopping the run ` +
          `(health.stallTimeoutSeconds ${seconds}; the last checkpoint is kept)`,
      );
      writeStatus(setup.statusFile, { state: "stalled", what: activity.what });
      killProcess(setup);
    }
    if (orphanedAt === undefined && setup.ppid !== 0 && Deno.ppid !== setup.ppid) {
      orphanedAt = now;
      post({ kind: "orphaned" });
    } else if (orphanedAt !== undefined && now - orphanedAt > setup.orphanGraceMs) {
      killProcess(setup); // the training thread did not stop by itself
    }
  }, tick);
  let signals = 0;
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => {
      if (++signals < 2) return;
      // the training thread exits on a second signal by itself; if it is stuck, this ends it
      setTimeout(() => {
        console.error(`voxssl: second ${signal} and the run did not end: stopping it now`);
        writeStatus(setup.statusFile, { state: "killed", what: readActivity(setup.activity).what });
        killProcess(setup);
      }, 2000);
    });
  }
  post({ kind: "ready" });
};
