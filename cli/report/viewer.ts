/**
 * The pages' volume viewer: three orthogonal slices (axial, coronal, sagittal) of 8-bit volumes on
 * canvases, side by side in columns (each column picks a volume and, optionally, a label overlay drawn
 * in colour), with a shared crosshair set by sliders or by clicking a slice. Written here rather than
 * bundling NiiVue: a few kilobytes of inline script, no WebGL, so it draws in any browser and offline.
 *
 * The server side ({@link viewerHtml}) embeds the volumes as base64 in an inline JSON script; the
 * client side ({@link VIEWER_SCRIPT}) builds the controls and draws.
 *
 * @module
 */
import { escapeHtml, inlineJson } from "./page.ts";
import { base64 } from "./png.ts";

/** One case of a viewer: an 8-bit volume per name, `[D, H, W]`, W fastest. */
export interface ViewerCase {
  /** Case label. */
  name: string;
  /** Volume shape `[D, H, W]`. */
  shape: [number, number, number];
  /** Grayscale volumes (0–255). */
  volumes: Record<string, Uint8Array>;
  /** Label volumes (0 = none) drawn over a grayscale one. */
  overlays?: Record<string, Uint8Array>;
}

/** One column of slices: which volume and overlay it starts with. */
export interface ViewerColumn {
  /** The volume shown first. */
  volume: string;
  /** The overlay shown first (none when absent). */
  overlay?: string;
}

/** Embeds a viewer of `cases` with `columns` (element `.viewer`, data in `<script id=id>`). */
export function viewerHtml(id: string, cases: ViewerCase[], columns: ViewerColumn[]): string {
  const data = {
    columns,
    cases: cases.map((c) => ({
      name: c.name,
      shape: c.shape,
      volumes: Object.fromEntries(Object.entries(c.volumes).map(([k, v]) => [k, base64(v)])),
      overlays: Object.fromEntries(Object.entries(c.overlays ?? {}).map(([k, v]) => [k, base64(v)])),
    })),
  };
  return `<div class="viewer" data-viewer="${escapeHtml(id)}"></div>\n` +
    `<script type="application/json" id="${escapeHtml(id)}">${inlineJson(data)}</script>`;
}

/**
 * Maps a float volume to 8 bits with the window `[lo, hi]` and shrinks it by integer strides so that no
 * axis exceeds `maxEdge` voxels (nearest neighbour).
 */
export function toViewerVolume(
  values: Float32Array,
  shape: [number, number, number],
  window: [number, number],
  maxEdge = 96,
): { shape: [number, number, number]; bytes: Uint8Array } {
  const stride = shape.map((n) => Math.max(1, Math.ceil(n / maxEdge)));
  const out = shape.map((n, i) => Math.ceil(n / stride[i])) as [number, number, number];
  const bytes = new Uint8Array(out[0] * out[1] * out[2]);
  const [lo, hi] = window;
  const scale = hi > lo ? 255 / (hi - lo) : 0;
  let k = 0;
  for (let d = 0; d < out[0]; d++) {
    for (let h = 0; h < out[1]; h++) {
      for (let w = 0; w < out[2]; w++) {
        const v = values[((d * stride[0]) * shape[1] + h * stride[1]) * shape[2] + w * stride[2]];
        bytes[k++] = Math.max(0, Math.min(255, Math.round((v - lo) * scale)));
      }
    }
  }
  return { shape: out, bytes };
}

/** The `[p1, p99]` intensity window of `values` (finite ones). */
export function percentileWindow(values: Float32Array, low = 0.01, high = 0.99): [number, number] {
  const finite = values.filter(Number.isFinite).sort();
  if (finite.length === 0) return [0, 1];
  const at = (q: number) => finite[Math.min(finite.length - 1, Math.floor(q * (finite.length - 1)))];
  const lo = at(low), hi = at(high);
  return hi > lo ? [lo, hi] : [lo, lo + 1];
}

/** The client side: builds every `.viewer` on the page. */
export const VIEWER_SCRIPT = `
(() => {
  const decode = (s) => { const b = atob(s); const a = new Uint8Array(b.length); for (let i = 0; i < b.length; i++) a[i] = b.charCodeAt(i); return a; };
  const COLORS = [[255, 64, 64], [64, 200, 255], [80, 220, 80], [255, 200, 0]];
  const AXES = ["axial", "coronal", "sagittal"];
  const el = (tag, props = {}, children = []) => { const e = Object.assign(document.createElement(tag), props); for (const c of children) e.append(c); return e; };
  for (const root of document.querySelectorAll(".viewer")) {
    const data = JSON.parse(document.getElementById(root.dataset.viewer).textContent);
    const cases = data.cases.map((c) => ({
      name: c.name, shape: c.shape,
      volumes: Object.fromEntries(Object.entries(c.volumes).map(([k, v]) => [k, decode(v)])),
      overlays: Object.fromEntries(Object.entries(c.overlays || {}).map(([k, v]) => [k, decode(v)])),
    }));
    let current = cases[0];
    let pos = current.shape.map((n) => n >> 1);
    const controls = el("div", { className: "viewer-controls" });
    if (cases.length > 1) {
      const pick = el("select", { className: "viewer-case" }, cases.map((c, i) => el("option", { value: i, textContent: c.name })));
      pick.addEventListener("change", () => { current = cases[Number(pick.value)]; pos = current.shape.map((n) => n >> 1); syncSliders(); draw(); });
      controls.append(el("label", { textContent: "case " }, [pick]));
    }
    const sliders = AXES.map((name, axis) => {
      const s = el("input", { type: "range", min: 0, value: 0, className: "viewer-slider" });
      s.dataset.axis = String(axis);
      s.addEventListener("input", () => { pos[axis] = Number(s.value); draw(); });
      controls.append(el("label", { textContent: name + " " }, [s]));
      return s;
    });
    const syncSliders = () => sliders.forEach((s, axis) => { s.max = current.shape[axis] - 1; s.value = pos[axis]; });
    const row = el("div", { className: "viewer-row" });
    const columns = data.columns.map((col, ci) => {
      const volume = el("select", { className: "viewer-volume" }, Object.keys(current.volumes).map((k) => el("option", { value: k, textContent: k, selected: k === col.volume })));
      const names = Object.keys(current.overlays);
      const overlay = el("select", { className: "viewer-overlay" }, [el("option", { value: "", textContent: "no overlay" }), ...names.map((k) => el("option", { value: k, textContent: k, selected: k === col.overlay }))]);
      const canvases = AXES.map((name, axis) => {
        const c = el("canvas", { title: name });
        c.dataset.axis = String(axis);
        c.addEventListener("click", (ev) => {
          const r = c.getBoundingClientRect();
          const u = Math.floor((ev.clientX - r.left) / r.width * c.width), v = Math.floor((ev.clientY - r.top) / r.height * c.height);
          const [D, H] = current.shape;
          if (axis === 0) { pos[2] = u; pos[1] = v; } else if (axis === 1) { pos[2] = u; pos[0] = D - 1 - v; } else { pos[1] = u; pos[0] = D - 1 - v; }
          syncSliders(); draw();
        });
        return c;
      });
      volume.addEventListener("change", draw);
      overlay.addEventListener("change", draw);
      const head = el("div", {}, [volume]);
      if (names.length) head.append(" ", overlay);
      row.append(el("div", { className: "viewer-col" }, [head, ...canvases]));
      return { volume, overlay, canvases, color: COLORS[ci % COLORS.length] };
    });
    root.append(controls, row);
    function slice(vol, axis) {
      const [D, H, W] = current.shape;
      const [w, h] = axis === 0 ? [W, H] : axis === 1 ? [W, D] : [H, D];
      const out = new Uint8Array(w * h);
      for (let v = 0; v < h; v++) for (let u = 0; u < w; u++) {
        const i = axis === 0 ? (pos[0] * H + v) * W + u : axis === 1 ? ((D - 1 - v) * H + pos[1]) * W + u : ((D - 1 - v) * H + u) * W + pos[2];
        out[v * w + u] = vol[i];
      }
      return { w, h, out };
    }
    function draw() {
      for (const col of columns) {
        const vol = current.volumes[col.volume.value] || Object.values(current.volumes)[0];
        const lab = col.overlay.value ? current.overlays[col.overlay.value] : undefined;
        col.canvases.forEach((canvas, axis) => {
          const { w, h, out } = slice(vol, axis);
          const labels = lab ? slice(lab, axis).out : undefined;
          canvas.width = w; canvas.height = h;
          const ctx = canvas.getContext("2d");
          const img = ctx.createImageData(w, h);
          for (let k = 0; k < w * h; k++) {
            let r = out[k], g = out[k], b = out[k];
            if (labels && labels[k]) { const c = COLORS[(labels[k] - 1) % COLORS.length]; r = (r + c[0]) >> 1; g = (g + c[1]) >> 1; b = (b + c[2]) >> 1; }
            img.data[4 * k] = r; img.data[4 * k + 1] = g; img.data[4 * k + 2] = b; img.data[4 * k + 3] = 255;
          }
          ctx.putImageData(img, 0, 0);
          const [D] = current.shape;
          const [cu, cv] = axis === 0 ? [pos[2], pos[1]] : axis === 1 ? [pos[2], D - 1 - pos[0]] : [pos[1], D - 1 - pos[0]];
          ctx.fillStyle = "rgba(255, 220, 0, 0.45)";
          ctx.fillRect(cu, 0, 1, h); ctx.fillRect(0, cv, w, 1);
        });
      }
    }
    syncSliders();
    draw();
    root.dataset.ready = "true";
  }
})();
`;
