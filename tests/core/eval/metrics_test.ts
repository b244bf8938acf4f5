import { join } from "node:path";
import { writeNifti } from "../../../core/data/nifti_write.ts";
import type { Shape3 } from "../../../core/data/volume.ts";
import { evaluateFolders, evaluationCsv, writeEvaluation } from "../../../core/eval/evaluate.ts";
import { classMetrics, hausdorff95, squaredDistanceTransform } from "../../../core/eval/metrics.ts";
import { assert, assertEquals, assertRejects } from "../../assert.ts";
import { DataFileError } from "../../../core/data/errors.ts";
import { seededRandom } from "../../helpers.ts";
import { tempDir } from "../data/fixtures.ts";
import { diagonalAffine } from "./fixtures.ts";

Deno.test("metrics: Dice, IoU, precision, recall on a hand-made case, empty classes NaN", () => {
  const prediction = [0, 1, 1, 1, 0, 2, 0, 0];
  const reference = [0, 1, 1, 0, 0, 0, 4, 0];
  const m = classMetrics(prediction, reference, [1, 2, 3, 4]);
  // class 1: TP 2, FP 1, FN 0
  assertEquals([m[1].dice, m[1].iou, m[1].precision, m[1].recall], [4 / 5, 2 / 3, 2 / 3, 1]);
  assertEquals([m[1].tp, m[1].fp, m[1].fn, m[1].tn], [2, 1, 0, 5]);
  // class 2: predicted once, never in the reference
  assertEquals([m[2].dice, m[2].iou, m[2].precision], [0, 0, 0]);
  assert(Number.isNaN(m[2].recall));
  // class 3: in neither map: everything NaN (nnU-Net's rule)
  assert([m[3].dice, m[3].iou, m[3].precision, m[3].recall].every(Number.isNaN));
  // class 4: missed completely
  assertEquals([m[4].dice, m[4].iou, m[4].recall], [0, 0, 0]);
  assert(Number.isNaN(m[4].precision));
});

function randomBlob(shape: Shape3, seed: number, p = 0.35): Uint8Array {
  const next = seededRandom(seed);
  return Uint8Array.from({ length: shape[0] * shape[1] * shape[2] }, () => (next() < p ? 1 : 0));
}

/** float64 brute force: squared distance from every voxel to the nearest seed. */
function bruteDistance(seeds: Uint8Array, shape: Shape3, spacing: Shape3): Float64Array {
  const [D, H, W] = shape;
  const out = new Float64Array(seeds.length).fill(Infinity);
  const pts: number[][] = [];
  for (let i = 0; i < seeds.length; i++) {
    if (seeds[i]) pts.push([Math.floor(i / (H * W)), Math.floor(i / W) % H, i % W]);
  }
  for (let i = 0; i < seeds.length; i++) {
    const c = [Math.floor(i / (H * W)), Math.floor(i / W) % H, i % W];
    for (const p of pts) {
      const d = ((c[0] - p[0]) * spacing[0]) ** 2 + ((c[1] - p[1]) * spacing[1]) ** 2 +
        ((c[2] - p[2]) * spacing[2]) ** 2;
      if (d < out[i]) out[i] = d;
    }
  }
  void D;
  return out;
}

/** Brute-force HD95: border-or-6-neighbour surfaces, all pairwise distances, numpy-style percentile. */
function bruteHd95(a: Uint8Array, b: Uint8Array, shape: Shape3, spacing: Shape3): number {
  const [D, H, W] = shape;
  const at = (m: Uint8Array, d: number, h: number, w: number) =>
    d < 0 || h < 0 || w < 0 || d >= D || h >= H || w >= W ? 0 : m[(d * H + h) * W + w];
  const surface = (m: Uint8Array) => {
    const pts: number[][] = [];
    for (let d = 0; d < D; d++) {
      for (let h = 0; h < H; h++) {
        for (let w = 0; w < W; w++) {
          if (!at(m, d, h, w)) continue;
          const n = [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]];
          if (n.some(([x, y, z]) => !at(m, d + x, h + y, w + z))) pts.push([d, h, w]);
        }
      }
    }
    return pts;
  };
  const sa = surface(a), sb = surface(b);
  const directed = (from: number[][], to: number[][]) => {
    const ds = from.map((p) =>
      Math.min(
        ...to.map((q) =>
          Math.hypot((p[0] - q[0]) * spacing[0], (p[1] - q[1]) * spacing[1], (p[2] - q[2]) * spacing[2])
        ),
      )
    ).sort((x, y) => x - y);
    const pos = 0.95 * (ds.length - 1);
    const lo = Math.floor(pos);
    return ds[lo] + (ds[Math.min(ds.length - 1, lo + 1)] - ds[lo]) * (pos - lo);
  };
  return Math.max(directed(sa, sb), directed(sb, sa));
}

Deno.test("metrics: exact distance transform and HD95 match float64 brute force (anisotropic mm)", () => {
  const shape: Shape3 = [5, 7, 6];
  const spacing: Shape3 = [2.5, 1, 0.7];
  for (const seed of [1, 2, 3]) {
    const seeds = randomBlob(shape, seed, 0.05);
    const fast = squaredDistanceTransform(seeds, shape, spacing);
    const slow = bruteDistance(seeds, shape, spacing);
    for (let i = 0; i < fast.length; i++) assert(Math.abs(fast[i] - slow[i]) < 1e-9, `voxel ${i}`);
    const a = randomBlob(shape, seed + 10), b = randomBlob(shape, seed + 20, 0.2);
    const hd = hausdorff95(a, b, shape, spacing);
    const ref = bruteHd95(a, b, shape, spacing);
    assert(Math.abs(hd - ref) < 1e-9, `seed ${seed}: ${hd} vs ${ref}`);
    assert(hd > 0);
  }
  const empty = new Uint8Array(5 * 7 * 6);
  assert(Number.isNaN(hausdorff95(empty, empty, shape, spacing)));
  assertEquals(hausdorff95(randomBlob(shape, 4), empty, shape, spacing), Infinity);
});

Deno.test("evaluateFolders: per-class nanmeans, foreground mean, CSV and JSON; grid mismatch named", async () => {
  const { dir, cleanup } = await tempDir("voxssl-eval-");
  try {
    const shape: Shape3 = [2, 2, 2];
    const affine = diagonalAffine([2, 1, 1]);
    await Deno.mkdir(join(dir, "pred"));
    await Deno.mkdir(join(dir, "ref"));
    const put = (folder: string, name: string, data: number[]) =>
      writeNifti(join(dir, folder, name), { data, shape, affine }, { datatype: "uint8" });
    // case a: class 1 perfect, class 2 absent from both (NaN, left out of the mean)
    await put("ref", "a.nii.gz", [1, 1, 0, 0, 0, 0, 0, 0]);
    await put("pred", "a.nii.gz", [1, 1, 0, 0, 0, 0, 0, 0]);
    // case b: class 1 Dice 2·1/(2+1+0) = 2/3, class 2 Dice 2·1/(2+0+1) = 2/3
    await put("ref", "b.nii.gz", [1, 0, 2, 2, 0, 0, 0, 0]);
    await put("pred", "b.nii.gz", [1, 1, 2, 0, 0, 0, 0, 0]);
    const summary = await evaluateFolders(join(dir, "pred"), join(dir, "ref"), { names: { 1: "x", 2: "y" } });
    assertEquals(summary.classes, [1, 2]);
    assert(Number.isNaN(summary.cases[0].classes[2].dice));
    assertEquals(summary.mean[1].dice, (1 + 2 / 3) / 2);
    assertEquals(summary.mean[2].dice, 2 / 3);
    assertEquals(summary.mean[2].n, 1);
    assertEquals(summary.foregroundMean.dice, ((1 + 2 / 3) / 2 + 2 / 3) / 2);
    const csv = evaluationCsv(summary).trim().split("\n");
    assertEquals(csv.length, 1 + 2 * 2);
    assert(csv[2].startsWith("a.nii.gz,2,y,NaN,NaN,NaN,NaN,NaN,0,0,0,8"), csv[2]);
    const paths = await writeEvaluation(join(dir, "out"), summary);
    const json = JSON.parse(await Deno.readTextFile(paths.json));
    assertEquals(json.cases[0].classes["2"].dice, "NaN");
    assert(json.emptyClassRule.includes("NaN"));
    // a prediction on another grid is an error naming it
    await writeNifti(join(dir, "pred", "b.nii.gz"), { data: new Uint8Array(12), shape: [3, 2, 2], affine });
    const error = await assertRejects(
      () => evaluateFolders(join(dir, "pred"), join(dir, "ref")),
      DataFileError,
    );
    assert(
      error.message.includes(join(dir, "pred", "b.nii.gz")) &&
        error.message.includes("expected the same grid"),
    );
    await Deno.remove(join(dir, "pred", "b.nii.gz"));
    const missing = await assertRejects(
      () => evaluateFolders(join(dir, "pred"), join(dir, "ref")),
      DataFileError,
    );
    assert(missing.message.includes("missing: no prediction for reference"));
  } finally {
    await cleanup();
  }
});
