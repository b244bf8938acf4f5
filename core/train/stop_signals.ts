/**
 * Graceful stop: SIGINT, SIGTERM and SIGUSR1 (cluster wall-time warning) ask the run to finish its
 * current step, save a checkpoint and exit 0. A second SIGINT exits at once.
 */

/** A stop request flag wired to process signals. */
export interface StopSignals {
  readonly requested: string | undefined;
  dispose(): void;
}

/** Starts listening; call `dispose()` when the run ends. */
export function listenForStop(log: (line: string) => void): StopSignals {
  let requested: string | undefined;
  const handlers: [Deno.Signal, () => void][] = [];
  for (const signal of ["SIGINT", "SIGTERM", "SIGUSR1"] as Deno.Signal[]) {
    const handler = () => {
      if (requested && signal === "SIGINT") {
        log("second SIGINT: exiting without a checkpoint");
        Deno.exit(130);
      }
      requested ??= signal;
      log(`${signal}: finishing the current step, then saving a checkpoint and stopping`);
    };
    try {
      Deno.addSignalListener(signal, handler);
      handlers.push([signal, handler]);
    } catch {
      // signals not available (e.g. Windows for SIGUSR1): the run simply cannot be stopped that way
    }
  }
  return {
    get requested() {
      return requested;
    },
    dispose() {
      for (const [signal, handler] of handlers) Deno.removeSignalListener(signal, handler);
    },
  };
}
