/**
 * The report pages in a real headless browser (Debian's chromium; ignored when it is absent): one
 * chromium launch for every page. Each page loads from file:// with the network emulated offline, asks
 * for nothing but file: and data: URLs, logs no console error, lays out its sections in order with
 * non-empty boxes (layout compared by structure, not by pixels), decodes its PNGs to the exact slices,
 * and draws non-blank viewer canvases that follow the sliders.
 */
import { assert, assertEquals } from "../../assert.ts";
import type { MetricsRecord, ReconstructionVolumes } from "../../../core/train/mod.ts";
import { middleSlice, saveReconstruction, spread, writeRunReport } from "../../../cli/report/run_report.ts";
import { decimate } from "../../../cli/report/charts.ts";
import { percentileWindow, toViewerVolume } from "../../../cli/report/viewer.ts";
import {
  type LeaderboardResults,
  renderLeaderboard,
  writeLeaderboardPage,
} from "../../../cli/report/leaderboard.ts";
import { writeNifti } from "../../../core/data/mod.ts";
import { seededRandom } from "../../helpers.ts";
import { chromiumPath, launchChromium, type PageSession } from "./chromium.ts";

const chromium = chromiumPath();
if (!chromium) {
  console.log("pages_test: chromium not installed (scripts/setup.sh installs it): browser tests ignored");
}

const SHAPE: [number, number, number] = [20, 24, 28]; // D ≠ H ≠ W catches swapped axes

/** A phantom: a bright ellipsoid with a gradient and noise; the other panels derived from it. */
function phantom(): ReconstructionVolumes {
  const [D, H, W] = SHAPE;
  const next = seededRandom(21);
  const input = new Float32Array(D * H * W);
  for (let d = 0; d < D; d++) {
    for (let h = 0; h < H; h++) {
      for (let w = 0; w < W; w++) {
        const r = ((d - 10) / 8) ** 2 + ((h - 12) / 10) ** 2 + ((w - 14) / 11) ** 2;
        input[(d * H + h) * W + w] = (r < 1 ? 1 + w / W + d / D : 0) + 0.1 * next();
      }
    }
  }
  const corrupted = input.map((v, i) => (i % W < W / 2 ? 0 : v));
  const prediction = input.map((v) => 0.8 * v + 0.2 * next());
  return { shape: SHAPE, step: 12, volumes: { input, corrupted, prediction, target: input.slice() } };
}

/** A run folder as the Trainer and the report observer leave it. */
async function fakeRun(dir: string): Promise<ReconstructionVolumes> {
  const next = seededRandom(4);
  const records: MetricsRecord[] = [];
  for (let step = 2; step <= 12; step += 2) {
    records.push({
      kind: "train",
      step,
      epoch: Math.floor((step - 1) / 6),
      loss: 2 / step + next() * 0.05,
      metrics: { mse_masked: 1 / step, mse_visible: 0.5 / step },
      lr: 0.01 * (1 - step / 13),
      stepsPerSecond: 2 + next(),
      gradNorm: 1 + next(),
      lossScale: 65536,
      skippedSteps: step > 8 ? 1 : 0,
      gpuMemoryBytes: 50 * 2 ** 20,
      gpuPeakBytes: 120 * 2 ** 20,
      dataWaitSeconds: 0.01 * next(),
    });
    if (step % 6 === 0) {
      records.push({
        kind: "validation",
        step,
        epoch: step / 6 - 1,
        loss: 2.2 / step,
        metrics: { mse_masked: 1.1 / step },
      });
    }
  }
  await Deno.writeTextFile(`${dir}/metrics.jsonl`, records.map((r) => JSON.stringify(r)).join("\n") + "\n");
  await Deno.writeTextFile(
    `${dir}/config.json`,
    JSON.stringify({
      arch: "resenc-tiny",
      method: "mae",
      epochs: 2,
      stepsPerEpoch: 6,
      patch: SHAPE,
      batch: 2,
      precision: "mixed",
      data: "synthetic",
      resolvedMethod: { plugin: "mae" },
      plugins: { architecture: "resenc@2.0.0", method: "mae@3.0.0" },
    }),
  );
  await Deno.mkdir(`${dir}/report`, { recursive: true });
  await Deno.writeTextFile(
    `${dir}/report/run_info.json`,
    JSON.stringify({
      coreVersion: "0.2.0",
      adapter: { vendor: "mesa", architecture: "", device: "llvmpipe", description: "lavapipe" },
      features: ["shader-f16"],
      limits: { maxBufferSize: 2 ** 30 },
      writtenAt: "2026-01-01T00:00:00Z",
    }),
  );
  const early = phantom();
  await saveReconstruction(dir, { ...early, step: 6 });
  const late = phantom();
  await saveReconstruction(dir, late);
  return late;
}

Deno.test("writeRunReport: one self-contained page with every section, curve and slice", async () => {
  const dir = await Deno.makeTempDir();
  await fakeRun(dir);
  const html = await Deno.readTextFile(await writeRunReport(dir));
  for (const id of ["overview", "curves", "reconstructions", "viewer", "adapter", "config"]) {
    assert(html.includes(`data-section="${id}"`), id);
  }
  assert(
    !/<script[^>]+src=|<link[^>]+stylesheet|https?:\/\/(?!www\.w3\.org\/2000\/svg)/.test(html),
    "nothing external",
  );
  const charts = [...html.matchAll(/data-chart="([^"]+)"/g)].map((m) => m[1]);
  assertEquals(charts, [
    "loss",
    "metric: mse_masked",
    "metric: mse_visible",
    "learning rate",
    "gradient norm",
    "loss scale (mixed precision)",
    "skipped steps (non-finite gradients, total)",
    "steps per second",
    "data wait (ms per step)",
    "time waiting for data (%)",
    "GPU memory (MiB)",
  ]);
  assertEquals([...html.matchAll(/<div class="slices" data-step="(\d+)"/g)].map((m) => m[1]), ["12", "6"]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("long runs stay small: curves averaged down to 800 points, at most 12 checkpoints of slices", () => {
  const points = Array.from({ length: 10_000 }, (_, i) => [i, 3 * i + 1] as [number, number]);
  const few = decimate(points);
  assertEquals(few.length, 800);
  // bucket means of a line lie on the line; the buckets tile the whole range
  assert(few.every(([x, y]) => Math.abs(y - (3 * x + 1)) < 1e-6), "on the line");
  assertEquals([few[0][0], few.at(-1)![0]], [(0 + 11) / 2, (9987 + 9999) / 2]);
  assertEquals(decimate(points.slice(0, 5)), points.slice(0, 5));
  const steps = Array.from({ length: 100 }, (_, i) => i);
  const kept = spread(steps, 11);
  assertEquals([kept.length, kept[0], kept.at(-1)], [11, 0, 99]);
  assertEquals(spread(steps.slice(0, 5), 11), [0, 1, 2, 3, 4]);
});

/** A benchmark's results.json: 3 methods on one architecture, one dataset at two fractions, 2 seeds. */
function fakeResults(): LeaderboardResults {
  const next = seededRandom(9);
  const methods = ["scratch", "mae", "simclr"];
  const cases = ["case_01", "case_02", "case_03", "case_04"];
  const cells = methods.flatMap((method, m) =>
    [1, 0.25].flatMap((labelFraction) =>
      [0, 1].map((seed) => ({
        key: `${method}-${labelFraction}-${seed}`,
        cell: { method, arch: "resenc-tiny", dataset: { name: "lesions" }, labelFraction, seed },
        result: {
          cases: cases.map((id) => ({ case: id, dice: 0.5 + 0.1 * m * labelFraction + 0.05 * next() })),
          seconds: 100 + seed,
          provenance: { core: "0.2.0", adapter: "lavapipe" },
        },
      }))
    )
  );
  const leaderboard = methods.flatMap((method, m) =>
    [1, 0.25].map((labelFraction) => {
      const mean = 0.52 + 0.1 * m * labelFraction;
      return {
        method,
        arch: "resenc-tiny",
        dataset: "lesions",
        labelFraction,
        seeds: [0, 1],
        cases: 4,
        dice: { mean, lower: mean - 0.03, upper: mean + 0.03 },
        rank: 3 - m,
        ...(method === "scratch"
          ? {}
          : { deltaToScratch: { mean: mean - 0.52, lower: mean - 0.55, upper: mean - 0.49 } }),
      };
    })
  );
  return {
    name: "tiny",
    generatedAt: "2026-01-01T00:00:00Z",
    writer: { core: "0.2.0" },
    leaderboard,
    cells,
    missing: ["x"],
  };
}

Deno.test("renderLeaderboard: sortable entries, per-case Dice, plots, cells; results.json errors name the file", async () => {
  const html = renderLeaderboard(fakeResults());
  for (const id of ["leaderboard", "plots", "per-case", "cells", "about"]) {
    assert(html.includes(`data-section="${id}"`), id);
  }
  assert(!html.includes('data-section="viewer"'), "no viewer without overlay cases");
  assertEquals([...html.matchAll(/data-chart="([^"]+)"/g)].map((m) => m[1]), [
    "lesions: mean Dice, 100% labels",
    "lesions: mean Dice by label fraction",
  ]);
  assertEquals((html.match(/<table class="sortable per-case"/g) ?? []).length, 2);
  assert(html.includes("1 cells not finished yet"));
  const dir = await Deno.makeTempDir();
  const error = await writeLeaderboardPage(dir).catch((e: Error) => e.message);
  assert(String(error).includes(`${dir}/results.json`), String(error));
  await Deno.writeTextFile(`${dir}/results.json`, JSON.stringify({ name: "x" }));
  assert(
    String(await writeLeaderboardPage(dir).catch((e: Error) => e.message)).includes(
      "expected { name, leaderboard",
    ),
  );
  await Deno.remove(dir, { recursive: true });
});

/** Sections in document order, each a non-empty box below the previous one and within the page width. */
async function checkLayout(page: PageSession, expected: string[]): Promise<void> {
  const boxes = await page.evaluate<
    { id: string; top: number; height: number; left: number; right: number }[]
  >(
    `[...document.querySelectorAll("section[data-section]")].map((s) => { const r = s.getBoundingClientRect();
      return { id: s.dataset.section, top: r.top, height: r.height, left: r.left, right: r.right }; })`,
  );
  assertEquals(boxes.map((b) => b.id), expected);
  const width = await page.evaluate<number>("document.documentElement.clientWidth");
  boxes.forEach((b, i) => {
    assert(b.height > 20 && b.left >= 0 && b.right <= width + 1, `section ${b.id}: ${JSON.stringify(b)}`);
    if (i > 0) assert(b.top >= boxes[i - 1].top + boxes[i - 1].height, `${b.id} below ${boxes[i - 1].id}`);
  });
}

/** Pixels of a canvas as gray values (the red channel). */
const canvasGray = (selector: string) =>
  `(() => { const c = document.querySelector(${
    JSON.stringify(selector)
  }); const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
     return { width: c.width, height: c.height, gray: [...d].filter((_, i) => i % 4 === 0) }; })()`;

Deno.test({
  name: `run report and leaderboard pages in headless chromium${
    chromium ? "" : " (ignored: chromium not installed)"
  }`,
  ignore: !chromium,
  fn: async (t) => {
    const browser = await launchChromium(chromium!);
    try {
      await t.step(
        "run report: offline, no console errors, layout, PNG slices and a working viewer",
        async () => {
          const dir = await Deno.makeTempDir();
          const rec = await fakeRun(dir);
          const page = await browser.open(`file://${await writeRunReport(dir)}`);
          assertEquals(await page.evaluate("document.querySelector('.viewer')?.dataset.ready"), "true");
          assertEquals(page.errors, []);
          assert(page.requests.every((u) => /^(file|data):/.test(u)), page.requests.join("\n"));
          await checkLayout(page, ["overview", "curves", "reconstructions", "viewer", "adapter", "config"]);
          const charts = await page.evaluate<number[]>(
            `[...document.querySelectorAll("svg.chart")].map((s) => s.getBoundingClientRect().width * s.querySelectorAll("path").length)`,
          );
          assertEquals(charts.length, 11);
          assert(charts.every((w) => w > 100), `every chart drawn: ${charts}`);

          // the browser decodes each PNG to exactly the slice of the 8-bit volume
          const window = percentileWindow(rec.volumes.input);
          for (const [panel, axis] of [["prediction", 0], ["corrupted", 1], ["target", 2]] as const) {
            const expected = middleSlice(
              toViewerVolume(rec.volumes[panel], SHAPE, window, Infinity).bytes,
              SHAPE,
              axis,
            );
            const name = ["axial", "coronal", "sagittal"][axis];
            const got = await page.evaluate<{ width: number; height: number; gray: number[] }>(
              `(() => { const img = document.querySelector('[data-step="12"] img[alt="${panel} ${name} step 12"]');
               const c = document.createElement("canvas"); c.width = img.naturalWidth; c.height = img.naturalHeight;
               const x = c.getContext("2d"); x.drawImage(img, 0, 0);
               return { width: c.width, height: c.height, gray: [...x.getImageData(0, 0, c.width, c.height).data].filter((_, i) => i % 4 === 0) }; })()`,
            );
            assertEquals([got.width, got.height], [expected.width, expected.height], `${panel} ${name} size`);
            assertEquals(got.gray, [...expected.pixels], `${panel} ${name} pixels`);
          }

          // the viewer: 3 columns × 3 canvases, none blank; moving the axial slider redraws that slice
          assertEquals(await page.evaluate("document.querySelectorAll('.viewer canvas').length"), 9);
          for (let i = 1; i <= 9; i++) {
            const { gray } = await page.evaluate<{ gray: number[] }>(
              canvasGray(`.viewer-col:nth-child(${Math.ceil(i / 3)}) canvas:nth-of-type(${(i - 1) % 3 + 1})`),
            );
            assert(new Set(gray).size > 8, `canvas ${i} is not blank (${new Set(gray).size} gray levels)`);
          }
          await page.evaluate(
            `(() => { const s = document.querySelector('.viewer-slider[data-axis="0"]'); s.value = 4; s.dispatchEvent(new Event("input")); })()`,
          );
          const target = toViewerVolume(rec.volumes.target, SHAPE, window).bytes;
          const [, H, W] = SHAPE;
          const axial = await page.evaluate<{ width: number; height: number; gray: number[] }>(
            canvasGray(".viewer-col:nth-child(3) canvas"),
          );
          assertEquals([axial.width, axial.height], [W, H]);
          let same = 0;
          for (let v = 0; v < H; v++) {
            for (let u = 0; u < W; u++) {
              if (u === W >> 1 || v === H >> 1) continue; // the crosshair
              if (axial.gray[v * W + u] === target[(4 * H + v) * W + u]) same++;
            }
          }
          assertEquals(same, (W - 1) * (H - 1), "axial slice 4 of the target, off the crosshair");
          assertEquals(page.errors, []);
          await Deno.remove(dir, { recursive: true });
        },
      );

      await t.step(
        "leaderboard: offline, no console errors, layout, sorting, and the overlay viewer",
        async () => {
          const dir = await Deno.makeTempDir();
          await Deno.writeTextFile(`${dir}/results.json`, JSON.stringify(fakeResults()));
          const [D, H, W] = SHAPE;
          const image = phantom().volumes.input;
          const ball = (r: number) =>
            Float32Array.from({ length: D * H * W }, (_, i) => {
              const d = Math.floor(i / (H * W)), h = Math.floor(i / W) % H, w = i % W;
              return ((d - 10) / r) ** 2 + ((h - 12) / r) ** 2 + ((w - 14) / r) ** 2 < 1 ? 1 : 0;
            });
          const affine = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1];
          await writeNifti(`${dir}/img.nii.gz`, { data: image, shape: SHAPE, affine });
          await writeNifti(`${dir}/pred.nii.gz`, { data: ball(5), shape: SHAPE, affine }, {
            datatype: "uint8",
          });
          await writeNifti(`${dir}/ref.nii.gz`, { data: ball(7), shape: SHAPE, affine }, {
            datatype: "uint8",
          });
          const path = await writeLeaderboardPage(dir, [
            {
              name: "lesions / case_01 / mae",
              image: `${dir}/img.nii.gz`,
              prediction: `${dir}/pred.nii.gz`,
              reference: `${dir}/ref.nii.gz`,
            },
          ]);
          const page = await browser.open(`file://${path}`);
          assertEquals(await page.evaluate("document.querySelector('.viewer')?.dataset.ready"), "true");
          assertEquals(page.errors, []);
          assert(page.requests.every((u) => /^(file|data):/.test(u)), page.requests.join("\n"));
          await checkLayout(page, ["leaderboard", "plots", "per-case", "viewer", "cells", "about"]);

          // sorting: click "mean Dice [CI]" once (ascending), then again (descending)
          const column = (n: number) =>
            `[...document.querySelectorAll("#entries tbody tr")].map((r) => Number(r.cells[${n}].dataset.value))`;
          const click = `document.querySelectorAll("#entries th")[5].click()`;
          await page.evaluate(click);
          const up = await page.evaluate<number[]>(column(5));
          assertEquals(up, [...up].sort((a, b) => a - b));
          await page.evaluate(click);
          const down = await page.evaluate<number[]>(column(5));
          assertEquals(down, [...up].reverse());

          // the overlay viewer: prediction (radius 5) tinted over the image on the left, reference (7) on the right
          const tinted = async (col: number) => {
            const rgba = await page.evaluate<number[]>(
              `(() => { const c = document.querySelector(".viewer-col:nth-child(${col}) canvas");
               return [...c.getContext("2d").getImageData(0, 0, c.width, c.height).data]; })()`,
            );
            let n = 0; // red-tinted pixels (the crosshair is yellow: red ≈ green)
            for (let i = 0; i < rgba.length; i += 4) if (rgba[i] - rgba[i + 1] > 40) n++;
            return n;
          };
          const [left, right] = [await tinted(1), await tinted(2)];
          const disk = (r: number) => {
            let n = 0;
            for (let h = 0; h < H; h++) {
              for (let w = 0; w < W; w++) if (((h - 12) / r) ** 2 + ((w - 14) / r) ** 2 < 1) n++;
            }
            return n;
          };
          // every label voxel of the middle axial slice is tinted, but for those under the crosshair's row and column
          assert(left <= disk(5) && left >= disk(5) - 2 * 11, `prediction overlay: ${left} of ${disk(5)}`);
          assert(right <= disk(7) && right >= disk(7) - 2 * 15, `reference overlay: ${right} of ${disk(7)}`);
          assertEquals(page.errors, []);
          await Deno.remove(dir, { recursive: true });
        },
      );

      await t.step("leaderboard: a classification section lays out and sorts", async () => {
        const dir = await Deno.makeTempDir();
        const interval = (mean: number) => ({ mean, lower: mean - 0.05, upper: mean + 0.04 });
        const classificationLeaderboard = ["mae", "scratch", "simclr"].map((method, i) => ({
          method,
          arch: "resenc-tiny",
          dataset: "grade",
          labelFraction: 1,
          seeds: [0, 1],
          cases: 12,
          rank: i + 1,
          balancedAccuracy: interval(0.8 - 0.1 * i),
          accuracy: interval(0.85 - 0.1 * i),
          auroc: interval(0.9 - 0.05 * i),
          ...(method === "scratch" ? {} : { deltaToScratch: interval(0.1 - 0.1 * i) }),
          perSeed: [0, 1].map((seed) => ({ seed, balancedAccuracy: 0.78 - 0.1 * i + 0.04 * seed })),
        }));
        await Deno.writeTextFile(
          `${dir}/results.json`,
          JSON.stringify({ name: "cls", leaderboard: [], cells: [], classificationLeaderboard }),
        );
        const page = await browser.open(`file://${await writeLeaderboardPage(dir)}`);
        assertEquals(page.errors, []);
        await checkLayout(page, ["leaderboard", "classification", "cells", "about"]);
        const column = `[...document.querySelectorAll("table.classification tbody tr")]
          .map((r) => Number(r.cells[3].dataset.value))`;
        await page.evaluate(`document.querySelectorAll("table.classification th")[3].click()`);
        const up = await page.evaluate<number[]>(column);
        // by rank the rows are in descending balanced accuracy; one click sorts them ascending
        assertEquals(up.length, 3);
        assertEquals(up, [...up].sort((a, b) => a - b));
        assertEquals(
          await page.evaluate<number>(`document.querySelectorAll("#classification circle.seed").length`),
          6,
        );
        await Deno.remove(dir, { recursive: true });
      });
    } finally {
      await browser.close();
    }
  },
});
