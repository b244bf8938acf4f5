/**
 * A progress bar on stderr for long CLI jobs. On a terminal it redraws one line; otherwise (CI logs,
 * pipes) it prints a line at every 10% so logs stay short.
 */
const encoder = new TextEncoder();

/** A progress display: call `update` as work completes and `finish` at the end. */
export interface Progress {
  update(done: number, detail?: string): void;
  finish(): void;
}

function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  if (seconds < 60) return `${Math.round(seconds)}s`;
  return `${Math.floor(seconds / 60)}m${String(Math.round(seconds % 60)).padStart(2, "0")}s`;
}

/** Creates a progress bar for `total` items labelled `label`. */
export function createProgress(label: string, total: number): Progress {
  const tty = Deno.stderr.isTerminal();
  const start = performance.now();
  let lastDecile = -1;
  let last = 0;
  const write = (text: string) => Deno.stderr.writeSync(encoder.encode(text));
  return {
    update(done, detail = "") {
      const fraction = total > 0 ? done / total : 1;
      const elapsed = (performance.now() - start) / 1000;
      const eta = done > 0 ? (elapsed / done) * (total - done) : NaN;
      if (tty) {
        const now = performance.now();
        if (now - last < 100 && done < total) return;
        last = now;
        const width = 30;
        const filled = Math.round(fraction * width);
        const bar = "#".repeat(filled) + "-".repeat(width - filled);
        const tail = detail.length > 40 ? "…" + detail.slice(-39) : detail;
        write(
          `\r\x1b[2K${label} [${bar}] ${done}/${total} ${formatDuration(elapsed)} eta ${
            formatDuration(eta)
          } ${tail}`,
        );
        return;
      }
      const decile = Math.floor(fraction * 10);
      if (decile > lastDecile) {
        lastDecile = decile;
        write(
          `${label}: ${done}/${total} (${Math.round(fraction * 100)}%) after ${formatDuration(elapsed)}\n`,
        );
      }
    },
    finish() {
      if (tty) write("\n");
    },
  };
}
