/**
 * Run records: `metrics.jsonl` (one JSON object per logged step or validation), and the loss-curve SVG
 * drawn from it.
 */
import { nameFileInError, writeFileAtomic } from "../nn/mod.ts";

/** One line of metrics.jsonl. */
export interface MetricsRecord {
  /** A training interval or a validation pass. */
  kind: "train" | "validation";
  /** Optimizer steps done. */
  step: number;
  /** The epoch (0-based). */
  epoch: number;
  /** Mean loss over the interval (or the validation batches). */
  loss: number;
  /** The method's metrics (`LossOutput.metrics`), averaged like the loss. */
  metrics?: Record<string, number>;
  /** Learning rate of the interval's last step (the schedule's base rate). */
  lr?: number;
  /** Optimizer steps per second over the interval. */
  stepsPerSecond?: number;
  /** Global gradient norm of the last step (unscaled). */
  gradNorm?: number;
  /** Dynamic loss scale (mixed precision). */
  lossScale?: number;
  /** Steps skipped so far because gradients were not finite. */
  skippedSteps?: number;
  /** Bytes of the GPU pool in use between steps (parameters, optimizer state, accumulators). */
  gpuMemoryBytes?: number;
  /** Highest pool use during the logging interval (activations included). */
  gpuPeakBytes?: number;
  /**
   * Mean seconds a step of the interval waited for its batch (0 when the loader keeps up; times
   * `stepsPerSecond` it is the fraction of the time spent waiting for data).
   */
  dataWaitSeconds?: number;
}

/** Appends records to metrics.jsonl. */
export async function appendMetrics(path: string, records: MetricsRecord[]): Promise<void> {
  const text = records.map((r) => JSON.stringify(r)).join("\n") + "\n";
  await Deno.writeTextFile(path, text, { append: true }).catch((error) => {
    throw nameFileInError(error, path);
  });
}

/**
 * Reads metrics.jsonl (missing file: none). A last line cut short by a crash or a full disk (no closing
 * newline, not JSON) is dropped; any other line that is not JSON is an error naming the line.
 */
export async function readMetrics(path: string): Promise<MetricsRecord[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
  const lines = text.split("\n");
  const cutShort = !text.endsWith("\n") ? lines.length - 1 : -1;
  const records: MetricsRecord[] = [];
  lines.forEach((l, i) => {
    if (l.trim() === "") return;
    try {
      records.push(JSON.parse(l) as MetricsRecord);
    } catch {
      if (i !== cutShort) throw new Error(`${path}: line ${i + 1} is not JSON`);
    }
  });
  return records;
}

/** Keeps only records up to `step` (used on resume, so the curve continues from the checkpoint). */
export async function truncateMetrics(path: string, step: number): Promise<void> {
  const kept = (await readMetrics(path)).filter((r) => r.step <= step);
  await writeFileAtomic(path, kept.map((r) => JSON.stringify(r)).join("\n") + (kept.length ? "\n" : ""));
}

/** An SVG line chart of training (and validation) loss against step, log scale when the range is wide. */
export function lossCurveSvg(records: MetricsRecord[], title: string): string {
  const w = 720, h = 400, left = 70, right = 20, top = 40, bottom = 50;
  const train = records.filter((r) => r.kind === "train" && Number.isFinite(r.loss));
  const val = records.filter((r) => r.kind === "validation" && Number.isFinite(r.loss));
  const all = [...train, ...val];
  if (all.length === 0) {
    return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}"><text x="20" y="40">no data yet</text></svg>`;
  }
  const maxStep = Math.max(1, ...all.map((r) => r.step));
  const losses = all.map((r) => r.loss);
  const positive = losses.every((l) => l > 0);
  const lo = Math.min(...losses), hi = Math.max(...losses);
  const log = positive && hi / lo > 20;
  const f = (v: number) => (log ? Math.log10(v) : v);
  const [y0, y1] = lo === hi ? [f(lo) - 1, f(hi) + 1] : [f(lo), f(hi)];
  const x = (s: number) => left + (s / maxStep) * (w - left - right);
  const y = (v: number) => top + (1 - (f(v) - y0) / (y1 - y0)) * (h - top - bottom);
  const path = (rs: MetricsRecord[]) =>
    rs.map((r, i) => `${i ? "L" : "M"}${x(r.step).toFixed(1)},${y(r.loss).toFixed(1)}`).join(" ");
  const ticks = Array.from({ length: 5 }, (_, i) => y0 + (i / 4) * (y1 - y0));
  const label = (t: number) => (log ? 10 ** t : t).toPrecision(3);
  const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${left}" y="24" font-size="14">${esc(title)}</text>`,
    ...ticks.map((t) => {
      const yy = top + (1 - (t - y0) / (y1 - y0)) * (h - top - bottom);
      return `<line x1="${left}" x2="${w - right}" y1="${yy}" y2="${yy}" stroke="#ddd"/><text x="${
        left - 6
      }" y="${yy + 4}" text-anchor="end">${label(t)}</text>`;
    }),
    `<text x="${(left + w - right) / 2}" y="${h - 12}" text-anchor="middle">step (of ${maxStep})</text>`,
    `<path d="${path(train)}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>`,
    val.length
      ? `<path d="${path(val)}" fill="none" stroke="#d62728" stroke-width="1.5" stroke-dasharray="4 3"/>`
      : "",
    ...val.map((r) => `<circle cx="${x(r.step)}" cy="${y(r.loss)}" r="3" fill="#d62728"/>`),
    `<text x="${w - right - 150}" y="${top + 14}" fill="#1f77b4">— training loss</text>`,
    val.length
      ? `<text x="${w - right - 150}" y="${top + 30}" fill="#d62728">- - validation loss</text>`
      : "",
    `</svg>`,
  ].join("\n");
}
