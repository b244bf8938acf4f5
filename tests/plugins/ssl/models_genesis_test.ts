/**
 * Models Genesis: each transform against nnssl's rule (methods.md §5; `model_genesis_transform.py`), over
 * many draws where the rule is a probability; the pipeline's order and determinism; the sample hook's
 * arrays; the loss against a float64 reference (gradients included); and short CLI runs of both families
 * in which the loss falls and a stopped run resumes to the same curve.
 */
import { assert, assertEquals } from "../../assert.ts";
import genesis, {
  applyFlips,
  applyIntensityCurve,
  applyShuffleWindows,
  bezierSamples,
  curveTable,
  drawFlips,
  drawInPaintBoxes,
  drawIntensityCurve,
  drawOutPaintBoxes,
  drawShuffleWindows,
  flipParity,
  genesisLoss,
  genesisPair,
  inPaint,
  inPaintSides,
  interpolateCurve,
  localPixelShuffle,
  maxWindowSide,
  minMaxRescale,
  nonlinearIntensity,
  outPaint,
  outPaintSides,
  paint,
  type PaintBox,
  startRange,
} from "../../../plugins/ssl/models-genesis/mod.ts";
import {
  createRng,
  Generator,
  getGpu,
  loadCheckpoint,
  Module,
  mul,
  type Network,
  readMetrics,
  resolveAugmentation,
  type Rng,
  sampleArray,
  scope,
  type Tensor,
  tensor,
  validatePlugin,
  VERSION,
} from "../../../mod.ts";
import { checkOp } from "../../../testing.ts";
import { createSampleRunner } from "../../../core/data/sample_runner.ts";
import { uploadBatch } from "../../../core/train/gpu_batch.ts";
import { resolveSource } from "../../../core/data/sources.ts";
import { gpuTest } from "../../helpers.ts";
import { spawnVoxssl, voxssl, writeConfig } from "../../e2e/cli.ts";

type Shape = [number, number, number];

/** |observed − p| within 5 standard errors of a proportion over n draws. */
function assertRate(count: number, n: number, p: number, what: string): void {
  const se = Math.sqrt((p * (1 - p)) / n);
  const observed = count / n;
  assert(Math.abs(observed - p) <= 5 * se + 1e-12, `${what}: observed ${observed.toFixed(4)}, expected ${p}`);
}

/** An image whose voxel i holds the value i (so a value names its source voxel). */
function codedImage(shape: Shape): Float32Array {
  return Float32Array.from({ length: shape[0] * shape[1] * shape[2] }, (_, i) => i);
}

function sortedCopy(a: ArrayLike<number>): number[] {
  return Array.from(a).sort((x, y) => x - y);
}

Deno.test("models-genesis is a valid plugin with nnssl's defaults for both families", () => {
  validatePlugin(genesis, VERSION, "plugins/ssl/models-genesis");
  assertEquals(genesis.network, { outChannels: 1 });
  assertEquals(genesis.supports, ["cnn", "vit"]);
  const { cnn, vit } = genesis.defaults;
  assertEquals(cnn?.optimizer, { name: "sgd", lr: 1e-2, momentum: 0.99, nesterov: true, weightDecay: 3e-5 });
  assertEquals([cnn?.clipGradNorm, cnn?.patchSize, cnn?.batchSize, cnn?.augmentation], [
    12,
    [160, 160, 160],
    2,
    "none",
  ]);
  assertEquals(vit?.optimizer, { name: "adamw", lr: 3e-4, betas: [0.9, 0.98], eps: 1e-8, weightDecay: 5e-2 });
  assertEquals(vit?.schedule, { name: "warmup-poly", warmup: 50, exponent: 0.9 });
  assertEquals([vit?.clipGradNorm, vit?.augmentation], [1, "none"]);
  const config = genesis.config.parse({});
  assertEquals(config, {
    range: "nnssl",
    flipRate: 0.4,
    localShuffleRate: 0.5,
    shuffleWindows: 10_000,
    nonlinearRate: 0.9,
    paintRate: 0.9,
    inpaintRate: 0.2,
    excludeDefaced: false,
  });
});

// --- flip -------------------------------------------------------------------------------------------------

Deno.test("drawFlips(): while U < 0.4, at most 3 flips, axes uniform in {0, 1, 2}; only X (D) or Y (H) ever flip", () => {
  const rng = createRng(11, "flip");
  const n = 20_000;
  const counts = [0, 0, 0, 0];
  const axes = [0, 0, 0];
  for (let k = 0; k < n; k++) {
    const flips = drawFlips(rng);
    assert(flips.length <= 3, `at most 3 flips, got ${flips}`);
    counts[flips.length]++;
    flips.forEach((a) => axes[a]++);
    assertEquals(flipParity(flips)[2], false, "W (nnssl's Z) never flips");
  }
  // P(k flips) = 0.4^k · 0.6 for k < 3, 0.4³ for k = 3
  [0.6, 0.24, 0.096, 0.064].forEach((p, k) => assertRate(counts[k], n, p, `${k} flips`));
  const total = axes[0] + axes[1] + axes[2];
  axes.forEach((c, a) => assertRate(c, total, 1 / 3, `axis ${a}`));
  assertEquals(flipParity([0, 0, 0]), [false, false, false], "the channel axis flips nothing");
  assertEquals(flipParity([1, 2, 1]), [false, true, false], "two flips of X cancel");
});

Deno.test("applyFlips() flips D for nnssl's axis 1 and H for axis 2, a mask alike, never W", () => {
  const shape: Shape = [3, 4, 5];
  const image = codedImage(shape);
  for (const flips of [[1], [2], [0], [1, 2], [2, 0, 2]]) {
    const out = image.slice();
    const mask = Uint8Array.from(image, (v) => v % 7);
    applyFlips(out, shape, flips);
    applyFlips(mask, shape, flips);
    const [fd, fh] = flipParity(flips);
    for (let d = 0; d < 3; d++) {
      for (let h = 0; h < 4; h++) {
        for (let w = 0; w < 5; w++) {
          const src = ((fd ? 2 - d : d) * 4 + (fh ? 3 - h : h)) * 5 + w;
          assertEquals(out[(d * 4 + h) * 5 + w], src, `flips ${flips}`);
          assertEquals(mask[(d * 4 + h) * 5 + w], src % 7);
        }
      }
    }
  }
});

// --- local pixel shuffle ----------------------------------------------------------------------------------

Deno.test("drawShuffleWindows(): 10 000 windows, sides in {1 … ⌊dim/10⌋}, starts where the window fits, both ends drawn", () => {
  for (const shape of [[160, 160, 160], [40, 64, 25], [8, 12, 30]] as Shape[]) {
    const windows = drawShuffleWindows(shape, createRng(5, ...shape));
    assertEquals(windows.length, 6 * 10_000);
    const top = shape.map(maxWindowSide);
    const seen = shape.map(() => ({ side1: false, sideTop: false, start0: false, startEnd: false }));
    for (let o = 0; o < windows.length; o += 6) {
      for (let a = 0; a < 3; a++) {
        const start = windows[o + a], side = windows[o + 3 + a];
        assert(side >= 1 && side <= top[a], `axis ${a}: side ${side} of ${shape[a]}`);
        assert(start >= 0 && start + side <= shape[a], `axis ${a}: start ${start} side ${side}`);
        if (side === 1) seen[a].side1 = true;
        if (side === top[a]) seen[a].sideTop = true;
        if (start === 0) seen[a].start0 = true;
        if (start + side === shape[a]) seen[a].startEnd = true;
      }
    }
    seen.forEach((s, a) =>
      assert(Object.values(s).every(Boolean), `axis ${a} of ${shape}: ${JSON.stringify(s)}`)
    );
    assertEquals(top, shape.map((d) => Math.max(1, Math.floor(d / 10))));
  }
  assertEquals(maxWindowSide(160), 16);
});

Deno.test("local shuffle: a window permutes its own voxels only (the image's multiset is unchanged) and really shuffles", () => {
  const shape: Shape = [6, 7, 8];
  const image = codedImage(shape);
  const window = Int32Array.of(1, 2, 3, 3, 4, 2); // start 1,2,3, size 3,4,2
  let moved = 0;
  for (let k = 0; k < 50; k++) {
    const out = applyShuffleWindows(image, shape, window, createRng(3, k));
    assertEquals(sortedCopy(out), sortedCopy(image), "same multiset");
    for (let i = 0; i < image.length; i++) {
      const [d, h, w] = [Math.floor(i / 56), Math.floor(i / 8) % 7, i % 8];
      const inside = d >= 1 && d < 4 && h >= 2 && h < 6 && w >= 3 && w < 5;
      if (!inside) assertEquals(out[i], image[i], `voxel ${i} outside the window unchanged`);
      else {
        const s = out[i];
        const [sd, sh, sw] = [Math.floor(s / 56), Math.floor(s / 8) % 7, s % 8];
        assert(
          sd >= 1 && sd < 4 && sh >= 2 && sh < 6 && sw >= 3 && sw < 5,
          `value ${s} comes from the window`,
        );
        if (s !== i) moved++;
      }
    }
  }
  assert(moved > 50 * 24 * 0.8, `a window of 24 voxels is permuted (moved ${moved} of ${50 * 24})`);
  // disjoint windows: still a permutation of the whole image
  const two = Int32Array.of(0, 0, 0, 2, 2, 2, 3, 4, 5, 3, 3, 3);
  assertEquals(sortedCopy(applyShuffleWindows(image, shape, two, createRng(4))), sortedCopy(image));
});

Deno.test("local shuffle: with 10 000 overlapping windows every voxel holds an original voxel of the last window over it", () => {
  const shape: Shape = [30, 24, 40];
  const image = codedImage(shape);
  const rng = createRng(9, "shuffle");
  const windows = drawShuffleWindows(shape, rng.fork("windows"));
  const out = localPixelShuffle(image, shape, rng);
  assertEquals(image, codedImage(shape), "the input is not changed");
  const last = new Int32Array(image.length).fill(-1);
  for (let o = 0; o < windows.length; o += 6) {
    for (let d = windows[o]; d < windows[o] + windows[o + 3]; d++) {
      for (let h = windows[o + 1]; h < windows[o + 1] + windows[o + 4]; h++) {
        for (let w = windows[o + 2]; w < windows[o + 2] + windows[o + 5]; w++) {
          last[(d * 24 + h) * 40 + w] = o;
        }
      }
    }
  }
  let covered = 0;
  for (let i = 0; i < image.length; i++) {
    const o = last[i];
    if (o < 0) {
      assertEquals(out[i], image[i], "voxels under no window keep their value");
      continue;
    }
    covered++;
    const s = out[i];
    const src = [Math.floor(s / 960), Math.floor(s / 40) % 24, s % 40];
    for (let a = 0; a < 3; a++) {
      assert(src[a] >= windows[o + a] && src[a] < windows[o + a] + windows[o + 3 + a], `voxel ${i} ← ${s}`);
    }
  }
  assert(covered > image.length / 2, `most voxels lie under a window (${covered})`);
});

// --- non-linear intensity ---------------------------------------------------------------------------------

Deno.test("bezierSamples() is nnssl's bezier_curve: the textbook cubic at 1 − t (t and 1 − t swapped)", () => {
  const points = [[0, 0], [0.3, 0.8], [0.9, 0.1], [1, 1]] as [number, number][];
  const n = 11;
  const { xs, ys } = bezierSamples(points, n);
  for (let k = 0; k < n; k++) {
    const s = 1 - k / (n - 1);
    const b = [(1 - s) ** 3, 3 * (1 - s) ** 2 * s, 3 * (1 - s) * s ** 2, s ** 3];
    const x = b.reduce((sum, w, i) => sum + w * points[i][0], 0);
    const y = b.reduce((sum, w, i) => sum + w * points[i][1], 0);
    assert(Math.abs(xs[k] - x) < 1e-15 && Math.abs(ys[k] - y) < 1e-15, `sample ${k}`);
  }
  assertEquals([xs[0], ys[0], xs[n - 1], ys[n - 1]], [1, 1, 0, 0], "from (1, 1) to (0, 0)");
});

Deno.test("intensity curves: increasing (x and y sorted) or inverting (x only) half the time, [0, 1] into [0, 1], clamped outside", () => {
  const rng = createRng(21, "curves");
  const n = 400;
  let inverting = 0;
  const ramp = Float32Array.from({ length: 2001 }, (_, i) => -0.5 + i / 1000); // −0.5 … 1.5
  for (let k = 0; k < n; k++) {
    const curve = drawIntensityCurve(rng, { samples: k < 20 ? 100_000 : 2_000 });
    if (curve.inverting) inverting++;
    const { xs } = curve;
    assertEquals([xs[0], xs[xs.length - 1]], [0, 1]);
    const out = ramp.slice();
    applyIntensityCurve(out, curve);
    const start = curve.inverting ? 1 : 0, end = curve.inverting ? 0 : 1;
    for (let i = 0; i < out.length; i++) {
      assert(out[i] >= 0 && out[i] <= 1, `curve ${k}: ${ramp[i]} → ${out[i]} outside [0, 1]`);
      if (ramp[i] <= 0) assertEquals(out[i], start, `below 0: the curve's value at 0 (${ramp[i]})`);
      if (ramp[i] >= 1) assertEquals(out[i], end, `above 1: the curve's value at 1 (${ramp[i]})`);
      if (i > 0) {
        const step = out[i] - out[i - 1];
        assert(
          curve.inverting ? step <= 0 : step >= 0,
          `curve ${k} monotone ${curve.inverting ? "down" : "up"}`,
        );
      }
    }
  }
  assertRate(inverting, n, 0.5, "inverting curves");
});

Deno.test("applyIntensityCurve() is np.interp on the samples, within the table's step", () => {
  const rng = createRng(8, "interp");
  // np.interp by a linear scan: the first sample above v
  const npInterp = (v: number, xs: Float64Array, ys: Float64Array) => {
    if (v < xs[0]) return ys[0];
    if (v >= xs[xs.length - 1]) return ys[ys.length - 1];
    let j = 0;
    while (xs[j + 1] <= v) j++;
    return ys[j] + ((v - xs[j]) * (ys[j + 1] - ys[j])) / (xs[j + 1] - xs[j]);
  };
  let worst = 0;
  for (let k = 0; k < 6; k++) {
    const curve = drawIntensityCurve(rng, { samples: 5_000 });
    const values = Float32Array.from({ length: 3000 }, () => rng.uniform(-0.2, 1.2));
    values[0] = 0;
    values[1] = 1;
    for (const v of values) {
      assertEquals(interpolateCurve(v, curve.xs, curve.ys), npInterp(v, curve.xs, curve.ys));
    }
    const table = curveTable(curve);
    const out = values.slice();
    applyIntensityCurve(out, curve, table);
    values.forEach((v, i) => {
      const exact = npInterp(v, curve.xs, curve.ys);
      const c = Math.min(table.length - 3, Math.max(0, Math.floor(v * (table.length - 2))));
      const bound = Math.abs(table[c + 1] - table[c]) + 1e-7; // + float32 rounding of the result
      assert(Math.abs(out[i] - exact) <= bound, `v ${v}: ${out[i]} vs ${exact} (bound ${bound})`);
      worst = Math.max(worst, Math.abs(out[i] - exact));
    });
  }
  assert(worst < 1e-4, `largest difference ${worst}`);
  const nan = Float32Array.of(NaN, 0.5);
  nonlinearIntensity(nan, createRng(1));
  assert(Number.isNaN(nan[0]) && nan[1] >= 0 && nan[1] <= 1);
});

// --- painting ---------------------------------------------------------------------------------------------

function checkBoxes(boxes: PaintBox[], shape: Shape, sides: (dim: number) => [number, number]): void {
  for (const { start, size } of boxes) {
    for (let a = 0; a < 3; a++) {
      const [lo, hi] = sides(shape[a]);
      assert(size[a] >= lo && size[a] <= hi, `side ${size[a]} of axis ${shape[a]} in [${lo}, ${hi}]`);
      const [s0, s1] = startRange(shape[a], size[a]);
      assert(start[a] >= s0 && start[a] <= s1, `start ${start[a]} in [${s0}, ${s1}]`);
      assert(start[a] >= 0 && start[a] + size[a] <= shape[a], "inside the patch");
    }
  }
}

Deno.test("in-painting boxes: up to 5 while U < 0.95, sides in {⌊dim/6⌋ … ⌊dim/3⌋}, starts in {3 … dim − side − 3}", () => {
  const shape: Shape = [160, 96, 48];
  assertEquals(inPaintSides(160), [26, 53]);
  assertEquals(startRange(160, 53), [3, 104]);
  const rng = createRng(31, "inpaint");
  const n = 6000;
  const counts = new Array(6).fill(0);
  const extremes = { sideLo: false, sideHi: false, startLo: false, startHi: false };
  for (let k = 0; k < n; k++) {
    const boxes = drawInPaintBoxes(shape, rng);
    counts[boxes.length]++;
    checkBoxes(boxes, shape, inPaintSides);
    for (const { start, size } of boxes) {
      if (size[0] === 26) extremes.sideLo = true;
      if (size[0] === 53) extremes.sideHi = true;
      if (start[0] === 3) extremes.startLo = true;
      if (start[0] === 160 - size[0] - 3) extremes.startHi = true;
    }
  }
  // P(k boxes) = 0.95^k · 0.05 for k < 5, 0.95^5 for k = 5
  counts.forEach((c, k) => assertRate(c, n, k < 5 ? 0.95 ** k * 0.05 : 0.95 ** 5, `${k} in-painting boxes`));
  assert(Object.values(extremes).every(Boolean), JSON.stringify(extremes));
});

Deno.test("out-painting boxes: one, then up to 4 more while U < 0.95, sides dim − {⌊3dim/7⌋ … ⌊4dim/7⌋}", () => {
  const shape: Shape = [160, 160, 64];
  assertEquals(outPaintSides(160), [69, 92]);
  const rng = createRng(32, "outpaint");
  const n = 6000;
  const counts = new Array(6).fill(0);
  const sides = new Set<number>();
  for (let k = 0; k < n; k++) {
    const boxes = drawOutPaintBoxes(shape, rng);
    counts[boxes.length]++;
    checkBoxes(boxes, shape, outPaintSides);
    boxes.forEach((b) => sides.add(b.size[1]));
  }
  assertEquals(counts[0], 0, "always at least one box");
  // 1 + min(4, geometric): P(1 + k) = 0.95^k · 0.05 for k < 4, 0.95^4 for k = 4
  for (let k = 0; k <= 4; k++) {
    assertRate(counts[1 + k], n, k < 4 ? 0.95 ** k * 0.05 : 0.95 ** 4, `${1 + k} out-painting boxes`);
  }
  assertEquals(sides.size, 92 - 69 + 1, "every side drawn");
});

Deno.test("painting fills in-painted boxes with U[0, 1) noise; out-painting keeps the boxes and fills the rest with noise", () => {
  const shape: Shape = [20, 24, 18];
  const image = codedImage(shape).map((v) => v + 10); // ≥ 10: never noise
  const boxes: PaintBox[] = [{ start: [3, 4, 5], size: [5, 6, 7] }, { start: [10, 3, 3], size: [4, 4, 4] }];
  const inside = (i: number) => {
    const p = [Math.floor(i / 432), Math.floor(i / 18) % 24, i % 18];
    return boxes.some((b) => p.every((x, a) => x >= b.start[a] && x < b.start[a] + b.size[a]));
  };
  const painted = image.slice();
  inPaint(painted, shape, boxes, createRng(1));
  const out = outPaint(image, shape, boxes, createRng(2));
  for (let i = 0; i < image.length; i++) {
    if (inside(i)) {
      assert(painted[i] >= 0 && painted[i] < 1, "in-painted: noise");
      assertEquals(out[i], image[i], "out-painting keeps the box");
    } else {
      assertEquals(painted[i], image[i], "in-painting leaves the rest");
      assert(out[i] >= 0 && out[i] < 1, "out-painted: noise");
    }
  }
  // in- vs out-painting: 0.2 / 0.8
  const rng = createRng(3, "paint");
  let ins = 0;
  for (let k = 0; k < 2000; k++) {
    if (paint(new Float32Array(16 ** 3), [16, 16, 16], rng.fork(k)).kind === "in") ins++;
  }
  assertRate(ins, 2000, 0.2, "in-painting");
});

Deno.test("painting keeps every box inside patches too small for nnssl's 3-voxel margin", () => {
  for (let dim = 1; dim <= 16; dim++) {
    const shape: Shape = [dim, 16, dim];
    for (let k = 0; k < 50; k++) {
      const rng = createRng(dim, k);
      checkBoxes(drawInPaintBoxes(shape, rng), shape, inPaintSides);
      checkBoxes(drawOutPaintBoxes(shape, rng), shape, outPaintSides);
    }
  }
  assertEquals(startRange(16, 8), [3, 5], "nnssl's range where it fits");
  assertEquals(startRange(8, 4), [2, 2], "the margin shrinks where it does not");
});

// --- the pipeline -----------------------------------------------------------------------------------------

function smoothImage(shape: Shape, seed: number): Float32Array {
  const r = createRng(seed);
  const [a, b, c] = [r.uniform(0.1, 0.5), r.uniform(0.1, 0.5), r.uniform(0.1, 0.5)];
  return Float32Array.from(
    { length: shape[0] * shape[1] * shape[2] },
    (_, i) =>
      Math.sin(a * Math.floor(i / (shape[1] * shape[2]))) +
      Math.cos(b * (Math.floor(i / shape[2]) % shape[1])) +
      0.3 * Math.sin(c * (i % shape[2])),
  );
}

/** The transform's fork of the pipeline, past its "does it run" draw. */
function forkPast(rng: Rng, name: string): Rng {
  const fork = rng.fork(name);
  fork.next();
  return fork;
}

Deno.test("genesisPair() is deterministic per key, and is flip → shuffle → intensity → painting in that order", () => {
  const shape: Shape = [24, 20, 28];
  const image = smoothImage(shape, 1);
  const a = genesisPair(image.slice(), shape, createRng(5, 1, 0));
  const b = genesisPair(image.slice(), shape, createRng(5, 1, 0));
  assertEquals(a.input, b.input);
  assertEquals(a.target, b.target);
  const c = genesisPair(image.slice(), shape, createRng(5, 1, 1));
  assert(c.input.some((v, i) => v !== a.input[i]), "another key, another pair");

  // a key under which every transform runs, composed by hand in the listed order
  let key = 0;
  let pair = genesisPair(image.slice(), shape, createRng(7, key));
  while (!(pair.trace.flips.length > 0 && pair.trace.shuffled && pair.trace.curve && pair.trace.painting)) {
    pair = genesisPair(image.slice(), shape, createRng(7, ++key));
  }
  const rng = createRng(7, key);
  const target = image.slice();
  applyFlips(target, shape, drawFlips(rng.fork("flip")));
  assertEquals(pair.target, target, "the target is the clean patch, flipped");
  const shuffled = localPixelShuffle(target, shape, forkPast(rng, "shuffle"));
  const mapped = shuffled.slice();
  nonlinearIntensity(mapped, forkPast(rng, "intensity"));
  assertEquals(pair.input, paint(mapped, shape, forkPast(rng, "paint")).data, "listed order");
  // painting before the intensity curve gives another input (the noise goes through the curve): the
  // comparison above can tell the orders apart
  const paintedFirst = paint(shuffled.slice(), shape, forkPast(rng, "paint")).data;
  nonlinearIntensity(paintedFirst, forkPast(rng, "intensity"));
  assert(paintedFirst.some((v, i) => v !== pair.input[i]), "the order matters");
});

Deno.test("genesisPair(): each transform runs with nnssl's probability, and with every rate 0 the input is the flipped target", () => {
  const shape: Shape = [12, 12, 12];
  const image = smoothImage(shape, 2);
  const n = 3000;
  let shuffled = 0, curved = 0, painted = 0, inpainted = 0, flipped = 0;
  for (let k = 0; k < n; k++) {
    const { trace } = genesisPair(image.slice(), shape, createRng(13, k), {
      shuffleWindows: 4,
      curveSamples: 100,
    });
    if (trace.shuffled) shuffled++;
    if (trace.curve) curved++;
    if (trace.painting) painted++;
    if (trace.painting?.kind === "in") inpainted++;
    if (trace.flips.length > 0) flipped++;
  }
  assertRate(flipped, n, 0.4, "at least one flip");
  assertRate(shuffled, n, 0.5, "local shuffle");
  assertRate(curved, n, 0.9, "intensity curve");
  assertRate(painted, n, 0.9, "painting");
  assertRate(inpainted, painted, 0.2, "in-painting among paintings");
  const none = { localShuffleRate: 0, nonlinearRate: 0, paintRate: 0 };
  for (let k = 0; k < 20; k++) {
    const pair = genesisPair(image.slice(), shape, createRng(14, k), none);
    assertEquals(pair.input, pair.target);
  }
});

Deno.test("minMaxRescale() maps a patch onto [0, 1] by its own extremes; a constant patch becomes 0", () => {
  const x = Float32Array.of(-2, 0, 3, 1.5);
  assertEquals(minMaxRescale(x), { min: -2, max: 3 });
  assertEquals(Array.from(x), [0, 0.4, 1, 0.7].map(Math.fround));
  const flat = Float32Array.of(4, 4, 4);
  minMaxRescale(flat);
  assertEquals(Array.from(flat), [0, 0, 0]);
});

// --- the sample hook --------------------------------------------------------------------------------------

async function hookRunner(config: Record<string, unknown>, masks: ("deface")[] = []) {
  const source = await resolveSource({ kind: "synthetic", count: 3, shape: [24, 24, 24], seed: 2 });
  return await createSampleRunner({
    source,
    spec: { patch: [16, 16, 16], augmentation: resolveAugmentation("none"), anatomyProbability: 0, masks },
    seed: 3,
    training: false, // validation batches are transformed too
    hookModule: new URL("../../../plugins/ssl/models-genesis/mod.ts", import.meta.url).href,
    hookConfig: config,
  });
}

Deno.test("the sample hook returns the transformed image and the clean patch flipped alike, f32 [1, D, H, W] each", async () => {
  const plain = await hookRunner({ flipRate: 0, localShuffleRate: 0, nonlinearRate: 0, paintRate: 0 });
  const nnssl = await hookRunner({});
  const minmax = await hookRunner({ range: "minmax" });
  try {
    let flippedSeen = 0;
    for (let step = 0; step < 8; step++) {
      const task = { step, index: 0, item: step % 3 };
      const clean = (await plain.run(task)).result.arrays;
      assertEquals(clean.image.data, clean.target.data, "no transform: input = target");
      const { image, target } = (await nnssl.run(task)).result.arrays;
      assertEquals([image.dtype, ...image.shape, target.dtype, ...target.shape], [
        "f32",
        1,
        16,
        16,
        16,
        "f32",
        1,
        16,
        16,
        16,
      ]);
      // the target is the standard patch, flipped along D and/or H (never W)
      const matches = [[false, false], [true, false], [false, true], [true, true]].filter(([fd, fh]) => {
        const flipped = (clean.target.data as Float32Array).slice();
        applyFlips(flipped, [16, 16, 16], [...(fd ? [1] : []), ...(fh ? [2] : [])]);
        return flipped.every((v, i) => v === target.data[i]);
      });
      assert(matches.length >= 1, `step ${step}: the target is a D/H flip of the patch`);
      if (!(matches[0][0] === false && matches[0][1] === false)) flippedSeen++;
      assert(target.data.some((v) => v < 0), "nnssl range: the target stays z-scored");
      const scaled = (await minmax.run(task)).result.arrays;
      const t = scaled.target.data as Float32Array;
      assertEquals([Math.min(...t), Math.max(...t)], [0, 1], "minmax: the target spans [0, 1]");
    }
    assert(flippedSeen > 0, "some targets are flipped");
  } finally {
    plain.close();
    nnssl.close();
    minmax.close();
  }
});

// --- the loss ---------------------------------------------------------------------------------------------

function mseRef(p: ArrayLike<number>, t: ArrayLike<number>, keep?: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < p.length; i++) {
    const w = keep ? keep[i] : 1;
    num += w * (p[i] - t[i]) ** 2;
    den += w;
  }
  return num / den;
}

gpuTest("genesisLoss() is the whole-volume MSE of a float64 reference, gradients included", async () => {
  const shape = [2, 1, 3, 4, 5];
  await checkOp({
    name: "genesisLoss",
    inputs: [{ shape }, { shape }],
    gpu: ([p, t]) => genesisLoss(p, t),
    ref: ([p, t]) => ({ shape: [], data: Float64Array.of(mseRef(p.data, t.data)) }),
    rtol: 1e-5,
    atol: 1e-6,
  });
  const keep = Float32Array.from({ length: 120 }, (_, i) => (i % 3 === 0 ? 0 : 1));
  await checkOp({
    name: "genesisLoss with a keep mask",
    inputs: [{ shape }, { shape }],
    gpu: ([p, t]) => genesisLoss(p, t, tensor(keep, [2, 1, 3, 4, 5])),
    ref: ([p, t]) => ({ shape: [], data: Float64Array.of(mseRef(p.data, t.data, keep)) }),
    rtol: 1e-5,
    atol: 1e-6,
  });
});

Deno.test("with excludeDefaced the hook ships the deface mask, flipped like the target", async () => {
  const source = await resolveSource({
    kind: "synthetic",
    count: 2,
    shape: [24, 24, 24],
    seed: 5,
    deface: true,
  });
  const init = {
    source,
    spec: {
      patch: [16, 16, 16] as Shape,
      augmentation: resolveAugmentation("none"),
      anatomyProbability: 0,
      masks: ["deface" as const],
    },
    seed: 6,
    training: true,
    hookModule: new URL("../../../plugins/ssl/models-genesis/mod.ts", import.meta.url).href,
  };
  const plain = await createSampleRunner({ ...init, hookModule: undefined });
  const runner = await createSampleRunner({ ...init, hookConfig: { excludeDefaced: true } });
  try {
    let flipped = 0;
    for (let step = 0; step < 12; step++) {
      const task = { step, index: 0, item: step % 2 };
      const standard = (await plain.run(task)).result.arrays;
      const { target, deface } = (await runner.run(task)).result.arrays;
      assertEquals([deface.dtype, ...deface.shape], ["u8", 1, 16, 16, 16]);
      // find the flip that made the target, and check the mask got the same one
      const flips = [[], [1], [2], [1, 2]].find((f) => {
        const x = (standard.image.data as Float32Array).slice();
        applyFlips(x, [16, 16, 16], f);
        return x.every((v, i) => v === target.data[i]);
      });
      assert(flips, `step ${step}: the target is a flip of the standard patch`);
      const mask = (standard.deface.data as Uint8Array).slice();
      applyFlips(mask, [16, 16, 16], flips);
      assertEquals(deface.data, mask, `step ${step}: the mask is flipped like the target`);
      if (flips.length > 0 && mask.some((v, i) => v !== standard.deface.data[i])) flipped++;
    }
    assert(flipped > 0, "some masks were flipped (and differ from the unflipped ones)");
  } finally {
    plain.close();
    runner.close();
  }
});

/** An identity network with one weight (prediction = w · input). */
class Scale extends Module implements Network {
  readonly family = "cnn" as const;
  readonly encoderOnly = false;
  readonly featureChannels = [1];
  constructor() {
    super();
    this.registerParameter("w", tensor([1], [1]));
  }
  forward(x: Tensor): Tensor {
    return mul(x, this.p("w"));
  }
  encode(x: Tensor): Tensor[] {
    return [x];
  }
  adaptationPlan(): ReturnType<Network["adaptationPlan"]> {
    throw new Error("not needed");
  }
}

gpuTest(
  "the method's loss is the network's output against the target (the defaced voxels left out on request)",
  async () => {
    const n = 2 * 4 * 4 * 4;
    const r = createRng(3);
    const image = Float32Array.from({ length: n }, () => r.normal());
    const target = Float32Array.from({ length: n }, () => r.normal());
    const deface = Uint8Array.from({ length: n }, (_, i) => (i % 5 === 0 ? 1 : 0));
    const net = scope(() => new Scale());
    for (const excludeDefaced of [false, true]) {
      const instance = genesis.build({
        network: net,
        config: { ...genesis.config.parse({}), excludeDefaced },
        rng: new Generator(0),
        patchSize: [4, 4, 4],
        createNetwork: () => {
          throw new Error("not needed");
        },
      });
      const loss = scope(() => {
        const batch = uploadBatch(
          {
            arrays: {
              image: sampleArray(image, [2, 1, 4, 4, 4]),
              target: sampleArray(target, [2, 1, 4, 4, 4]),
              deface: sampleArray(deface, [2, 1, 4, 4, 4]),
            },
          },
          getGpu(),
          "models-genesis",
        );
        return instance.loss(batch, { step: 0, epoch: 0, training: true, rng: new Generator(1) }).loss;
      });
      const expected = mseRef(image, target, excludeDefaced ? Array.from(deface, (d) => 1 - d) : undefined);
      const got = await loss.item();
      assert(
        Math.abs(got - expected) < 1e-5 * expected,
        `excludeDefaced ${excludeDefaced}: ${got} vs ${expected}`,
      );
      loss.dispose();
    }
    net.dispose();
  },
);

// --- end to end -------------------------------------------------------------------------------------------

/**
 * A short run on synthetic volumes: 2 epochs of 4 steps, 16³ patches. ResEnc-tiny keeps nnssl's SGD at
 * batch 1; Primus-tiny gets AdamW 3e-3 at a constant rate (the ViT default warms up over 50 epochs, so a
 * two-epoch run would barely move).
 */
function genesisRun(out: string, arch: "resenc-tiny" | "primus-tiny"): Record<string, unknown> {
  return {
    arch,
    method: "models-genesis",
    data: "synthetic",
    synthetic: { volumes: 4, size: [24, 24, 24] },
    patch: [16, 16, 16],
    batch: arch === "resenc-tiny" ? 1 : 2,
    epochs: 2,
    stepsPerEpoch: 4,
    logEvery: 1,
    validationBatches: 2,
    workers: 1,
    seed: 1,
    out,
    ...(arch === "primus-tiny"
      ? { optimizer: { name: "adamw", lr: 3e-3, weightDecay: 0 }, schedule: { name: "constant" } }
      : {}),
  };
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

for (const arch of ["resenc-tiny", "primus-tiny"] as const) {
  Deno.test(`voxssl pretrain --method models-genesis on ${arch}: the loss falls, and a stopped run resumes to the same curve`, async () => {
    const dir = await Deno.makeTempDir();
    const full = `${dir}/full`;
    const { code, text } = await voxssl([
      "pretrain",
      "--config",
      await writeConfig(dir, genesisRun(full, arch)),
    ]);
    assertEquals(code, 0, text);
    const metrics = await readMetrics(`${full}/metrics.jsonl`);
    const train = metrics.filter((m) => m.kind === "train").map((m) => m.loss);
    const val = metrics.filter((m) => m.kind === "validation").map((m) => m.loss);
    assertEquals([train.length, val.length], [8, 2]);
    // single steps are noisy (patches and transforms differ); epochs' means and the validation batches
    // (the same ones after every epoch) are not
    const shown = `train ${train.map((l) => l.toFixed(3)).join(" ")}, validation ${
      val.map((l) => l.toFixed(3))
    }`;
    assert(mean(train.slice(4)) < 0.9 * mean(train.slice(0, 4)), `the training loss falls: ${shown}`);
    assert(val[1] < 0.97 * val[0], `the validation loss falls: ${shown}`);
    const ckpt = await loadCheckpoint(`${full}/checkpoints/final.safetensors`);
    assertEquals(ckpt.meta.plugins.method, "models-genesis@1.0.0");

    await Deno.mkdir(`${dir}/c`);
    const cut = `${dir}/cut`;
    const run = spawnVoxssl(["pretrain", "--config", await writeConfig(`${dir}/c`, genesisRun(cut, arch))]);
    await run.waitFor("step 5/8");
    run.child.kill("SIGTERM");
    const rest = await run.rest();
    const status = await run.child.status;
    await run.child.stderr.cancel();
    assertEquals(status.code, 0, rest);
    assert(rest.includes("stopped by SIGTERM"), rest);
    const resumed = await voxssl(["pretrain", "--resume", cut]);
    assertEquals(resumed.code, 0, resumed.text);
    const curve = async (out: string) =>
      (await readMetrics(`${out}/metrics.jsonl`)).map((m) => `${m.kind}@${m.step}:${m.loss}`);
    assertEquals(await curve(cut), await curve(full), "the resumed run's curve is the uninterrupted one");
    await Deno.remove(dir, { recursive: true });
  });
}
