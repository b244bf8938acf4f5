/**
 * Graceful stop: SIGINT, SIGTERM and SIGUSR1 (cluster wall-time warning) ask the run to finish its
 * current step, save a checkpoint and exit 0. A second SIGINT or SIGTERM exits at once (130 / 143): the
 * last checkpoint stays, since a step cut in the middle cannot be saved. (When the training thread is
 * stuck and cannot run this handler, the watchdog of cli/watchdog.ts ends the process instead.)
 * {@link requestStop} asks for the same graceful stop from code (e.g. when the launching process died).
 */

/** A stop request flag wired to process signals. */
export interface StopSignals {
  readonly requested: string | undefined;
  dispose(): void;
}

const listeners = new Set<(reason: string) => void>();

/** Asks every listening run to stop after its current step, saving a checkpoint, as SIGTERM does. */
export function requestStop(reason: string): void {
  for (const listener of listeners) listener(reason);
}

/** Starts listening; call `dispose()` when the run ends. */
export function listenForStop(log: (line: string) => void): StopSignals {
  let requested: string | undefined;
  const handlers: [Deno.Signal, () => void][] = [];
  const request = (reason: string) => {
    requested ??= reason;
    log(`${reason}: finishing the current step, then saving a checkpoint and stopping`);
  };
  for (const signal of ["SIGINT", "SIGTERM", "SIGUSR1"] as Deno.Signal[]) {
    const handler = () => {
      if (requested && signal !== "SIGUSR1") {
        log(`second ${signal}: exiting now; the last checkpoint is kept`);
        Deno.exit(signal === "SIGINT" ? 130 : 143);
      }
      request(signal);
    };
    try {
      Deno.addSignalListener(signal, handler);
      handlers.push([signal, handler]);
    } catch {
      // signals not available (e.g. Windows for SIGUSR1): the run simply cannot be stopped that way
    }
  }
  listeners.add(request);
  return {
    get requested() {
      return requested;
    },
    dispose() {
      listeners.delete(request);
      for (const [signal, handler] of handlers) Deno.removeSignalListener(signal, handler);
    },
  };
}
