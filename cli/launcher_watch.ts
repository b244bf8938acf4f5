/**
 * The launcher's watch over its sandboxed child (cli/sandbox.ts). The child may not signal itself or
 * read anything outside its plan, so the launcher does what its watchdog cannot:
 *
 * - forwards SIGINT, SIGTERM and SIGUSR1; after a second SIGINT/SIGTERM it gives the child 3 s and then
 *   kills it, so a child stuck in a plugin always ends;
 * - polls the status file the child's watchdog writes (cli/watchdog.ts) and kills a child that reported
 *   no progress;
 * - when its own parent dies (`deno task` killed), stops the child as on SIGTERM and kills it after a
 *   grace period, then exits;
 * - at the end, applies the completion handshake: exit 0 without the child's `done` is a failure that
 *   names the plugin or phase that was running.
 *
 * @module
 */
import { parentIsDeno } from "./watchdog.ts";

/** The status the child writes (cli/watchdog.ts). */
interface ChildStatus {
  state?: "done" | "stalled" | "exited" | "killed";
  what?: string;
}

function readStatus(path: string): ChildStatus {
  try {
    const text = Deno.readTextFileSync(path);
    return text ? JSON.parse(text) as ChildStatus : {};
  } catch {
    return {};
  }
}

/** How long a child may take to stop after its launcher's parent died, before it is killed. */
const ORPHAN_GRACE_MS = 60_000;

/** Starts watching `child`; `verdict` turns its exit code into the launcher's, reporting why. */
export function watchChild(child: Deno.ChildProcess, statusFile: string): {
  verdict(code: number, plugins: string[]): number;
  dispose(): void;
} {
  const kill = (signal: Deno.Signal) => {
    try {
      child.kill(signal);
    } catch {
      // child already gone
    }
  };
  let signals = 0;
  const handlers = (["SIGINT", "SIGTERM", "SIGUSR1"] as Deno.Signal[]).map((signal) => {
    const handler = () => {
      kill(signal);
      if (signal !== "SIGUSR1" && ++signals === 2) setTimeout(() => kill("SIGKILL"), 3000);
    };
    return [signal, handler] as const;
  });
  for (const [s, h] of handlers) Deno.addSignalListener(s, h);
  const ppid = parentIsDeno() ? Deno.ppid : 0; // see parentIsDeno: a shell's nohup run outlives it
  let orphaned = false;
  const timers: ReturnType<typeof setTimeout>[] = [];
  const poll = setInterval(() => {
    if (readStatus(statusFile).state === "stalled") kill("SIGKILL");
    if (!orphaned && ppid !== 0 && Deno.ppid !== ppid) {
      orphaned = true;
      kill("SIGTERM");
      timers.push(setTimeout(() => kill("SIGKILL"), ORPHAN_GRACE_MS));
    }
  }, 500);
  return {
    verdict(code, plugins) {
      const status = readStatus(statusFile);
      if (status.state === "stalled") return code === 0 ? 1 : code; // the child's watchdog said why
      if (code !== 0 || status.state === "done") return code;
      const names = plugins.join(", ");
      console.error(
        `voxssl: the sandboxed run ended with exit 0 but did not finish (while ` +
          `"${status.what ?? "starting"}"): a plugin (${names}) called Deno.exit() or ended the process; ` +
          `treated as a failure`,
      );
      return 1;
    },
    dispose() {
      clearInterval(poll);
      for (const t of timers) clearTimeout(t);
      for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
    },
  };
}
