/**
 * Inline SVG line charts for the report pages: drawn here, so the page needs no plotting script.
 *
 * @module
 */
import { escapeHtml } from "./page.ts";

/** One line of a chart. */
export interface Series {
  /** Legend label. */
  name: string;
  /** `[x, y]` points (non-finite y values are left out). */
  points: [number, number][];
  /** Dashed line with dots (e.g. validation). */
  dashed?: boolean;
}

/** Options of {@link lineChart}. */
export interface ChartOptions {
  /** Title above the plot. */
  title: string;
  /** X-axis label. */
  xLabel?: string;
  /** Log-scale y axis (only used when every value is positive). */
  logY?: boolean;
  /** Pixel size (default 460 × 260). */
  width?: number;
  /** Pixel height. */
  height?: number;
}

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

function tickLabel(v: number): string {
  if (v === 0) return "0";
  const a = Math.abs(v);
  return a >= 1e4 || a < 1e-2 ? v.toExponential(1) : Number(v.toPrecision(3)).toString();
}

/**
 * At most `max` points: consecutive points averaged in equal buckets (a long run's 50,000 log lines
 * would otherwise make megabytes of SVG per curve).
 */
export function decimate(points: [number, number][], max = 800): [number, number][] {
  if (points.length <= max) return points;
  const out: [number, number][] = [];
  const size = points.length / max;
  for (let b = 0; b < max; b++) {
    const bucket = points.slice(Math.floor(b * size), Math.floor((b + 1) * size));
    if (bucket.length === 0) continue;
    out.push([
      bucket.reduce((s, p) => s + p[0], 0) / bucket.length,
      bucket.reduce((s, p) => s + p[1], 0) / bucket.length,
    ]);
  }
  return out;
}

/** An SVG line chart (`<svg class="chart" data-chart="title">`) of `series`. */
export function lineChart(series: Series[], options: ChartOptions): string {
  const w = options.width ?? 460, h = options.height ?? 260;
  const left = 58, right = 12, top = 30, bottom = 36;
  const clean = series.map((s) => ({
    ...s,
    points: decimate(s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y))),
  }))
    .filter((s) => s.points.length > 0);
  const head =
    `<svg class="chart" data-chart="${escapeHtml(options.title)}" xmlns="http://www.w3.org/2000/svg" ` +
    `width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" font-family="system-ui, sans-serif" font-size="11">` +
    `<text x="${left}" y="18" font-size="13" font-weight="600">${escapeHtml(options.title)}</text>`;
  if (clean.length === 0) return `${head}<text x="${left}" y="${h / 2}" fill="#667085">no data</text></svg>`;
  const xs = clean.flatMap((s) => s.points.map((p) => p[0]));
  const ys = clean.flatMap((s) => s.points.map((p) => p[1]));
  const log = Boolean(options.logY) && ys.every((y) => y > 0) && Math.max(...ys) / Math.min(...ys) > 10;
  const fy = (v: number) => (log ? Math.log10(v) : v);
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  if (x0 === x1) [x0, x1] = [x0 - 1, x1 + 1];
  let [y0, y1] = [Math.min(...ys.map(fy)), Math.max(...ys.map(fy))];
  if (y0 === y1) [y0, y1] = [y0 - (Math.abs(y0) || 1) * 0.1, y1 + (Math.abs(y1) || 1) * 0.1];
  const px = (x: number) => left + ((x - x0) / (x1 - x0)) * (w - left - right);
  const py = (y: number) => top + (1 - (fy(y) - y0) / (y1 - y0)) * (h - top - bottom);
  const parts: string[] = [head];
  for (let i = 0; i <= 4; i++) {
    const t = y0 + (i / 4) * (y1 - y0);
    const yy = top + (1 - i / 4) * (h - top - bottom);
    parts.push(
      `<line x1="${left}" x2="${w - right}" y1="${yy.toFixed(1)}" y2="${yy.toFixed(1)}" stroke="#eceef2"/>` +
        `<text x="${left - 5}" y="${(yy + 4).toFixed(1)}" text-anchor="end" fill="#667085">${
          tickLabel(log ? 10 ** t : t)
        }</text>`,
    );
  }
  for (let i = 0; i <= 4; i++) {
    const t = x0 + (i / 4) * (x1 - x0);
    parts.push(
      `<text x="${px(t).toFixed(1)}" y="${h - bottom + 14}" text-anchor="middle" fill="#667085">${
        tickLabel(Math.round(t * 100) / 100)
      }</text>`,
    );
  }
  parts.push(
    `<text x="${(left + w - right) / 2}" y="${h - 6}" text-anchor="middle" fill="#667085">${
      escapeHtml(options.xLabel ?? "step")
    }</text>`,
  );
  clean.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const d = s.points.map(([x, y], k) => `${k ? "L" : "M"}${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(
      " ",
    );
    parts.push(
      `<path d="${d}" fill="none" stroke="${color}" stroke-width="1.6"${
        s.dashed ? ' stroke-dasharray="4 3"' : ""
      }/>`,
    );
    if (s.dashed || s.points.length === 1) {
      for (const [x, y] of s.points) {
        parts.push(`<circle cx="${px(x).toFixed(1)}" cy="${py(y).toFixed(1)}" r="2.5" fill="${color}"/>`);
      }
    }
    parts.push(
      `<text x="${w - right - 4}" y="${top + 12 + i * 13}" text-anchor="end" fill="${color}">${
        escapeHtml(s.name)
      }</text>`,
    );
  });
  parts.push("</svg>");
  return parts.join("");
}
