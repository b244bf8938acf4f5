/**
 * The classification part of the benchmark's leaderboard page: per dataset and label fraction, a sortable
 * table of the entries (rank, method, architecture, balanced accuracy, Δ to scratch, accuracy, AUROC,
 * Δ AUROC, each with its interval) and a per-seed plot (each seed's balanced accuracy as a dot over the
 * entry's interval and mean), from `results.json`'s `classificationLeaderboard`
 * (core/eval/benchmark/classification_leaderboard.ts's entries). See docs/reports.md.
 *
 * @module
 */
import { escapeHtml } from "./page.ts";

/** A mean with its confidence interval. */
interface Interval {
  mean: number;
  lower: number;
  upper: number;
}

/** One seed's scores of a classification entry. */
export interface ClassificationSeedJson {
  /** Fine-tuning seed. */
  seed: number;
  /** That seed's balanced accuracy. */
  balancedAccuracy: number;
  /** That seed's accuracy. */
  accuracy?: number;
  /** That seed's AUROC (null where undefined). */
  auroc?: number | null;
}

/** One classification leaderboard entry (method × architecture on a dataset at a label fraction). */
export interface ClassificationEntryJson {
  /** Method name ("scratch" for the baseline). */
  method: string;
  /** Architecture. */
  arch: string;
  /** Dataset name. */
  dataset: string;
  /** Fraction of the training labels used (0–1]. */
  labelFraction: number;
  /** Seeds with a finished cell. */
  seeds: number[];
  /** Test cases in the scores. */
  cases: number;
  /** 1 = best balanced accuracy on its dataset and fraction. */
  rank: number;
  /** Balanced accuracy and its interval (the ranking metric). */
  balancedAccuracy: Interval;
  /** Accuracy and its interval. */
  accuracy: Interval;
  /** AUROC and its interval; a bare number from results written before AUROC had one; null if undefined. */
  auroc: Interval | number | null;
  /** Balanced accuracy minus scratch's (absent for scratch). */
  deltaToScratch?: Interval;
  /** AUROC minus scratch's (absent for scratch). */
  aurocDeltaToScratch?: Interval;
  /** Each seed's scores (absent in results written before they were recorded: no plot then). */
  perSeed?: ClassificationSeedJson[];
}

const pct = (x: number) => `${+(x * 100).toFixed(2)}%`;
const f3 = (x: number) => x.toFixed(3);
const signed = (x: number) => (x >= 0 ? "+" : "−") + Math.abs(x).toFixed(3);
const interval = (i: Interval, f = f3) => `${f(i.mean)} [${f(i.lower)}, ${f(i.upper)}]`;

function intervalCell(i: Interval | undefined, f = f3): string {
  return i
    ? `<td class="num" data-value="${i.mean}">${interval(i, f)}</td>`
    : `<td class="num" data-value="">–</td>`;
}

function aurocCell(a: Interval | number | null): string {
  if (a === null) return `<td class="num" data-value="">–</td>`;
  return typeof a === "number" ? `<td class="num" data-value="${a}">${f3(a)}</td>` : intervalCell(a);
}

function entriesTable(entries: ClassificationEntryJson[], dataset: string, fraction: number): string {
  const rows = entries.map((e) =>
    `<tr><td class="num">${e.rank}</td><td>${escapeHtml(e.method)}</td><td>${escapeHtml(e.arch)}</td>` +
    intervalCell(e.balancedAccuracy) + intervalCell(e.deltaToScratch, signed) + intervalCell(e.accuracy) +
    aurocCell(e.auroc) + intervalCell(e.aurocDeltaToScratch, signed) +
    `<td class="num">${e.seeds.length}</td><td class="num">${e.cases}</td></tr>`
  ).join("\n");
  return `<table class="sortable classification" data-dataset="${
    escapeHtml(dataset)
  }" data-fraction="${fraction}">` +
    `<thead><tr><th class="num">rank</th><th>method</th><th>architecture</th>` +
    `<th class="num">balanced accuracy [CI]</th><th class="num">Δ scratch [CI]</th>` +
    `<th class="num">accuracy [CI]</th><th class="num">AUROC [CI]</th><th class="num">Δ AUROC [CI]</th>` +
    `<th class="num">seeds</th><th class="num">cases</th></tr></thead><tbody>\n${rows}\n</tbody></table>`;
}

/** Per entry: balanced accuracy's interval (line), mean (tick) and each seed (dot, its value in data-). */
function perSeedPlot(entries: ClassificationEntryJson[], title: string): string {
  const rows = entries.filter((e) => e.perSeed?.length);
  if (rows.length === 0) return "";
  const w = 460, left = 170, right = 20, row = 24, top = 30;
  const h = top + rows.length * row + 24;
  const x = (v: number) => (left + Math.max(0, Math.min(1, v)) * (w - left - right)).toFixed(1);
  const parts = rows.map((e, i) => {
    const y = top + i * row + row / 2;
    const b = e.balancedAccuracy;
    const colour = e.method === "scratch" ? "#98a2b3" : "#1f77b4";
    return `<g class="series" data-series="${escapeHtml(`${e.method} · ${e.arch}`)}">` +
      `<text x="${left - 6}" y="${y + 4}" text-anchor="end">${escapeHtml(`${e.method} · ${e.arch}`)}</text>` +
      `<line class="ci" data-lower="${b.lower}" data-upper="${b.upper}" x1="${x(b.lower)}" x2="${
        x(b.upper)
      }" y1="${y}" y2="${y}" stroke="#1d2330" stroke-width="1.5"/>` +
      `<line class="mean" data-value="${b.mean}" x1="${x(b.mean)}" x2="${x(b.mean)}" y1="${y - 7}" y2="${
        y + 7
      }" stroke="#1d2330" stroke-width="2"/>` +
      e.perSeed!.map((s) =>
        `<circle class="seed" data-seed="${s.seed}" data-value="${s.balancedAccuracy}" cx="${
          x(s.balancedAccuracy)
        }" cy="${y}" r="4" fill="${colour}" fill-opacity="0.75"><title>seed ${s.seed}: ${
          f3(s.balancedAccuracy)
        }</title></circle>`
      ).join("") + `</g>`;
  });
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((t) =>
    `<line x1="${x(t)}" x2="${x(t)}" y1="${top - 4}" y2="${h - 20}" stroke="#eceef2"/><text x="${x(t)}" y="${
      h - 6
    }" text-anchor="middle" fill="#667085">${t}</text>`
  );
  return `<svg class="chart" data-chart="${
    escapeHtml(title)
  }" xmlns="http://www.w3.org/2000/svg" width="${w}" ` +
    `height="${h}" viewBox="0 0 ${w} ${h}" font-family="system-ui, sans-serif" font-size="11">` +
    `<text x="10" y="18" font-size="13" font-weight="600">${escapeHtml(title)}</text>${ticks.join("")}${
      parts.join("")
    }</svg>`;
}

/**
 * The classification section's HTML: per dataset (by name) and label fraction (largest first), a heading,
 * the entries' table (by rank) and the per-seed plot of balanced accuracy.
 */
export function classificationSectionHtml(entries: ClassificationEntryJson[]): string {
  const groups = new Map<string, ClassificationEntryJson[]>();
  const sorted = [...entries].sort((a, b) =>
    a.dataset.localeCompare(b.dataset) || b.labelFraction - a.labelFraction || a.rank - b.rank ||
    a.method.localeCompare(b.method) || a.arch.localeCompare(b.arch)
  );
  for (const e of sorted) {
    const key = `${e.dataset}\n${e.labelFraction}`;
    groups.set(key, [...(groups.get(key) ?? []), e]);
  }
  return [...groups.values()].map((group) => {
    const { dataset, labelFraction } = group[0];
    const heading = `${dataset}, ${pct(labelFraction)} labels`;
    const plot = perSeedPlot(group, `${dataset}: balanced accuracy per seed, ${pct(labelFraction)} labels`);
    return `<h3>${escapeHtml(heading)}</h3>` + entriesTable(group, dataset, labelFraction) +
      (plot ? `<div class="grid" style="margin-top:12px">${plot}</div>` : "");
  }).join("\n") +
    `\n<p class="muted">Ranked by balanced accuracy. Intervals: crossed bootstrap over seeds and test cases ` +
    `(AUROC's stratified by class); Δ paired to scratch on the same architecture. Dots: one per seed; ` +
    `tick: the mean; line: its interval. See leaderboard.md.</p>`;
}
