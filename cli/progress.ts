/**
 * Progress of long CLI jobs (index, preprocess, pretrain; finetune, predict and benchmark adopt it the
 * same way), on stderr, in one of three forms:
 *
 * - a terminal (`--log auto` on a TTY): one redrawn line, `label [#####-----] 40/100 40% 12.3 files/s
 *   3s eta 5s detail`;
 * - anything else (`--log auto` on a pipe, CI, Slurm logs, or `--log plain`): a plain line at every 10%
 *   and at least every 30 s, and one at the end;
 * - `--log json`: one JSON object per line at every 1% and at least every 5 s, and a last one with
 *   `"event": "finish"` (fields: event, task, done, total, fraction, rate, unit, elapsedSeconds,
 *   etaSeconds, detail).
 *
 * Use: `const progress = createProgress("index", total, { mode: logMode(flags.log), unit: "files" })`,
 * then `progress.update(done, detail)` as work completes, `progress.log(line)` for lines that must not
 * tear the bar, and `progress.finish()`. A command adds the flag with `command.addOption(logOption())`.
 *
 * @module
 */
import { Option } from "@commander-js/extra-typings";
import { ConfigError } from "./errors.ts";

const encoder = new TextEncoder();

/** `--log` values: `auto` (a bar on a terminal, plain lines otherwise), `plain`, `json`. */
export type LogMode = "auto" | "plain" | "json";

/** The form a progress display took. */
export type ProgressForm = "tty" | "plain" | "json";

/** Where progress goes (stderr by default; tests pass their own). */
export interface ProgressSink {
  /** Whether it is a terminal (only asked in `auto` mode). */
  isTerminal(): boolean;
  /** Writes bytes. */
  writeSync(bytes: Uint8Array): number;
}

/** Options of {@link createProgress}. */
export interface ProgressOptions {
  /** Output form (default `auto`). */
  mode?: LogMode;
  /** What is counted, for the rate (default "items"). */
  unit?: string;
  /** Work already done before this display started (a resumed run): not counted in the rate. */
  start?: number;
  /** Plain form: the longest silence between lines, in seconds (default 30). */
  plainEverySeconds?: number;
  /** Default `Deno.stderr`. */
  sink?: ProgressSink;
  /** Milliseconds clock (default `performance.now`). */
  clock?: () => number;
  /** Where `log()` lines go in the plain and JSON forms (default `console.log`). */
  print?: (line: string) => void;
}

/** A progress display: `update` as work completes, `log` for other lines, `finish` at the end. */
export interface Progress {
  /** The form chosen. */
  readonly form: ProgressForm;
  /** `done` of `total` finished; `detail` names the current item. */
  update(done: number, detail?: string): void;
  /** Prints a line without tearing the bar (terminal: clears it, prints, redraws). */
  log(line: string): void;
  /** Ends the display (a last line in the plain and JSON forms); later calls do nothing. */
  finish(detail?: string): void;
}

/** Formats seconds as `42s`, `3m07s` or `2h05m` (`?` when unknown). */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}h${String(m).padStart(2, "0")}m` : `${m}m${String(s % 60).padStart(2, "0")}s`;
}

function formatRate(rate: number): string {
  if (!Number.isFinite(rate)) return "?";
  return rate >= 100 ? rate.toFixed(0) : rate >= 1 ? rate.toFixed(1) : rate.toPrecision(2);
}

/** Parses a `--log` value. @throws {ConfigError} naming the flag and the choices. */
export function logMode(value: string | undefined): LogMode {
  if (value === undefined) return "auto";
  if (value === "auto" || value === "plain" || value === "json") return value;
  throw new ConfigError(`--log: expected auto, plain or json, got "${value}"`);
}

/** The `--log <mode>` option for a command (default auto). */
export function logOption(): Option<"--log <mode>", undefined, "auto", "auto" | "plain" | "json"> {
  return new Option(
    "--log <mode>",
    "progress on stderr: auto (a bar on a terminal, plain lines otherwise), plain, json",
  )
    .choices(["auto", "plain", "json"] as const)
    .default("auto" as const);
}

/** Creates a progress display for `total` items labelled `label`. */
export function createProgress(label: string, total: number, options: ProgressOptions = {}): Progress {
  const sink = options.sink ?? Deno.stderr;
  const clock = options.clock ?? (() => performance.now());
  const mode = options.mode ?? "auto";
  const form: ProgressForm = mode === "json"
    ? "json"
    : mode === "plain" || !sink.isTerminal()
    ? "plain"
    : "tty";
  const unit = options.unit ?? "items";
  const startDone = options.start ?? 0;
  const plainEvery = (options.plainEverySeconds ?? 30) * 1000;
  const print = options.print ?? ((line: string) => console.log(line));
  const t0 = clock();
  const write = (text: string) => sink.writeSync(encoder.encode(text));
  let done = startDone;
  let detail = "";
  let lastStep = -1; // the last decile (plain) or percent (json) written
  let lastAt = -Infinity; // when the last line was written
  let drawn = false;
  let finished = false;
  let printedDone = -1; // plain form: the count of the last line, so finish() does not repeat it

  const figures = () => {
    const elapsed = (clock() - t0) / 1000;
    const counted = done - startDone;
    const rate = elapsed > 0 && counted > 0 ? counted / elapsed : NaN;
    const eta = Number.isFinite(rate) ? Math.max(0, total - done) / rate : NaN;
    const fraction = total > 0 ? Math.min(1, done / total) : 1;
    return { elapsed, rate, eta, fraction };
  };
  const jsonLine = (event: string) => {
    const f = figures();
    const finite = (x: number) => (Number.isFinite(x) ? +x.toFixed(4) : null);
    write(
      JSON.stringify({
        event,
        task: label,
        done,
        total,
        fraction: +f.fraction.toFixed(4),
        rate: finite(f.rate),
        unit,
        elapsedSeconds: +f.elapsed.toFixed(3),
        etaSeconds: finite(f.eta),
        detail,
      }) + "\n",
    );
  };
  const plainLine = (last = false) => {
    printedDone = done;
    const f = figures();
    write(
      `${label}: ${done}/${total} (${Math.round(f.fraction * 100)}%) ${formatRate(f.rate)} ${unit}/s, ` +
        `${formatDuration(f.elapsed)} elapsed${last ? "" : `, ETA ${formatDuration(f.eta)}`}${
          detail ? `  ${detail}` : ""
        }\n`,
    );
  };
  const drawBar = () => {
    const f = figures();
    const width = 24;
    const filled = Math.round(f.fraction * width);
    const head = `${label} [${"#".repeat(filled)}${"-".repeat(width - filled)}] ${done}/${total} ${
      Math.round(f.fraction * 100)
    }% ${formatRate(f.rate)} ${unit}/s ${formatDuration(f.elapsed)} eta ${formatDuration(f.eta)}`;
    let columns = 100;
    try {
      columns = Deno.consoleSize().columns;
    } catch { /* not a console: keep 100 */ }
    const room = Math.max(0, columns - head.length - 2);
    const tail = detail.length > room ? (room > 1 ? "…" + detail.slice(-(room - 1)) : "") : detail;
    write(`\r\x1b[2K${head}${tail ? " " + tail : ""}`);
    drawn = true;
  };

  return {
    form,
    update(value, text = "") {
      done = value;
      detail = text;
      const now = clock();
      if (form === "tty") {
        if (now - lastAt < 100 && done < total) return;
        lastAt = now;
        drawBar();
        return;
      }
      const f = figures();
      const step = Math.floor(f.fraction * (form === "json" ? 100 : 10));
      const every = form === "json" ? 5000 : plainEvery;
      if (step > lastStep || now - lastAt >= every) {
        lastStep = step;
        lastAt = now;
        if (form === "json") jsonLine("progress");
        else plainLine();
      }
    },
    log(line) {
      if (form === "tty" && drawn && !finished) {
        write("\r\x1b[2K");
        print(line);
        drawBar();
      } else print(line);
    },
    finish(text) {
      if (finished) return;
      finished = true;
      if (text !== undefined) detail = text;
      if (form === "tty") {
        drawBar();
        write("\n");
      } else if (form === "json") jsonLine("finish");
      else if (printedDone !== done) plainLine(true);
    },
  };
}
