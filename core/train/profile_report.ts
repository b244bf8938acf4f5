/**
 * The profiler's outputs (core/train/step_profile.ts): a text table for the console, an SVG chart (GPU
 * time per op family as bars, the memory timeline of the step as stacked areas by family) and the JSON
 * of the report. `writeProfile` puts `profile.json` and `profile.svg` into a run folder.
 *
 * @module
 */
import { join } from "node:path";
import { MEMORY_OWNERS, type MemoryOwner, sampleTimeline } from "../gpu/mod.ts";
import { writeFileAtomic } from "../nn/mod.ts";
import type { ProfileReport } from "./step_profile.ts";

const MiB = 2 ** 20;

const SOURCE_LABEL = {
  "timestamp-query": "GPU time from timestamp queries (one pass per run of a family's kernels)",
  "submit-wall-clock":
    "this adapter lacks timestamp-query: no GPU time per family (a step is recorded without waiting, so " +
    "queue.onSubmittedWorkDone can only be read after it); the step's GPU time is the wall clock from its " +
    "first submit to onSubmittedWorkDone",
} as const;

function bytes(n: number): string {
  return n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : `${(n / MiB).toFixed(1)} MiB`;
}

/** The report as a console table: one row per op family, then the step's totals and its memory. */
export function formatProfileTable(report: ProfileReport): string {
  const header = ["family", "kernels", "GPU ms", "share", "bytes bound", "encode ms", "MiB at peak"];
  const timed = report.source === "timestamp-query";
  const rows = report.families.map((r) => [
    r.family,
    r.kernels.toFixed(0),
    timed ? r.gpuMs.toFixed(2) : "n/a",
    timed ? `${(100 * r.gpuShare).toFixed(1)}%` : "n/a",
    bytes(r.bytesBound),
    r.encodeMs.toFixed(1),
    (r.bytesAtPeak / MiB).toFixed(1),
  ]);
  const t = report.total;
  rows.push([
    "total",
    t.kernels.toFixed(0),
    t.gpuMs.toFixed(2),
    timed ? "100%" : "",
    bytes(t.bytesBound),
    t.encodeMs.toFixed(1),
    (report.memory.peakBytes / MiB).toFixed(1),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");
  const m = report.memory;
  return [
    `profile: ${report.subject} on ${report.adapter}; per step, mean of ${report.steps} step(s)`,
    SOURCE_LABEL[report.source],
    line(header),
    ...rows.slice(0, -1).map(line),
    line(rows.at(-1)!),
    `step: wall ${t.wallMs.toFixed(1)} ms (profiled), encode ${t.encodeMs.toFixed(1)} ms on the host, ` +
    `data wait ${t.dataWaitMs.toFixed(1)} ms, GPU ${t.gpuMs.toFixed(2)} ms${timed ? "" : " (wall clock)"}`,
    `memory: peak ${bytes(m.peakBytes)} = resident ${bytes(m.atPeak.resident)} + ${
      bytes(m.peakBytes - m.atPeak.resident)
    } allocated in the step (${m.allocations} buffers handed out)`,
  ].join("\n");
}

const COLORS: Record<MemoryOwner, string> = {
  resident: "#bbbbbb",
  conv: "#1f77b4",
  norm: "#ff7f0e",
  attention: "#2ca02c",
  matmul: "#d62728",
  activation: "#9467bd",
  elementwise: "#8c564b",
  cast: "#e377c2",
  reduce: "#7f7f7f",
  layout: "#bcbd22",
  loss: "#17becf",
  optimizer: "#393b79",
  data: "#637939",
  other: "#d6616b",
};

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** The report as an SVG: GPU time per family (bars) above the step's memory timeline (stacked areas). */
export function profileSvg(report: ProfileReport): string {
  const w = 820, left = 110, right = 30, barH = 18;
  const families = report.families.filter((r) => r.kernels > 0);
  const top = 56;
  const barsBottom = top + families.length * (barH + 6);
  // without timestamp queries there is no GPU time per family: the bars show kernel counts
  const timed = report.source === "timestamp-query";
  const value = (r: (typeof families)[number]) => (timed ? r.gpuMs : r.kernels);
  const maxValue = Math.max(1e-9, ...families.map(value));
  const bx = (v: number) => (v / maxValue) * (w - left - right - 120);
  const parts: string[] = [];
  families.forEach((r, i) => {
    const y = top + i * (barH + 6);
    parts.push(
      `<text x="${left - 6}" y="${y + 13}" text-anchor="end">${esc(r.family)}</text>`,
      `<rect x="${left}" y="${y}" width="${bx(value(r)).toFixed(1)}" height="${barH}" fill="${
        COLORS[r.family]
      }"/>`,
      `<text x="${(left + bx(value(r)) + 6).toFixed(1)}" y="${y + 13}">${
        timed ? `${r.gpuMs.toFixed(2)} ms · ` : ""
      }${r.kernels.toFixed(0)} kernels</text>`,
    );
  });
  // memory timeline
  const mTop = barsBottom + 50, mH = 220, mBottom = mTop + mH;
  const samples = sampleTimeline(report.memory);
  const peak = Math.max(1, report.memory.peakBytes);
  const owners = MEMORY_OWNERS.filter((o) => samples.some((s) => s.held[o] > 0));
  const mx = (i: number) => left + (samples.length > 1 ? i / (samples.length - 1) : 0) * (w - left - right);
  const my = (b: number) => mBottom - (b / peak) * mH;
  const below = samples.map(() => 0);
  for (const owner of owners) {
    const lower = [...below];
    samples.forEach((s, i) => (below[i] += s.held[owner]));
    const upperPts = samples.map((_, i) => `${mx(i).toFixed(1)},${my(below[i]).toFixed(1)}`);
    const lowerPts = samples.map((_, i) => `${mx(i).toFixed(1)},${my(lower[i]).toFixed(1)}`).reverse();
    parts.push(
      `<polygon points="${[...upperPts, ...lowerPts].join(" ")}" fill="${COLORS[owner]}"><title>${
        esc(owner)
      }</title></polygon>`,
    );
  }
  parts.push(
    `<line x1="${left}" x2="${w - right}" y1="${my(peak)}" y2="${
      my(peak)
    }" stroke="#000" stroke-dasharray="4 3"/>`,
    `<text x="${left - 6}" y="${my(peak) + 4}" text-anchor="end">${(peak / MiB).toFixed(1)} MiB</text>`,
    `<text x="${left - 6}" y="${mBottom + 4}" text-anchor="end">0</text>`,
    `<text x="${left}" y="${mTop - 10}">memory in use during the step, by op family (peak ${
      bytes(report.memory.peakBytes)
    })</text>`,
  );
  const legendY = mBottom + 24;
  owners.forEach((o, i) => {
    const x = left + (i % 7) * 100, y = legendY + Math.floor(i / 7) * 18;
    parts.push(
      `<rect x="${x}" y="${y - 10}" width="12" height="12" fill="${COLORS[o]}"/>`,
      `<text x="${x + 16}" y="${y}">${esc(o)}</text>`,
    );
  });
  const h = legendY + Math.ceil(owners.length / 7) * 18 + 10;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="20" font-size="14">${esc(`profile: ${report.subject} · ${report.adapter}`)}</text>`,
    `<text x="10" y="38">${
      esc(
        timed
          ? "GPU time per op family per step (timestamp queries)"
          : "kernels per op family per step (no timestamp-query on this adapter: no GPU time per family)",
      )
    }</text>`,
    ...parts,
    `</svg>`,
  ].join("\n") + "\n";
}

/** Writes `profile.json` and `profile.svg` into `folder`; returns their paths. */
export async function writeProfile(
  folder: string,
  report: ProfileReport,
): Promise<{ json: string; svg: string }> {
  const json = join(folder, "profile.json");
  const svg = join(folder, "profile.svg");
  // the events themselves can be many: the JSON keeps the sampled series the chart draws
  const { events: _events, ...memory } = report.memory;
  const stored = { ...report, memory: { ...memory, timeline: sampleTimeline(report.memory) } };
  await writeFileAtomic(json, JSON.stringify(stored, null, 2) + "\n");
  await writeFileAtomic(svg, profileSvg(report));
  return { json, svg };
}
