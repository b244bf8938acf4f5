import { gaussianBlur } from "../../core/data/augment/blur.ts";
import { adjustContrast, adjustGamma, scaleBrightness } from "../../core/data/augment/intensity.ts";
import { simulateLowResolution } from "../../core/data/augment/lowres.ts";
import { mirrorInPlace } from "../../core/data/augment/mirror.ts";
import { rot90 } from "../../core/data/augment/rot90.ts";
import { spatialMatrix, type SpatialPadding, warpPatch } from "../../core/data/augment/spatial.ts";
import { meanStd } from "../../core/data/normalize.ts";
import { resampleTaps } from "../../core/data/resample.ts";
import type { Shape3 } from "../../core/data/volume.ts";
import type { Gpu } from "../../core/gpu/mod.ts";
import { empty, type Tensor, tensor } from "../../core/tensor/mod.ts";
import {
  packLowresTaps,
  runAugmentBlurAxis,
  runAugmentIntensity,
  runAugmentLowresAxis,
  runAugmentMirror,
  runAugmentNoise,
  runAugmentSpatial,
  runAugmentStats,
  statsWorkWords,
} from "../../kernels/augment.ts";
import { assert, assertEquals } from "../assert.ts";
import { assertClose, gpuTest, randomArray } from "../helpers.ts";
import { coordinateError, maxAbs, philoxNoise, spatialTolerance, U } from "./augment_ref.ts";

const f32 = (x: ArrayLike<number>) => Float32Array.from(x);
const upload = (gpu: Gpu, x: ArrayLike<number>, dtype: "f32" | "u8" = "f32") =>
  tensor(dtype === "f32" ? f32(x) : Uint8Array.from(x), [x.length], { gpu, dtype });
const free = (...ts: Tensor[]) => ts.forEach((t) => t.dispose());

const SRC: Shape3 = [11, 13, 12];
const PATCH: Shape3 = [8, 6, 10];
const DRAWS = [
  { angles: [0.31, -0.22, 0.45] as [number, number, number], scale: 1 },
  { angles: [-0.5, 0.12, 0.2] as [number, number, number], scale: 1.3 },
  { angles: [0, 0, 0] as [number, number, number], scale: 0.7 },
];

for (const order of ["linear", "cubic"] as const) {
  for (const padding of ["zero", "border"] as SpatialPadding[]) {
    gpuTest(
      `augment spatial (${order}, ${padding}) matches the float64 warpPatch on random volumes`,
      async (gpu) => {
        const src = Float64Array.from(f32(randomArray(SRC[0] * SRC[1] * SRC[2], 11, -1, 1)));
        const x = upload(gpu, src);
        const n = PATCH[0] * PATCH[1] * PATCH[2];
        // two samples in one output tensor: the second at an offset, as in a batch
        const out = empty([2 * n], { gpu });
        for (const [k, draw] of DRAWS.entries()) {
          // the centre off the middle, so that the patch reaches outside the source (padding matters)
          const centre = [3.2 + k, 7.9, 6.4 - k];
          const matrix = spatialMatrix(draw);
          runAugmentSpatial(gpu, "image", order, padding, x.binding, out.binding, {
            matrix,
            centre,
            srcShape: SRC,
            srcBase: 0,
            patch: PATCH,
            dstBase: n,
          });
          const got = (await out.toFloat64()).subarray(n);
          const expected = warpPatch(src, SRC, centre, matrix, PATCH, order, padding);
          const atol = spatialTolerance(order, src, coordinateError(matrix, centre, PATCH));
          assert(atol < 1e-4, `tolerance ${atol} stays far below the values' scale`);
          assertClose(got, expected, { rtol: 0, atol, label: `${order}/${padding} draw ${k}` });
        }
        free(x, out);
      },
    );
  }
}

gpuTest("augment spatial (nearest) moves u8 masks and images like warpPatch", async (gpu) => {
  const mask = Uint8Array.from(randomArray(SRC[0] * SRC[1] * SRC[2], 5, 0, 4), Math.floor);
  const n = PATCH[0] * PATCH[1] * PATCH[2];
  const x = upload(gpu, mask, "u8");
  const out = empty([n + 4], { gpu, dtype: "u8" });
  for (const padding of ["zero", "border"] as SpatialPadding[]) {
    for (const [k, draw] of DRAWS.entries()) {
      const centre = [4.1, 6.2 + k, 5.7];
      const matrix = spatialMatrix(draw);
      runAugmentSpatial(gpu, "mask", "nearest", padding, x.binding, out.binding, {
        matrix,
        centre,
        srcShape: SRC,
        srcBase: 0,
        patch: PATCH,
        dstBase: 4,
      });
      const got = ((await out.toArray()) as Uint8Array).subarray(4);
      const expected = warpPatch(mask, SRC, centre, matrix, PATCH, "nearest", padding);
      // a voxel may round the other way only where its coordinate lies within the f32 error of k + ½
      const err = coordinateError(matrix, centre, PATCH);
      let differ = 0;
      for (let i = 0; i < n; i++) {
        if (got[i] === expected[i]) continue;
        const v = [Math.floor(i / (PATCH[1] * PATCH[2])), Math.floor(i / PATCH[2]) % PATCH[1], i % PATCH[2]];
        const s = [0, 1, 2].map((a) =>
          centre[a] + [0, 1, 2].reduce((acc, j) => acc + matrix[3 * a + j] * (v[j] - (PATCH[j] - 1) / 2), 0)
        );
        const tie = s.some((c, a) => Math.abs(c - Math.floor(c) - 0.5) <= err[a]);
        assert(tie, `${padding} draw ${k}: voxel ${i} is ${got[i]}, expected ${expected[i]} (source ${s})`);
        differ++;
      }
      assert(differ <= 2, `${differ} voxels at rounding ties`);
    }
  }
  free(x, out);
});

gpuTest("augment mirror flips images and u8 masks like mirrorInPlace", async (gpu) => {
  const shape: Shape3 = [3, 4, 5];
  const n = 60;
  const img = f32(randomArray(n, 3));
  const mask = Uint8Array.from(randomArray(n, 4, 0, 200), Math.floor);
  const xi = upload(gpu, img), xm = upload(gpu, mask, "u8");
  const oi = empty([n + 4], { gpu }), om = empty([n + 4], { gpu, dtype: "u8" });
  for (const axes of [[true, false, false], [false, true, true], [true, true, true]]) {
    runAugmentMirror(gpu, "image", xi.binding, oi.binding, shape, axes, 0, 4);
    runAugmentMirror(gpu, "mask", xm.binding, om.binding, shape, axes, 0, 4);
    const ei = img.slice(), em = mask.slice();
    mirrorInPlace(ei, shape, axes);
    mirrorInPlace(em, shape, axes);
    assertEquals([...(await oi.toArray()).subarray(4)], [...ei]);
    assertEquals([...((await om.toArray()) as Uint8Array).subarray(4)], [...em]);
  }
  free(xi, xm, oi, om);
});

gpuTest("augment mirror with quarter turns matches mirrorInPlace then rot90", async (gpu) => {
  const shape: Shape3 = [4, 4, 3];
  const n = 48;
  const img = f32(randomArray(n, 5));
  const mask = Uint8Array.from(randomArray(n, 6, 0, 200), Math.floor);
  const xi = upload(gpu, img), xm = upload(gpu, mask, "u8");
  const oi = empty([n], { gpu }), om = empty([n], { gpu, dtype: "u8" });
  const cases: [boolean[], [number, number], number][] = [
    [[false, false, false], [0, 1], 1],
    [[true, false, true], [0, 1], 3],
    [[false, true, false], [1, 0], 2],
    [[true, true, false], [0, 2], 2], // even turns on unequal sizes
    [[false, false, true], [1, 0], -1],
  ];
  for (const [axes, plane, turns] of cases) {
    const turn = { axes: plane, turns };
    runAugmentMirror(gpu, "image", xi.binding, oi.binding, shape, axes, 0, 0, turn);
    runAugmentMirror(gpu, "mask", xm.binding, om.binding, shape, axes, 0, 0, turn);
    const ei = img.slice(), em = mask.slice();
    mirrorInPlace(ei, shape, axes);
    mirrorInPlace(em, shape, axes);
    const label = `flip ${axes}, ${turns} turns in [${plane}]`;
    assertEquals([...await oi.toArray()], [...rot90(ei, shape, plane, turns)], label);
    assertEquals([...(await om.toArray()) as Uint8Array], [...rot90(em, shape, plane, turns)], label);
  }
  let threw = false;
  try {
    runAugmentMirror(gpu, "image", xi.binding, oi.binding, shape, [false, false, false], 0, 0, {
      axes: [0, 2],
      turns: 1,
    });
  } catch (error) {
    threw = /equal sizes on axes 0 and 2/.test((error as Error).message);
  }
  assert(threw, "an odd turn on unequal sizes is refused");
  free(xi, xm, oi, om);
});

gpuTest("augment noise adds Philox normals keyed by (seed, step, sample)", async (gpu) => {
  const n = 1003;
  const base = randomArray(n + 5, 9);
  const x = upload(gpu, base);
  const key = { seed: 2 ** 33 + 17, step: 41, sample: 3 };
  runAugmentNoise(gpu, x.binding, 5, n, 0.25, key);
  const got = await x.toFloat64();
  const z = philoxNoise(n, key.seed, key.step, key.sample);
  const expected = Float64Array.from(
    base,
    (v, i) => (i < 5 ? Math.fround(v) : Math.fround(v) + 0.25 * z[i - 5]),
  );
  // Box–Muller in f32: log, sqrt and cos/sin with a few ulp each on |z| ≤ 6; then the add
  assertClose(got, expected, { rtol: 0, atol: 0.25 * 6 * 64 * U + 2 * U * 2, label: "noise" });
  // another sample of the same step draws other numbers; the same key draws the same again
  const y = upload(gpu, new Float64Array(n));
  runAugmentNoise(gpu, y.binding, 0, n, 1, { ...key, sample: 4 });
  const other = await y.toFloat64();
  const again = upload(gpu, new Float64Array(n));
  runAugmentNoise(gpu, again.binding, 0, n, 1, key);
  const same = await again.toFloat64();
  assertClose(same, z, { rtol: 0, atol: 6 * 64 * U, label: "same key" });
  assert(other.filter((v, i) => Math.abs(v - z[i]) < 1e-3).length < 5, "another sample, other numbers");
  // another view of the same sample: its own stream, as the float64 reference says
  const w = upload(gpu, new Float64Array(n));
  runAugmentNoise(gpu, w.binding, 0, n, 1, { ...key, view: 2 });
  const view = await w.toFloat64();
  assertClose(view, philoxNoise(n, key.seed, key.step, key.sample, 2), {
    rtol: 0,
    atol: 6 * 64 * U,
    label: "view 2",
  });
  assert(view.filter((v, i) => Math.abs(v - z[i]) < 1e-3).length < 5, "another view, other numbers");
  w.dispose();
  const m = same.reduce((s, v) => s + v, 0) / n;
  const sd = Math.sqrt(same.reduce((s, v) => s + (v - m) ** 2, 0) / n);
  assert(Math.abs(m) < 0.15 && Math.abs(sd - 1) < 0.1, `mean ${m}, std ${sd}`);
  free(x, y, again);
});

gpuTest("augment blur (three separable passes) matches gaussianBlur", async (gpu) => {
  const shape: Shape3 = [9, 10, 11];
  const n = 990;
  const img = f32(randomArray(n, 21, -2, 2));
  const a = upload(gpu, img), b = empty([n], { gpu });
  const sigma = [0.6, 1.3, 0.9];
  runAugmentBlurAxis(gpu, a.binding, b.binding, shape, 0, sigma[0], 0, 0);
  runAugmentBlurAxis(gpu, b.binding, a.binding, shape, 1, sigma[1], 0, 0);
  runAugmentBlurAxis(gpu, a.binding, b.binding, shape, 2, sigma[2], 0, 0);
  const expected = gaussianBlur(img, shape, sigma);
  // per pass: ≤ 2⌈4σ⌉+1 weights (exp: a few u each, normalised) summed; Σ|k| = 1, so ≤ (taps + 8)·u·max|x|
  const taps = sigma.reduce((s, v) => s + 2 * Math.ceil(4 * v) + 1 + 8, 0);
  assertClose(await b.toFloat64(), expected, { rtol: 0, atol: taps * U * maxAbs(img), label: "blur" });
  free(a, b);
});

gpuTest("augment statistics and intensity ops match the CPU transforms", async (gpu) => {
  const n = 5000; // > 16·256: several stage-1 workgroups
  const img = f32(randomArray(n, 31, -1.5, 2.5));
  const slots = 2;
  const work = empty([statsWorkWords(slots)], { gpu });
  const x = upload(gpu, img);
  runAugmentStats(gpu, x.binding, work.binding, 0, n, 1, slots);
  const stats = (await work.toFloat64()).subarray(8, 12);
  const ms = meanStd(img);
  const lo = Math.min(...img), hi = Math.max(...img);
  // f32 sums of n terms over a two-level tree: relative error ≤ (n/(256·groups) + 16)·u of Σ|x|
  const sumTol = (n / 256 + 16) * U * maxAbs(img);
  assertClose(stats, [ms.mean, ms.std, lo, hi], { rtol: 0, atol: 4 * sumTol, label: "stats" });
  const cases: [string, (d: Float32Array) => void, (t: Tensor) => void][] = [
    [
      "brightness",
      (d) => scaleBrightness(d, 1.21),
      (t) => runAugmentIntensity(gpu, t.binding, work.binding, 0, n, { op: "brightness", factor: 1.21 }),
    ],
    ["contrast", (d) => adjustContrast(d, 0.8), (t) => {
      runAugmentStats(gpu, t.binding, work.binding, 0, n, 0, slots);
      runAugmentIntensity(gpu, t.binding, work.binding, 0, n, { op: "contrast", factor: 0.8, slot: 0 });
    }],
    ...[false, true].flatMap((invert) =>
      [0.7, 1.4].map((gamma): [string, (d: Float32Array) => void, (t: Tensor) => void] => [
        `gamma ${gamma}${invert ? " inverted" : ""}`,
        (d) => adjustGamma(d, gamma, invert),
        (t) => {
          runAugmentStats(gpu, t.binding, work.binding, 0, n, 0, slots);
          runAugmentIntensity(gpu, t.binding, work.binding, 0, n, { op: "gammaPow", gamma, invert, slot: 0 });
          runAugmentStats(gpu, t.binding, work.binding, 0, n, 1, slots);
          runAugmentIntensity(gpu, t.binding, work.binding, 0, n, {
            op: "gammaRestore",
            invert,
            slotBefore: 0,
            slotAfter: 1,
          });
        },
      ])
    ),
  ];
  for (const [name, cpu, run] of cases) {
    const t = upload(gpu, img);
    run(t);
    const expected = img.slice();
    cpu(expected);
    const got = await t.toFloat64();
    const gamma = /gamma ([\d.]+)/.exec(name);
    if (!gamma) {
      // brightness: one product; contrast: the mean's error moves every voxel by (1 − f)·Δmean
      assertClose(got, expected, { rtol: 4 * U, atol: sumTol, label: name });
    } else {
      const bound = gammaBound(img, Number(gamma[1]), name.includes("inverted"), sumTol);
      for (let i = 0; i < n; i++) {
        const err = Math.abs(got[i] - expected[i]);
        assert(
          err <= bound[i],
          `${name}: voxel ${i} is ${got[i]}, expected ${expected[i]} (bound ${bound[i]})`,
        );
      }
    }
    t.dispose();
  }
  free(work, x);
});

/**
 * Per-voxel error bound of the GPU gamma against the CPU's: u = (s·x − lo)/r carries Δu ≤ 3u·(|x| + |lo|)/r,
 * pow a relative error ≤ 64u (WGSL's exp2(γ·log2 u) bound for |γ·log2 u| ≤ 30), and Δu moves u^γ by at
 * most (u + Δu)^γ − (u − Δu)^γ; the restore step (y − m_y)·k + m' adds the statistics' errors (sumTol on each
 * mean, relative 2·sumTol/std on k) and 4u of rounding.
 */
function gammaBound(x: Float32Array, gamma: number, invert: boolean, sumTol: number): Float64Array {
  const s = invert ? -1 : 1;
  const v = Float64Array.from(x, (a) => s * a);
  const lo = Math.min(...v), hi = Math.max(...v);
  const r = hi - lo + 1e-7;
  const y = v.map((a) => Math.pow((a - lo) / r, gamma) * r + lo);
  const before = meanStd(v), after = meanStd(y);
  const k = before.std / (after.std + 1e-8);
  const dk = k * 2 * sumTol * (1 / before.std + 1 / after.std);
  return v.map((a, i) => {
    const u = (a - lo) / r;
    const du = 3 * U * (Math.abs(a) + Math.abs(lo)) / r;
    const dpow = u === 0 ? 0 : 64 * U * u ** gamma + (u + du) ** gamma - Math.max(u - du, 0) ** gamma;
    const dy = r * dpow + 2 * U * Math.abs(y[i]);
    return k * (dy + sumTol) + Math.abs(y[i] - after.mean) * dk + sumTol + 4 * U * Math.abs(a) * (1 + k);
  });
}

gpuTest("augment low resolution matches simulateLowResolution", async (gpu) => {
  const shape: Shape3 = [10, 12, 9];
  const n = 1080;
  const img = f32(randomArray(n, 51, -1, 1));
  for (const zoom of [0.5, 0.63]) {
    const small = shape.map((s) => Math.max(1, Math.round(s * zoom)));
    const axes = [0, 1, 2].map((a) => {
      // the host composes nearest (full → small) then cubic (small → full) per axis
      const down = resampleTaps(shape[a], small[a], "nearest");
      const up = resampleTaps(small[a], shape[a], "cubic");
      return { index: Int32Array.from(up.index, (i) => down.index[i]), weight: up.weight };
    });
    const words = packLowresTaps(axes);
    const table = tensor(words, [words.length], { gpu, dtype: "u32" });
    const x = upload(gpu, img), out = empty([n], { gpu });
    // three axes, ping-pong: x → out → x → out
    runAugmentLowresAxis(gpu, x.binding, table.binding, out.binding, shape, 0, 0, 0, 0);
    runAugmentLowresAxis(gpu, out.binding, table.binding, x.binding, shape, 1, 0, 0, 0);
    runAugmentLowresAxis(gpu, x.binding, table.binding, out.binding, shape, 2, 0, 0, 0);
    const expected = simulateLowResolution(img, shape, zoom);
    // three f32-stored passes of 4 taps on each side (Σ|w| ≤ 1.25 per axis): ≤ 2·3·(4 + 1)·1.25³·u·max|x|
    const atol = 2 * 3 * (4 + 1) * 1.25 ** 3 * U * maxAbs(img);
    assertClose(await out.toFloat64(), expected, { rtol: 0, atol, label: `zoom ${zoom}` });
    free(table, x, out);
  }
});
