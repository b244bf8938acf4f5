/**
 * The shared look of voxssl's HTML pages (run report, leaderboard): one self-contained file, styles and
 * scripts inline, nothing fetched from the network (a `data:` favicon so that the browser asks for none).
 *
 * @module
 */

/** Escapes text for HTML content and attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** JSON for an inline `<script type="application/json">` (no `</script>` can end it early). */
export function inlineJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, "\\u003c");
}

/** One section of a page. */
export interface PageSection {
  /** Anchor id (also the `data-section` attribute tests look for). */
  id: string;
  /** Heading. */
  title: string;
  /** HTML content. */
  html: string;
}

/** What {@link renderPage} lays out. */
export interface PageInput {
  /** Page title. */
  title: string;
  /** A line under the title (plain text). */
  subtitle?: string;
  /** The sections, in order (a table of contents links them). */
  sections: PageSection[];
  /** Inline scripts (plain JavaScript), run after the content. */
  scripts?: string[];
}

const STYLE = `
:root { --fg: #1d2330; --muted: #667085; --line: #e4e7ec; --card: #fff; --bg: #f5f6f8; --accent: #1f77b4; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
header { padding: 20px 28px 12px; background: var(--card); border-bottom: 1px solid var(--line); }
header h1 { margin: 0 0 4px; font-size: 20px; }
header p { margin: 0; color: var(--muted); }
nav { padding: 8px 28px; background: var(--card); border-bottom: 1px solid var(--line); position: sticky; top: 0; z-index: 1; }
nav a { margin-right: 16px; color: var(--accent); text-decoration: none; }
main { padding: 20px 28px; max-width: 1500px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 16px 20px; margin-bottom: 20px; }
section h2 { margin: 0 0 12px; font-size: 16px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[data-dir="asc"]::after { content: " ▲"; }
table.sortable th[data-dir="desc"]::after { content: " ▼"; }
.grid { display: flex; flex-wrap: wrap; gap: 14px; }
.chart { border: 1px solid var(--line); border-radius: 6px; background: #fff; }
.muted { color: var(--muted); }
.slices { display: grid; grid-template-columns: auto repeat(4, auto); gap: 6px 10px; align-items: center; justify-content: start; }
.slices img { width: 144px; image-rendering: pixelated; border: 1px solid var(--line); background: #000; }
.slices .label { color: var(--muted); font-size: 12px; }
.viewer-row { display: flex; gap: 18px; flex-wrap: wrap; }
.viewer-col canvas { width: 144px; height: auto; vertical-align: top; image-rendering: pixelated; background: #000; border: 1px solid var(--line); margin-right: 4px; cursor: crosshair; }
.viewer-controls { margin: 10px 0; display: flex; gap: 18px; flex-wrap: wrap; align-items: center; }
pre { background: #f8f9fb; border: 1px solid var(--line); padding: 10px; overflow: auto; max-height: 420px; font-size: 12px; }
details summary { cursor: pointer; margin: 6px 0; }
`;

/** Client script: click a header of a `table.sortable` to sort by that column (numbers numerically). */
export const SORTABLE_SCRIPT = `
for (const table of document.querySelectorAll("table.sortable")) {
  const heads = [...table.tHead.rows[0].cells];
  heads.forEach((th, col) => th.addEventListener("click", () => {
    const dir = th.dataset.dir === "asc" ? "desc" : "asc";
    for (const h of heads) delete h.dataset.dir;
    th.dataset.dir = dir;
    const body = table.tBodies[0];
    const key = (row) => {
      const cell = row.cells[col];
      const v = cell.dataset.value ?? cell.textContent.trim();
      const n = Number(v);
      return v !== "" && Number.isFinite(n) ? n : v;
    };
    const rows = [...body.rows].sort((a, b) => {
      const x = key(a), y = key(b);
      const c = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
      return dir === "asc" ? c : -c;
    });
    for (const r of rows) body.appendChild(r);
  }));
}
`;

/** A complete HTML document in voxssl's report look. */
export function renderPage(input: PageInput): string {
  const nav = input.sections.map((s) => `<a href="#${s.id}">${escapeHtml(s.title)}</a>`).join("");
  const sections = input.sections.map((s) =>
    `<section id="${s.id}" data-section="${s.id}"><h2>${escapeHtml(s.title)}</h2>\n${s.html}\n</section>`
  ).join("\n");
  const scripts = (input.scripts ?? []).map((s) => `<script>\n${s}\n</script>`).join("\n");
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>${escapeHtml(input.title)}</title>
<style>${STYLE}</style>
</head>
<body>
<header><h1>${escapeHtml(input.title)}</h1>${
    input.subtitle ? `<p>${escapeHtml(input.subtitle)}</p>` : ""
  }</header>
<nav>${nav}</nav>
<main>
${sections}
</main>
${scripts}
</body>
</html>
`;
}
