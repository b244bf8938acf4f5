/**
 * What the training thread is doing right now ("plugin mae: loss()", "step 12: saving checkpoint"), and a
 * counter that moves whenever that changes. Both live in a SharedArrayBuffer, so a watchdog in another
 * thread (cli/watchdog.ts) can read them while this thread is stuck — in a plugin's endless loop, say —
 * and report which plugin or phase made no progress. {@link callPlugin} records every plugin call.
 *
 * Layout: Int32 0 = progress counter, Int32 1 = byte length of the text, bytes 8… = UTF-8 text.
 *
 * @module
 */

const TEXT_BYTES = 504;
const buffer = new SharedArrayBuffer(8 + TEXT_BYTES);
const header = new Int32Array(buffer, 0, 2);
const bytes = new Uint8Array(buffer, 8, TEXT_BYTES);
const encoder = new TextEncoder();
let current = "starting";

/** The shared buffer of the activity record (give it to a watchdog Worker). */
export function activityBuffer(): SharedArrayBuffer {
  return buffer;
}

/** Records that the training thread now does `what`, and counts it as progress. */
export function setActivity(what: string): void {
  current = what;
  const { written } = encoder.encodeInto(what, bytes);
  Atomics.store(header, 1, written);
  Atomics.add(header, 0, 1);
}

/** What the training thread does now (this thread's view). */
export function currentActivity(): string {
  return current;
}

/** Reads an activity record from another thread: the progress counter and the text. */
export function readActivity(shared: SharedArrayBuffer): { progress: number; what: string } {
  const h = new Int32Array(shared, 0, 2);
  const length = Math.min(Atomics.load(h, 1), TEXT_BYTES);
  const what = new TextDecoder().decode(new Uint8Array(shared, 8, length).slice());
  return { progress: Atomics.load(h, 0), what };
}
