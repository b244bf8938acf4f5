/**
 * The run report: `<run>/report.html`, one self-contained page (styles, scripts, images and volumes
 * inline) drawn from the run folder alone, so `voxssl report <run>` works after the run, offline and
 * without a GPU:
 *
 *   config.json                          resolved config and plugin versions (the Trainer writes it)
 *   metrics.jsonl                        the curves
 *   report/run_info.json                 core version, adapter, features and limits
 *   report/reconstructions/step-N.json   PNG slices of the fixed validation volume at each checkpoint
 *   report/viewer.json                   the latest reconstruction as 8-bit volumes, for the 3D viewer
 *
 * The last three are written during the run by {@link saveReconstruction} and {@link saveRunInfo}.
 *
 * @module
 */
import { join } from "node:path";
import { writeFileAtomic } from "../../core/nn/mod.ts";
import type { Gpu } from "../../core/gpu/mod.ts";
import { type MetricsRecord, readMetrics, type ReconstructionVolumes } from "../../core/train/mod.ts";
import { lineChart, type Series } from "./charts.ts";
import { escapeHtml, type PageSection, renderPage } from "./page.ts";
import { base64, encodePng } from "./png.ts";
import { percentileWindow, toViewerVolume, VIEWER_SCRIPT, viewerHtml } from "./viewer.ts";

const PANELS = ["input", "corrupted", "prediction", "target"] as const;
const AXES = ["axial", "coronal", "sagittal"] as const;

/** `report/run_info.json`: what ran the run. */
export interface RunInfo {
  /** voxssl core version. */
  coreVersion: string;
  /** Adapter description (vendor, architecture, device, description). */
  adapter: Record<string, string>;
  /** Optional features in use. */
  features: string[];
  /** The device's granted limits voxssl reads. */
  limits: Record<string, number>;
  /** When it was written (ISO time). */
  writtenAt: string;
}

/** One checkpoint's slices: base64 PNGs per panel and axis. */
export interface ReconstructionSlices {
  /** Optimizer steps done. */
  step: number;
  /** Volume shape `[D, H, W]`. */
  shape: [number, number, number];
  /** Intensity window shared by the four panels (1st–99th percentile of the input). */
  window: [number, number];
  /** `pngs[panel][axis]`: base64 PNG of the middle slice. */
  pngs: Record<string, Record<string, string>>;
}

/** Everything the page shows (see {@link renderRunReport}). */
export interface RunReportData {
  /** The run folder. */
  out: string;
  /** config.json (resolved config, plugins, parameter groups), or null when missing. */
  config: Record<string, unknown> | null;
  /** metrics.jsonl. */
  metrics: MetricsRecord[];
  /** report/run_info.json, or null. */
  info: RunInfo | null;
  /** Slices per checkpoint, oldest first. */
  reconstructions: ReconstructionSlices[];
  /** The latest reconstruction as viewer volumes, or null. */
  viewer: { step: number; shape: [number, number, number]; volumes: Record<string, string> } | null;
}

const reportDir = (out: string) => join(out, "report");

/** Writes `report/run_info.json` from the device. */
export async function saveRunInfo(out: string, gpu: Gpu, coreVersion: string): Promise<void> {
  const a = gpu.adapterInfo;
  const info: RunInfo = {
    coreVersion,
    adapter: { vendor: a.vendor, architecture: a.architecture, device: a.device, description: a.description },
    features: [...gpu.features].sort(),
    limits: { ...gpu.limits } as unknown as Record<string, number>,
    writtenAt: new Date().toISOString(),
  };
  await Deno.mkdir(reportDir(out), { recursive: true });
  await writeFileAtomic(join(reportDir(out), "run_info.json"), JSON.stringify(info, null, 2) + "\n");
}

/** The middle slice of `volume` along `axis` (0 axial: H×W; 1 coronal, 2 sagittal: D rows, top = last). */
export function middleSlice(
  volume: Uint8Array,
  shape: [number, number, number],
  axis: 0 | 1 | 2,
): { width: number; height: number; pixels: Uint8Array } {
  const [D, H, W] = shape;
  const [width, height] = axis === 0 ? [W, H] : axis === 1 ? [W, D] : [H, D];
  const pixels = new Uint8Array(width * height);
  const mid = [D >> 1, H >> 1, W >> 1];
  for (let v = 0; v < height; v++) {
    for (let u = 0; u < width; u++) {
      const i = axis === 0
        ? (mid[0] * H + v) * W + u
        : axis === 1
        ? ((D - 1 - v) * H + mid[1]) * W + u
        : ((D - 1 - v) * H + u) * W + mid[2];
      pixels[v * width + u] = volume[i];
    }
  }
  return { width, height, pixels };
}

/**
 * Saves a checkpoint's reconstruction: PNG slices in `report/reconstructions/step-N.json` and the
 * volumes (8-bit, at most 96 voxels an edge) in `report/viewer.json`.
 */
export async function saveReconstruction(out: string, rec: ReconstructionVolumes): Promise<void> {
  const window = percentileWindow(rec.volumes.input);
  const full = Object.fromEntries(
    PANELS.map((p) => [p, toViewerVolume(rec.volumes[p], rec.shape, window, Infinity).bytes]),
  );
  const pngs: Record<string, Record<string, string>> = {};
  for (const p of PANELS) {
    pngs[p] = {};
    for (const [axis, name] of AXES.entries()) {
      const s = middleSlice(full[p], rec.shape, axis as 0 | 1 | 2);
      pngs[p][name] = base64(await encodePng(s.pixels, s.width, s.height));
    }
  }
  const slices: ReconstructionSlices = { step: rec.step, shape: rec.shape, window, pngs };
  const dir = join(reportDir(out), "reconstructions");
  await Deno.mkdir(dir, { recursive: true });
  await writeFileAtomic(join(dir, `step-${rec.step}.json`), JSON.stringify(slices) + "\n");
  const small = PANELS.map((p) => toViewerVolume(rec.volumes[p], rec.shape, window));
  const viewer = {
    step: rec.step,
    shape: small[0].shape,
    volumes: Object.fromEntries(PANELS.map((p, i) => [p, base64(small[i].bytes)])),
  };
  await writeFileAtomic(join(reportDir(out), "viewer.json"), JSON.stringify(viewer) + "\n");
}

async function readJson<T>(path: string): Promise<T | null> {
  try {
    return JSON.parse(await Deno.readTextFile(path)) as T;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw new Error(`${path}: ${(error as Error).message}`);
  }
}

/** Reads everything the report of `out` shows. */
export async function readRunReportData(out: string): Promise<RunReportData> {
  const dir = join(reportDir(out), "reconstructions");
  const reconstructions: ReconstructionSlices[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (/^step-\d+\.json$/.test(entry.name)) {
        reconstructions.push((await readJson<ReconstructionSlices>(join(dir, entry.name)))!);
      }
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  reconstructions.sort((a, b) => a.step - b.step);
  return {
    out,
    config: await readJson(join(out, "config.json")),
    metrics: await readMetrics(join(out, "metrics.jsonl")),
    info: await readJson(join(reportDir(out), "run_info.json")),
    reconstructions,
    viewer: await readJson(join(reportDir(out), "viewer.json")),
  };
}

function table(rows: [string, string][]): string {
  return `<table>${
    rows.map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`).join("")
  }</table>`;
}

function curves(metrics: MetricsRecord[]): string {
  const train = metrics.filter((m) => m.kind === "train");
  const val = metrics.filter((m) => m.kind === "validation");
  const line = (
    name: string,
    rs: MetricsRecord[],
    f: (m: MetricsRecord) => number | undefined,
    dashed = false,
  ) => ({
    name,
    points: rs.flatMap((m) => {
      const v = f(m);
      return v === undefined ? [] : [[m.step, v] as [number, number]];
    }),
    dashed,
  });
  const charts: [Series[], string, boolean?][] = [
    [[line("train", train, (m) => m.loss), line("validation", val, (m) => m.loss, true)], "loss", true],
  ];
  const names = [...new Set(metrics.flatMap((m) => Object.keys(m.metrics ?? {})))].sort();
  for (const name of names) {
    charts.push([
      [
        line("train", train, (m) => m.metrics?.[name]),
        line("validation", val, (m) => m.metrics?.[name], true),
      ],
      `metric: ${name}`,
    ]);
  }
  const mib = (b?: number) => (b === undefined ? undefined : b / 2 ** 20);
  charts.push(
    [[line("lr", train, (m) => m.lr)], "learning rate", true],
    [[line("grad norm", train, (m) => m.gradNorm)], "gradient norm", true],
    ...(train.some((m) => m.lossScale !== undefined && m.lossScale !== 1)
      ? [[[line("loss scale", train, (m) => m.lossScale)], "loss scale (mixed precision)", true] as [
        Series[],
        string,
        boolean,
      ]]
      : []),
    [[line("skipped", train, (m) => m.skippedSteps)], "skipped steps (non-finite gradients, total)"],
    [[line("steps/s", train, (m) => m.stepsPerSecond)], "steps per second"],
    [
      [line("ms/step", train, (m) => m.dataWaitSeconds === undefined ? undefined : m.dataWaitSeconds * 1000)],
      "data wait (ms per step)",
    ],
    [
      [line(
        "% of time",
        train,
        (m) =>
          m.dataWaitSeconds === undefined || m.stepsPerSecond === undefined
            ? undefined
            : 100 * m.dataWaitSeconds * m.stepsPerSecond,
      )],
      "time waiting for data (%)",
    ],
    [
      [line("in use", train, (m) => mib(m.gpuMemoryBytes)), line("peak", train, (m) => mib(m.gpuPeakBytes))],
      "GPU memory (MiB)",
    ],
  );
  return `<div class="grid">${
    charts.map(([s, title, logY]) => lineChart(s, { title, logY })).join("\n")
  }</div>`;
}

/** At most `n` of `items`, evenly spread, the first and last included (a 1000-epoch run's checkpoints). */
export function spread<T>(items: T[], n: number): T[] {
  if (items.length <= n) return items;
  if (n <= 1) return items.slice(-n);
  return Array.from({ length: n }, (_, i) => items[Math.round((i * (items.length - 1)) / (n - 1))]);
}

function reconstructionHtml(data: RunReportData, method: string): string {
  if (data.reconstructions.length === 0) {
    return `<p class="muted">No reconstructions: ${
      escapeHtml(method)
    } does not reconstruct its input (a contrastive method), or the run has no validation batches or no checkpoint yet.</p>`;
  }
  const block = (r: ReconstructionSlices) => {
    const head = `<div></div>${PANELS.map((p) => `<div class="label">${p}</div>`).join("")}`;
    const rows = AXES.map((axis) =>
      `<div class="label">${axis}</div>` +
      PANELS.map((p) =>
        `<img alt="${p} ${axis} step ${r.step}" data-panel="${p}" src="data:image/png;base64,${
          r.pngs[p][axis]
        }">`
      ).join("")
    ).join("\n");
    return `<div class="slices" data-step="${r.step}">${head}\n${rows}</div>`;
  };
  const latest = data.reconstructions.at(-1)!;
  const older = spread(data.reconstructions.slice(0, -1), 11).reverse();
  return `<p class="muted">The fixed validation patch (${
    latest.shape.join("×")
  } voxels; ${data.reconstructions.length} checkpoints, at most 12 shown), middle slices, intensity window ${
    latest.window.map((v) => v.toPrecision(3)).join(" … ")
  } of the input for all four panels.</p>
<h3>step ${latest.step}</h3>${block(latest)}
${older.map((r) => `<details><summary>step ${r.step}</summary>${block(r)}</details>`).join("\n")}`;
}

/** The report page of a run. */
export function renderRunReport(data: RunReportData): string {
  const config = data.config ?? {};
  const plugins = (config.plugins ?? {}) as { architecture?: string; method?: string };
  const method = String(
    (config.resolvedMethod as { plugin?: string } | undefined)?.plugin ?? config.method ?? "?",
  );
  const last = data.metrics.filter((m) => m.kind === "train").at(-1);
  const steps = Number(config.epochs ?? 0) * Number(config.stepsPerEpoch ?? 0);
  const overview = table([
    ["run folder", data.out],
    ["architecture", plugins.architecture ?? String(config.arch ?? "?")],
    ["method", plugins.method ?? method],
    ["voxssl core", data.info?.coreVersion ?? "?"],
    [
      "progress",
      last
        ? `step ${last.step} of ${steps || "?"}, epoch ${last.epoch + 1} of ${config.epochs ?? "?"}`
        : "no steps logged yet",
    ],
    ["last training loss", last ? last.loss.toPrecision(5) : "–"],
    ["data", String(config.data ?? "?")],
    ["patch × batch", `${(config.patch as number[] | undefined)?.join("×") ?? "?"} × ${config.batch ?? "?"}`],
    ["precision", String(config.precision ?? "?")],
  ]);
  const info = data.info;
  const adapter = info
    ? table([
      ...Object.entries(info.adapter).map(([k, v]) => [`adapter ${k}`, v || "–"] as [string, string]),
      ["features", info.features.join(", ") || "none"],
      ...Object.entries(info.limits).map(([k, v]) => [k, String(v)] as [string, string]),
    ])
    : `<p class="muted">No report/run_info.json (written when the run reaches its first checkpoint).</p>`;
  const sections: PageSection[] = [
    { id: "overview", title: "Run", html: overview },
    { id: "curves", title: "Curves", html: curves(data.metrics) },
    { id: "reconstructions", title: "Reconstructions", html: reconstructionHtml(data, method) },
    {
      id: "viewer",
      title: "3D viewer",
      html: data.viewer
        ? `<p class="muted">The latest reconstruction (step ${data.viewer.step}), ${
          data.viewer.shape.join("×")
        } voxels: pick a volume per column; drag the sliders or click a slice to move the crosshair.</p>` +
          viewerHtml("viewer-data", [{
            name: `step ${data.viewer.step}`,
            shape: data.viewer.shape,
            volumes: Object.fromEntries(
              Object.entries(data.viewer.volumes).map((
                [k, v],
              ) => [k, Uint8Array.from(atob(v), (c) => c.charCodeAt(0))]),
            ),
          }], [{ volume: "corrupted" }, { volume: "prediction" }, { volume: "target" }])
        : `<p class="muted">Nothing to view yet (see Reconstructions).</p>`,
    },
    { id: "adapter", title: "Adapter and limits", html: adapter },
    {
      id: "config",
      title: "Configuration",
      html: `<details open><summary>config.json</summary><pre>${
        escapeHtml(JSON.stringify(config, null, 2))
      }</pre></details>`,
    },
  ];
  return renderPage({
    title: `voxssl run: ${plugins.architecture ?? config.arch ?? ""} · ${plugins.method ?? method}`,
    subtitle: `${data.out} · report drawn ${new Date().toISOString().slice(0, 19).replace("T", " ")} UTC`,
    sections,
    scripts: data.viewer ? [VIEWER_SCRIPT] : [],
  });
}

/** Draws `<out>/report.html` from the run folder (atomically) and returns its path. */
export async function writeRunReport(out: string): Promise<string> {
  const path = join(out, "report.html");
  await writeFileAtomic(path, renderRunReport(await readRunReportData(out)));
  return path;
}
