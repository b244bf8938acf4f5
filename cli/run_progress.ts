/**
 * `pretrain --log`: the run's progress in the chosen form. On a terminal a bar (steps, steps/s, ETA,
 * last loss) stays under the Trainer's lines; in plain form the Trainer's own periodic lines (with rate
 * and ETA) are the progress; in JSON form, progress objects and every metrics record
 * (`{"event":"metrics", ...record}`) go to stderr, one per line.
 *
 * @module
 */
import type { Run, RunObserver } from "../core/train/mod.ts";
import { createProgress, type LogMode, type Progress } from "./progress.ts";

/** What `pretrain` wires into the Trainer. */
export interface RunProgress {
  /** Observer for the Trainer (steps and records). */
  observer: RunObserver;
  /** The Trainer's line printer (keeps the bar intact). */
  log: (line: string) => void;
  /** Ends the display. */
  finish(): void;
}

/** Progress of a pretraining run in `mode`; `sink` defaults to stderr. */
export function runProgress(
  mode: LogMode,
  sink?: { isTerminal(): boolean; writeSync(b: Uint8Array): number },
  label = "pretrain",
): RunProgress {
  const stream = sink ?? Deno.stderr;
  const form = mode === "json" ? "json" : mode === "plain" || !stream.isTerminal() ? "plain" : "tty";
  let progress: Progress | undefined;
  let loss = "";
  const print = (line: string) => console.log(line);
  if (form === "plain") return { observer: {}, log: print, finish() {} };
  const total = (run: Run) => run.config.epochs * run.config.stepsPerEpoch;
  return {
    observer: {
      step(run) {
        // created after the first step (which compiles the kernels): the rate counts the steps after it
        progress ??= createProgress(label, total(run), {
          mode,
          unit: "steps",
          start: run.step,
          sink: stream,
        });
        progress.update(run.step, loss);
      },
      record(record) {
        if (record.kind === "train") loss = `loss ${record.loss.toPrecision(4)}`;
        if (form === "json") {
          stream.writeSync(new TextEncoder().encode(JSON.stringify({ event: "metrics", ...record }) + "\n"));
        }
      },
    },
    log: (line) => (progress ? progress.log(line) : print(line)),
    finish: () => progress?.finish(),
  };
}
