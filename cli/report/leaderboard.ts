/**
 * The benchmark's leaderboard as a page, in the run report's look: one self-contained offline HTML file
 * with sortable tables (entries, per-case Dice, cells), plots (mean Dice with its interval per entry,
 * Dice against label fraction), and an overlay viewer of predictions on their images and references.
 *
 * Input: {@link LeaderboardResults}, the shape of the benchmark's `results.json` (issue 12's
 * `ResultsDocument`; only the fields below are read, others are ignored), plus optional
 * {@link OverlayCase}s naming NIfTI files to show in the viewer. See docs/reports.md.
 *
 * @module
 */
import { join } from "node:path";
import { readNifti } from "../../core/data/mod.ts";
import { writeFileAtomic } from "../../core/nn/mod.ts";
import { lineChart } from "./charts.ts";
import { type ClassificationEntryJson, classificationSectionHtml } from "./classification_leaderboard.ts";
import { escapeHtml, type PageSection, renderPage, SORTABLE_SCRIPT } from "./page.ts";
import { percentileWindow, toViewerVolume, VIEWER_SCRIPT, type ViewerCase, viewerHtml } from "./viewer.ts";

/** A mean with its confidence interval. */
export interface IntervalJson {
  /** The estimate. */
  mean: number;
  /** Lower bound. */
  lower: number;
  /** Upper bound. */
  upper: number;
}

/** One leaderboard entry (method × architecture on a dataset at a label fraction). */
export interface LeaderboardEntryJson {
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
  /** Test cases in the score. */
  cases: number;
  /** Mean Dice and its interval. */
  dice: IntervalJson;
  /** 1 = best on its dataset and fraction. */
  rank: number;
  /** Mean Dice minus the scratch baseline's (absent for scratch). */
  deltaToScratch?: IntervalJson;
}

/** One finished cell (a fine-tuning + evaluation) with its per-case Dice. */
export interface LeaderboardCellJson {
  /** Stable cell key. */
  key: string;
  /** What was run. */
  cell: { method: string; arch: string; dataset: { name: string }; labelFraction: number; seed: number };
  /** Per-case scores and provenance. */
  result: {
    /** "classification" for a classification cell (its cases have no Dice; the page leaves it out). */
    task?: string;
    cases: { case: string; dice: number; perClass?: Record<string, number | null> }[];
    seconds?: number;
    provenance?: { core?: string; plugins?: Record<string, string>; adapter?: string; commit?: string };
  };
}

/** What the leaderboard page reads (a subset of the benchmark's results.json). */
export interface LeaderboardResults {
  /** Benchmark name. */
  name: string;
  /** ISO time the results were written. */
  generatedAt?: string;
  /** The voxssl that wrote them. */
  writer?: { core: string; commit?: string };
  /** The leaderboard entries. */
  leaderboard: LeaderboardEntryJson[];
  /** Finished cells. */
  cells: LeaderboardCellJson[];
  /** Keys of unfinished cells. */
  missing?: string[];
  /** Classification entries (their own section: classification_leaderboard.ts). */
  classificationLeaderboard?: ClassificationEntryJson[];
  /** Bootstrap settings (shown as given). */
  statistics?: Record<string, unknown>;
}

/** A case for the overlay viewer: an image with a prediction and its reference segmentation. */
export interface OverlayCase {
  /** Label shown in the viewer (e.g. "mslesions / case_007 / mae"). */
  name: string;
  /** The image (NIfTI). */
  image: string;
  /** The predicted label map (NIfTI, same grid). */
  prediction: string;
  /** The reference label map (NIfTI, same grid). */
  reference: string;
}

const pct = (x: number) => `${+(x * 100).toFixed(2)}%`;
const f3 = (x: number) => x.toFixed(3);
const interval = (i: IntervalJson) => `${f3(i.mean)} [${f3(i.lower)}, ${f3(i.upper)}]`;

function entriesTable(entries: LeaderboardEntryJson[]): string {
  const sorted = [...entries].sort((a, b) =>
    a.dataset.localeCompare(b.dataset) || b.labelFraction - a.labelFraction || a.rank - b.rank
  );
  const rows = sorted.map((e) =>
    `<tr><td class="num">${e.rank}</td><td>${escapeHtml(e.method)}</td><td>${escapeHtml(e.arch)}</td>` +
    `<td>${escapeHtml(e.dataset)}</td><td class="num" data-value="${e.labelFraction}">${
      pct(e.labelFraction)
    }</td>` +
    `<td class="num" data-value="${e.dice.mean}">${interval(e.dice)}</td>` +
    `<td class="num" data-value="${e.deltaToScratch?.mean ?? ""}">${
      e.deltaToScratch ? interval(e.deltaToScratch) : "–"
    }</td>` +
    `<td class="num">${e.seeds.length}</td><td class="num">${e.cases}</td></tr>`
  ).join("\n");
  return `<table class="sortable" id="entries"><thead><tr><th class="num">rank</th><th>method</th><th>architecture</th>` +
    `<th>dataset</th><th class="num">labels</th><th class="num">mean Dice [CI]</th><th class="num">Δ scratch [CI]</th>` +
    `<th class="num">seeds</th><th class="num">cases</th></tr></thead><tbody>\n${rows}\n</tbody></table>`;
}

/** Horizontal bars of mean Dice with interval whiskers, one chart per dataset at its largest fraction. */
function diceBars(entries: LeaderboardEntryJson[]): string {
  const datasets = [...new Set(entries.map((e) => e.dataset))].sort();
  return datasets.map((dataset) => {
    const mine = entries.filter((e) => e.dataset === dataset);
    const fraction = Math.max(...mine.map((e) => e.labelFraction));
    const rows = mine.filter((e) => e.labelFraction === fraction).sort((a, b) => b.dice.mean - a.dice.mean);
    const w = 460, left = 170, right = 20, bar = 18, top = 30;
    const h = top + rows.length * (bar + 6) + 24;
    const x = (v: number) => left + Math.max(0, Math.min(1, v)) * (w - left - right);
    const parts = rows.map((e, i) => {
      const y = top + i * (bar + 6);
      return `<rect x="${left}" y="${y}" width="${
        (x(e.dice.mean) - left).toFixed(1)
      }" height="${bar}" fill="${e.method === "scratch" ? "#98a2b3" : "#1f77b4"}"/>` +
        `<line x1="${x(e.dice.lower).toFixed(1)}" x2="${x(e.dice.upper).toFixed(1)}" y1="${
          y + bar / 2
        }" y2="${y + bar / 2}" stroke="#1d2330" stroke-width="1.5"/>` +
        `<text x="${left - 6}" y="${y + 13}" text-anchor="end">${
          escapeHtml(`${e.method} · ${e.arch}`)
        }</text>` +
        `<text x="${x(e.dice.upper) + 4}" y="${y + 13}" fill="#667085">${f3(e.dice.mean)}</text>`;
    });
    const ticks = [0, 0.25, 0.5, 0.75, 1].map((t) =>
      `<line x1="${x(t)}" x2="${x(t)}" y1="${top - 4}" y2="${h - 20}" stroke="#eceef2"/><text x="${
        x(t)
      }" y="${h - 6}" text-anchor="middle" fill="#667085">${t}</text>`
    );
    const title = `${dataset}: mean Dice, ${pct(fraction)} labels`;
    return `<svg class="chart" data-chart="${
      escapeHtml(title)
    }" xmlns="http://www.w3.org/2000/svg" width="${w}" ` +
      `height="${h}" viewBox="0 0 ${w} ${h}" font-family="system-ui, sans-serif" font-size="11">` +
      `<text x="10" y="18" font-size="13" font-weight="600">${escapeHtml(title)}</text>${ticks.join("")}${
        parts.join("")
      }</svg>`;
  }).join("\n");
}

function diceVsFraction(entries: LeaderboardEntryJson[]): string {
  const datasets = [...new Set(entries.map((e) => e.dataset))].sort();
  return datasets.flatMap((dataset) => {
    const mine = entries.filter((e) => e.dataset === dataset);
    if (new Set(mine.map((e) => e.labelFraction)).size < 2) return [];
    const names = [...new Set(mine.map((e) => `${e.method} · ${e.arch}`))].sort();
    const series = names.map((name) => ({
      name,
      points: mine.filter((e) => `${e.method} · ${e.arch}` === name).sort((a, b) =>
        a.labelFraction - b.labelFraction
      )
        .map((e) => [e.labelFraction, e.dice.mean] as [number, number]),
    }));
    return [
      lineChart(series, { title: `${dataset}: mean Dice by label fraction`, xLabel: "label fraction" }),
    ];
  }).join("\n");
}

/** Per dataset and fraction: a row per test case, a column per method · architecture (mean over seeds). */
function perCaseTables(cells: LeaderboardCellJson[]): string {
  const groups = new Map<string, LeaderboardCellJson[]>();
  for (const c of cells) {
    const key = `${c.cell.dataset.name}\n${c.cell.labelFraction}`;
    groups.set(key, [...(groups.get(key) ?? []), c]);
  }
  return [...groups.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([key, group]) => {
    const [dataset, fraction] = key.split("\n");
    const columns = [...new Set(group.map((c) => `${c.cell.method} · ${c.cell.arch}`))].sort();
    const cases = [...new Set(group.flatMap((c) => c.result.cases.map((s) => s.case)))].sort();
    const mean = (column: string, id: string) => {
      const values = group.filter((c) => `${c.cell.method} · ${c.cell.arch}` === column)
        .flatMap((c) => c.result.cases.filter((s) => s.case === id).map((s) => s.dice));
      return values.length ? values.reduce((a, b) => a + b, 0) / values.length : undefined;
    };
    const rows = cases.map((id) => {
      const values = columns.map((col) => mean(col, id));
      const best = Math.max(...values.filter((v): v is number => v !== undefined));
      return `<tr><td>${escapeHtml(id)}</td>${
        values.map((v) =>
          v === undefined
            ? `<td class="num" data-value="">–</td>`
            : `<td class="num" data-value="${v}"${v === best ? ' style="font-weight:600"' : ""}>${f3(v)}</td>`
        ).join("")
      }</tr>`;
    }).join("\n");
    return `<h3>${escapeHtml(dataset)}, ${pct(Number(fraction))} labels</h3>` +
      `<table class="sortable per-case" data-dataset="${escapeHtml(dataset)}"><thead><tr><th>case</th>${
        columns.map((c) => `<th class="num">${escapeHtml(c)}</th>`).join("")
      }</tr></thead><tbody>\n${rows}\n</tbody></table>`;
  }).join("\n");
}

function cellsTable(cells: LeaderboardCellJson[]): string {
  const rows = cells.map((c) => {
    const dice = c.result.cases.map((s) => s.dice);
    const mean = dice.length ? dice.reduce((a, b) => a + b, 0) / dice.length : NaN;
    const p = c.result.provenance;
    return `<tr><td>${escapeHtml(c.cell.method)}</td><td>${escapeHtml(c.cell.arch)}</td><td>${
      escapeHtml(c.cell.dataset.name)
    }</td><td class="num" data-value="${c.cell.labelFraction}">${
      pct(c.cell.labelFraction)
    }</td><td class="num">${c.cell.seed}</td>` +
      `<td class="num" data-value="${mean}">${Number.isFinite(mean) ? f3(mean) : "–"}</td><td class="num">${
        c.result.seconds === undefined ? "–" : c.result.seconds.toFixed(0)
      }</td><td>${
        escapeHtml(p ? [p.core && `core ${p.core}`, p.adapter, p.commit].filter(Boolean).join(" · ") : "")
      }</td>` +
      `<td class="muted">${escapeHtml(c.key)}</td></tr>`;
  }).join("\n");
  return `<table class="sortable" id="cells"><thead><tr><th>method</th><th>architecture</th><th>dataset</th>` +
    `<th class="num">labels</th><th class="num">seed</th><th class="num">mean Dice</th><th class="num">seconds</th>` +
    `<th>provenance</th><th>key</th></tr></thead><tbody>\n${rows}\n</tbody></table>`;
}

/** Reads the overlay cases' NIfTI files into viewer cases (image windowed to 8 bits, labels as they are). */
export async function overlayViewerCases(cases: OverlayCase[], maxEdge = 128): Promise<ViewerCase[]> {
  const out: ViewerCase[] = [];
  for (const c of cases) {
    const image = await readNifti(c.image);
    const labels: Record<string, Uint8Array> = {};
    let shape = image.shape;
    for (const [name, path] of [["prediction", c.prediction], ["reference", c.reference]] as const) {
      const v = await readNifti(path);
      if (v.shape.join() !== image.shape.join()) {
        throw new Error(
          `${path}: ${name} is ${v.shape.join("×")}, its image ${c.image} is ${image.shape.join("×")}`,
        );
      }
      // labels keep their integer values (clamped to 255) on the same grid as the image
      const small = toViewerVolume(v.data, v.shape, [0, 255], maxEdge);
      labels[name] = small.bytes;
      shape = small.shape;
    }
    const img = toViewerVolume(image.data, image.shape, percentileWindow(image.data), maxEdge);
    out.push({ name: c.name, shape, volumes: { image: img.bytes }, overlays: labels });
  }
  return out;
}

/** The leaderboard page of `results`, with an overlay viewer of `viewerCases` when given. */
export function renderLeaderboard(results: LeaderboardResults, viewerCases: ViewerCase[] = []): string {
  const cells = results.cells.filter((c) => c.result.task !== "classification");
  const classification = results.classificationLeaderboard?.length ?? 0;
  // a page of classification datasets only has no Dice plots or per-case Dice to show
  const segmentation = classification === 0 || results.leaderboard.length > 0 || cells.length > 0;
  const sections: PageSection[] = [
    {
      id: "leaderboard",
      title: "Leaderboard",
      html:
        (results.leaderboard.length
          ? entriesTable(results.leaderboard)
          : classification
          ? ""
          : `<p class="muted">No finished cells yet.</p>`) +
        (results.missing?.length
          ? `<p class="muted">${results.missing.length} cells not finished yet: the leaderboard is partial.</p>`
          : "") +
        (classification
          ? `<p class="muted">${classification} classification entries: see <a href="#classification">Classification</a>.</p>`
          : "") +
        `<p class="muted">Click a column header to sort.</p>`,
    },
  ];
  if (classification) {
    sections.push({
      id: "classification",
      title: "Classification",
      html: classificationSectionHtml(results.classificationLeaderboard!),
    });
  }
  if (segmentation) {
    sections.push({
      id: "plots",
      title: "Plots",
      html: `<div class="grid">${diceBars(results.leaderboard)}\n${
        diceVsFraction(results.leaderboard)
      }</div>`,
    }, {
      id: "per-case",
      title: "Per-case Dice",
      html: perCaseTables(cells) || `<p class="muted">No cases.</p>`,
    });
  }
  if (viewerCases.length) {
    sections.push({
      id: "viewer",
      title: "Predictions on images",
      html:
        `<p class="muted">Left: the prediction over the image; right: the reference. Pick a case; drag the sliders or click a slice.</p>` +
        viewerHtml("leaderboard-viewer", viewerCases, [
          { volume: "image", overlay: "prediction" },
          { volume: "image", overlay: "reference" },
        ]),
    });
  }
  sections.push(
    { id: "cells", title: "Cells", html: cellsTable(cells) },
    {
      id: "about",
      title: "About",
      html:
        `<table><tr><th>benchmark</th><td>${
          escapeHtml(results.name)
        }</td></tr><tr><th>results written</th><td>${
          escapeHtml(results.generatedAt ?? "?")
        }</td></tr><tr><th>by voxssl</th><td>${
          escapeHtml(
            results.writer
              ? `${results.writer.core}${results.writer.commit ? ` (${results.writer.commit})` : ""}`
              : "?",
          )
        }</td></tr></table>` +
        (results.statistics ? `<pre>${escapeHtml(JSON.stringify(results.statistics, null, 2))}</pre>` : ""),
    },
  );
  return renderPage({
    title: `voxssl benchmark: ${results.name}`,
    subtitle: `${results.leaderboard.length} entries, ${
      classification ? `${classification} classification entries, ` : ""
    }${results.cells.length} finished cells`,
    sections,
    scripts: [SORTABLE_SCRIPT, ...(viewerCases.length ? [VIEWER_SCRIPT] : [])],
  });
}

/**
 * Reads `<dir>/results.json`, writes `<dir>/leaderboard.html` (atomically) and returns its path.
 * @throws {Error} naming the file when results.json is missing or lacks `leaderboard` / `cells`.
 */
export async function writeLeaderboardPage(dir: string, overlays: OverlayCase[] = []): Promise<string> {
  const source = join(dir, "results.json");
  let results: LeaderboardResults;
  try {
    results = JSON.parse(await Deno.readTextFile(source));
  } catch (error) {
    throw new Error(`${source}: cannot read the benchmark results (${(error as Error).message})`);
  }
  if (
    !Array.isArray(results.leaderboard) || !Array.isArray(results.cells) || typeof results.name !== "string"
  ) {
    throw new Error(
      `${source}: expected { name, leaderboard: [...], cells: [...] } (the benchmark's results.json)`,
    );
  }
  const path = join(dir, "leaderboard.html");
  await writeFileAtomic(path, renderLeaderboard(results, await overlayViewerCases(overlays)));
  return path;
}
