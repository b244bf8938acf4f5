/**
 * The benchmark's SVG plots, as plain strings (no plotting library): mean Dice per dataset and entry
 * (grouped bars with confidence-interval whiskers), and mean Dice against the label fraction (one panel
 * per dataset, one line per entry). Each entry is a `<g class="series" data-series="method · arch">`
 * whose marks carry their values as data attributes, so the plots can be checked (and scraped) as XML.
 *
 * @module
 */
import type { EntryScore } from "./leaderboard.ts";

const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7"];

/** Escapes text for XML content and attribute values. */
export function xmlEscape(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")
    .replace(/'/g, "&apos;");
}

/** An entry's series name: "method · architecture". */
export function seriesName(e: { method: string; arch: string }): string {
  return `${e.method} · ${e.arch}`;
}

function seriesOrder(entries: EntryScore[]): string[] {
  // scratch first, then by name: colours stay put when methods are added
  const names = [...new Set(entries.map(seriesName))];
  return names.sort((a, b) =>
    Number(!a.startsWith("scratch ·")) - Number(!b.startsWith("scratch ·")) || a.localeCompare(b)
  );
}

const num = (x: number) => +x.toFixed(2);

function yAxis(x0: number, top: number, height: number, width: number): string[] {
  const out: string[] = [];
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    const y = num(top + height * (1 - t));
    out.push(
      `<line x1="${x0}" y1="${y}" x2="${x0 + width}" y2="${y}" stroke="#ddd"/>`,
      `<text x="${x0 - 6}" y="${y + 4}" text-anchor="end">${t.toFixed(2)}</text>`,
    );
  }
  out.push(`<line x1="${x0}" y1="${top}" x2="${x0}" y2="${top + height}" stroke="#333"/>`);
  return out;
}

function legend(names: string[], x: number, y: number): string[] {
  return names.map((n, i) =>
    `<g class="legend" transform="translate(${x},${y + i * 18})"><rect width="12" height="12" fill="${
      PALETTE[i % PALETTE.length]
    }"/><text x="18" y="10">${xmlEscape(n)}</text></g>`
  );
}

/**
 * Grouped bars: mean Dice per dataset (groups) and entry (bars, with CI whiskers) at one label fraction.
 */
export function diceBarsSvg(entries: EntryScore[], labelFraction: number, title: string): string {
  const at = entries.filter((e) => e.labelFraction === labelFraction);
  const datasets = [...new Set(at.map((e) => e.dataset))];
  const names = seriesOrder(at);
  const bar = 22;
  const groupWidth = Math.max(1, names.length) * bar + 30;
  const left = 60;
  const top = 40;
  const height = 260;
  const plotWidth = Math.max(1, datasets.length) * groupWidth;
  const width = left + plotWidth + 220;
  const total = top + height + 50;
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${total}" font-family="sans-serif" font-size="12">`,
    `<title>${xmlEscape(title)}</title>`,
    `<text x="${left}" y="20" font-size="14">${xmlEscape(title)}</text>`,
    `<text transform="translate(16,${top + height / 2}) rotate(-90)" text-anchor="middle">mean Dice</text>`,
    ...yAxis(left, top, height, plotWidth),
  ];
  const y = (d: number) => num(top + height * (1 - Math.min(1, Math.max(0, d))));
  datasets.forEach((d, g) => {
    out.push(
      `<text x="${num(left + g * groupWidth + groupWidth / 2)}" y="${
        top + height + 18
      }" text-anchor="middle">${xmlEscape(d)}</text>`,
    );
  });
  names.forEach((name, i) => {
    const colour = PALETTE[i % PALETTE.length];
    out.push(`<g class="series" data-series="${xmlEscape(name)}" fill="${colour}">`);
    datasets.forEach((d, g) => {
      const e = at.find((e) => e.dataset === d && seriesName(e) === name);
      if (!e) return;
      const x = left + g * groupWidth + 15 + i * bar;
      const cx = num(x + (bar - 4) / 2);
      out.push(
        `<rect class="bar" data-dataset="${xmlEscape(d)}" data-dice="${e.dice.mean}" x="${x}" y="${
          y(e.dice.mean)
        }" width="${bar - 4}" height="${num(top + height - y(e.dice.mean))}"><title>${xmlEscape(name)}, ${
          xmlEscape(d)
        }: ${e.dice.mean.toFixed(3)} [${e.dice.lower.toFixed(3)}, ${e.dice.upper.toFixed(3)}]</title></rect>`,
        `<line class="ci" data-lower="${e.dice.lower}" data-upper="${e.dice.upper}" x1="${cx}" y1="${
          y(e.dice.lower)
        }" x2="${cx}" y2="${y(e.dice.upper)}" stroke="#222"/>`,
      );
    });
    out.push(`</g>`);
  });
  out.push(...legend(names, left + plotWidth + 20, top), `</svg>`);
  return out.join("\n") + "\n";
}

/**
 * Lines: mean Dice against label fraction, one panel per dataset, one line (with CI whiskers) per entry.
 * The x axis places the fractions evenly, in order (they are few and often span orders of magnitude).
 */
export function diceVsFractionSvg(entries: EntryScore[], title: string): string {
  const datasets = [...new Set(entries.map((e) => e.dataset))];
  const fractions = [...new Set(entries.map((e) => e.labelFraction))].sort((a, b) => a - b);
  const names = seriesOrder(entries);
  const panelWidth = 260;
  const left = 60;
  const top = 50;
  const height = 220;
  const gap = 40;
  const width = left + Math.max(1, datasets.length) * (panelWidth + gap) + 200;
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${
      top + height + 60
    }" font-family="sans-serif" font-size="12">`,
    `<title>${xmlEscape(title)}</title>`,
    `<text x="${left}" y="20" font-size="14">${xmlEscape(title)}</text>`,
    `<text transform="translate(16,${top + height / 2}) rotate(-90)" text-anchor="middle">mean Dice</text>`,
  ];
  const y = (d: number) => num(top + height * (1 - Math.min(1, Math.max(0, d))));
  datasets.forEach((d, p) => {
    const x0 = left + p * (panelWidth + gap);
    const x = (f: number) =>
      num(
        x0 + 20 + (fractions.length === 1
          ? (panelWidth - 40) / 2
          : fractions.indexOf(f) * (panelWidth - 40) / (fractions.length - 1)),
      );
    out.push(
      `<g class="panel" data-dataset="${xmlEscape(d)}">`,
      `<text x="${x0 + panelWidth / 2}" y="${top - 8}" text-anchor="middle">${xmlEscape(d)}</text>`,
      ...yAxis(x0, top, height, panelWidth),
      ...fractions.map((f) =>
        `<text x="${x(f)}" y="${top + height + 18}" text-anchor="middle">${+(f * 100).toFixed(2)}%</text>`
      ),
      `<text x="${x0 + panelWidth / 2}" y="${top + height + 38}" text-anchor="middle">label fraction</text>`,
    );
    names.forEach((name, i) => {
      const colour = PALETTE[i % PALETTE.length];
      const points = entries.filter((e) => e.dataset === d && seriesName(e) === name)
        .sort((a, b) => a.labelFraction - b.labelFraction);
      if (points.length === 0) return;
      out.push(
        `<g class="series" data-series="${xmlEscape(name)}" stroke="${colour}" fill="${colour}">`,
        `<polyline fill="none" stroke-width="2" points="${
          points.map((e) => `${x(e.labelFraction)},${y(e.dice.mean)}`).join(" ")
        }"/>`,
      );
      for (const e of points) {
        out.push(
          `<circle class="point" data-fraction="${e.labelFraction}" data-dice="${e.dice.mean}" cx="${
            x(e.labelFraction)
          }" cy="${y(e.dice.mean)}" r="3"><title>${xmlEscape(name)}, ${+(e.labelFraction * 100).toFixed(
            2,
          )}%: ${e.dice.mean.toFixed(3)} [${e.dice.lower.toFixed(3)}, ${
            e.dice.upper.toFixed(3)
          }]</title></circle>`,
          `<line class="ci" data-lower="${e.dice.lower}" data-upper="${e.dice.upper}" x1="${
            x(e.labelFraction)
          }" y1="${y(e.dice.lower)}" x2="${x(e.labelFraction)}" y2="${y(e.dice.upper)}"/>`,
        );
      }
      out.push(`</g>`);
    });
    out.push(`</g>`);
  });
  out.push(...legend(names, left + datasets.length * (panelWidth + gap), top), `</svg>`);
  return out.join("\n") + "\n";
}
