import { gaussianBlur } from "../../../core/data/augment/blur.ts";
import { type AugmentationInput, resolveAugmentation } from "../../../core/data/augment/config.ts";
import { adjustContrast, adjustGamma, scaleBrightness } from "../../../core/data/augment/intensity.ts";
import { simulateLowResolution } from "../../../core/data/augment/lowres.ts";
import type { AugmentPlan } from "../../../core/data/augment/pipeline.ts";
import { mirrorInPlace } from "../../../core/data/augment/mirror.ts";
import { spatialMatrix, warpPatch } from "../../../core/data/augment/spatial.ts";
import { meanStd } from "../../../core/data/normalize.ts";
import type { Rng } from "../../../core/data/rng.ts";
import { createRng } from "../../../core/data/rng.ts";
import {
  cutRawCrop,
  cutRegion,
  type MaskName,
  type RawCrop,
  type SampleSpec,
} from "../../../core/data/sample.ts";
import type { LoadTimings, VolumeReader } from "../../../core/data/sources.ts";
import { extractBox, type Shape3 } from "../../../core/data/volume.ts";
import { augmentBatchOnGpu } from "../../../core/train/gpu_augment.ts";
import { assert, assertEquals } from "../../assert.ts";
import { gpuTest, randomArray } from "../../helpers.ts";
import { coordinateError, maxAbs, philoxNoise, spatialTolerance, U } from "../../kernels/augment_ref.ts";

const SHAPE: Shape3 = [18, 20, 17];
const PATCH: Shape3 = [8, 8, 10];
const N = PATCH[0] * PATCH[1] * PATCH[2];
const volume = Float32Array.from(randomArray(SHAPE[0] * SHAPE[1] * SHAPE[2], 77, -1, 2));
const deface = Uint8Array.from(randomArray(volume.length, 78, 0, 2), Math.floor);

const reader: VolumeReader = {
  label: "random",
  shape: SHAPE,
  has: (a) => a === "image" || a === "anonymization",
  readRegion: (a, start, size) => extractBox(a === "image" ? volume : deface, SHAPE, start, size),
  bytes: 0,
  close() {},
};

const load = (): LoadTimings => ({ readMs: 0, decompressMs: 0, copyMs: 0, preprocessMs: 0 });

/** A generator whose normals are the GPU's Philox noise of one sample, in voxel order. */
function philoxNormals(seed: number, step: number, sample: number): Rng {
  const z = philoxNoise(N, seed, step, sample);
  let i = 0;
  const fail = () => {
    throw new Error("only normal() is drawn for the noise");
  };
  return {
    next: fail,
    int: fail,
    intRange: fail,
    uniform: fail,
    normal: () => z[i++],
    chance: fail,
    fork: fail,
  };
}

const sumTol = (m: number) => (N / 256 + 16) * U * m;

const mean = (e: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < e.length; i++) s += e[i];
  return s / e.length;
};
const rms = (e: ArrayLike<number>) => Math.sqrt(mean(Array.from(e, (v) => v * v)));
const argExtremes = (x: ArrayLike<number>) => {
  let lo = 0, hi = 0;
  for (let i = 1; i < x.length; i++) {
    if (x[i] < x[lo]) lo = i;
    if (x[i] > x[hi]) hi = i;
  }
  return [lo, hi];
};

/**
 * Runs the CPU pipeline of one sample stage by stage (the result must be cutRegion's exactly), carrying a
 * per-voxel bound on the GPU result's error through it: each stage adds its own f32 rounding (as derived
 * for the single kernels in tests/kernels/augment_test.ts) and passes the incoming errors on through its
 * local sensitivity on this sample's data (statistics: mean and std move by at most the mean and the RMS
 * of the voxel errors; gamma: u^γ moves by at most its larger secant over [u − Δu, u + Δu]).
 */
function stagedWithBound(crop: RawCrop, order: "linear" | "cubic", z: Float64Array) {
  const { plan } = crop;
  const matrix = spatialMatrix(plan.spatial ?? { angles: [0, 0, 0], scale: 1 });
  let x = plan.spatial
    ? warpPatch(crop.image, crop.shape, crop.centre, matrix, PATCH, order)
    : crop.image.slice();
  let e = new Float64Array(N).fill(
    spatialTolerance(order, crop.image, coordinateError(matrix, crop.centre, PATCH)),
  );
  if (plan.noiseSigma !== undefined && plan.noiseSigma !== 0) {
    const sigma = plan.noiseSigma;
    for (let i = 0; i < N; i++) {
      e[i] += sigma * 6 * 64 * U + 2 * U * (Math.abs(x[i]) + 6 * sigma);
      x[i] += sigma * z[i];
    }
  }
  if (plan.blurSigma) {
    const m = maxAbs(x);
    x = gaussianBlur(x, PATCH, plan.blurSigma);
    // the blur of the error bound bounds the blur of the errors (non-negative weights)
    const rounding = plan.blurSigma.reduce((s, v) => s + (2 * Math.ceil(4 * v) + 1 + 8) * U * m, 0);
    e = Float64Array.from(
      gaussianBlur(Float32Array.from(e), PATCH, plan.blurSigma),
      (v) => v * (1 + 1e-5) + rounding,
    );
  }
  if (plan.brightness !== undefined) {
    const f = Math.abs(plan.brightness);
    e = e.map((v, i) => f * (v + U * Math.abs(x[i])));
    scaleBrightness(x, plan.brightness);
  }
  if (plan.contrast !== undefined) {
    const f = plan.contrast;
    const m = maxAbs(x);
    const [lo, hi] = argExtremes(x);
    const dMean = mean(e) + sumTol(m);
    e = e.map((v) => Math.max(Math.abs(f) * v + Math.abs(1 - f) * dMean, e[lo], e[hi]) + 4 * U * m);
    adjustContrast(x, f);
  }
  if (plan.lowresZoom !== undefined) {
    const m = maxAbs(x);
    const before = x;
    x = simulateLowResolution(x, PATCH, plan.lowresZoom);
    if (x.some((v, i) => v !== before[i])) e.fill(1.25 ** 3 * (maxAbs(e) + 36 * U * m));
  }
  for (const [gamma, invert] of [[plan.gammaInverted, true], [plan.gamma, false]] as const) {
    if (gamma === undefined) continue;
    const s = invert ? -1 : 1;
    const v = Float64Array.from(x, (a) => s * a);
    const [iLo, iHi] = argExtremes(v);
    const lo = v[iLo], r = v[iHi] - lo + 1e-7;
    const dLo = e[iLo], dR = e[iLo] + e[iHi];
    const y = v.map((a) => Math.pow((a - lo) / r, gamma) * r + lo);
    const dy = v.map((a, i) => {
      const u = (a - lo) / r;
      const du = (e[i] + dLo + u * dR + 3 * U * (Math.abs(a) + Math.abs(lo))) / r;
      const ug = u ** gamma;
      const dpow = 64 * U * ug +
        Math.max(Math.min(1, u + du) ** gamma - ug, ug - Math.max(u - du, 0) ** gamma);
      return r * dpow + u ** gamma * dR + dLo + 2 * U * Math.abs(y[i]);
    });
    const before = meanStd(v), after = meanStd(y);
    const k = before.std / (after.std + 1e-8);
    const dMeanB = mean(e) + sumTol(maxAbs(v)), dMeanY = mean(dy) + sumTol(maxAbs(y));
    const dk = k *
      ((rms(e) + 2 * sumTol(maxAbs(v))) / before.std + (rms(dy) + 2 * sumTol(maxAbs(y))) / after.std);
    adjustGamma(x, gamma, invert);
    e = y.map((yi, i) =>
      k * (dy[i] + dMeanY) + Math.abs(yi - after.mean) * dk + dMeanB + 4 * U * Math.abs(x[i])
    );
  }
  if (plan.mirror.some(Boolean)) {
    mirrorInPlace(x, PATCH, plan.mirror);
    const moved = Float32Array.from(e);
    mirrorInPlace(moved, PATCH, plan.mirror);
    e = Float64Array.from(moved, (v) => v * (1 + 1e-6));
  }
  return { image: x, bound: e };
}

/** Voxels of the GPU mask that differ from the CPU's must sit at a nearest-neighbour rounding tie. */
function assertMaskTies(got: Uint8Array, expected: Uint8Array, crop: RawCrop, label: string) {
  const matrix = spatialMatrix(crop.plan.spatial ?? { angles: [0, 0, 0], scale: 1 });
  const err = coordinateError(matrix, crop.centre, PATCH);
  const flip = crop.plan.mirror;
  for (let i = 0; i < N; i++) {
    if (got[i] === expected[i]) continue;
    const v = [Math.floor(i / (PATCH[1] * PATCH[2])), Math.floor(i / PATCH[2]) % PATCH[1], i % PATCH[2]]
      .map((c, a) => (flip[a] ? PATCH[a] - 1 - c : c));
    const s = [0, 1, 2].map((a) =>
      crop.centre[a] + [0, 1, 2].reduce((acc, j) => acc + matrix[3 * a + j] * (v[j] - (PATCH[j] - 1) / 2), 0)
    );
    assert(
      s.some((c, a) => Math.abs(c - Math.floor(c) - 0.5) <= err[a]),
      `${label}: mask voxel ${i} is ${got[i]}, expected ${expected[i]} (source ${s})`,
    );
  }
}

const FIRED: (keyof AugmentPlan)[] = [
  "spatial",
  "noiseSigma",
  "blurSigma",
  "brightness",
  "contrast",
  "lowresZoom",
  "gammaInverted",
  "gamma",
];

async function checkParity(
  gpu: Parameters<typeof augmentBatchOnGpu>[0],
  augmentation: AugmentationInput,
  interpolation: "linear" | "cubic",
  batch: number,
  everyTransform: false | "gamma" | "gammaInverted",
) {
  const spec: SampleSpec = {
    patch: PATCH,
    augmentation: resolveAugmentation(augmentation),
    anatomyProbability: 0,
    masks: ["deface"] as MaskName[],
    interpolation,
  };
  const seed = 1234, step = 7;
  const crops = Array.from(
    { length: batch },
    (_, b) => cutRawCrop(reader, createRng(seed, step, b), spec, load()),
  );
  const out = augmentBatchOnGpu(gpu, crops, { patch: PATCH, interpolation, padding: "zero", seed, step });
  const image = await out.image.toFloat64();
  const mask = (await out.masks[0].toArray()) as Uint8Array;
  const fired = new Set<string>();
  for (const [b, crop] of crops.entries()) {
    for (const key of FIRED) if (crop.plan[key] !== undefined) fired.add(key);
    if (crop.plan.mirror.some(Boolean)) fired.add("mirror");
    const z = philoxNoise(N, seed, step, b);
    const cpu = cutRegion(
      reader,
      crop.start,
      PATCH,
      crop.plan,
      spec.masks,
      philoxNormals(seed, step, b),
      load(),
      undefined,
      interpolation,
    );
    const staged = stagedWithBound(crop, interpolation, z);
    assertEquals([...staged.image], [...cpu.image], "the staged CPU pipeline is cutRegion's");
    // the bound must stay small against the data's range (a deviation above 0.5% of it is caught), or the
    // check could not catch a wrong tap, factor or order
    const median = [...staged.bound].sort((p, q) => p - q)[N >> 1];
    const range = Math.max(...cpu.image) - Math.min(...cpu.image);
    assert(median < 5e-3 * range, `sample ${b}: median bound ${median} against a range of ${range}`);
    const got = image.subarray(b * N, (b + 1) * N);
    for (let i = 0; i < N; i++) {
      const err = Math.abs(got[i] - cpu.image[i]);
      assert(
        err <= staged.bound[i],
        `sample ${b} voxel ${i}: error ${err} > bound ${staged.bound[i]} (${JSON.stringify(crop.plan)})`,
      );
    }
    assertMaskTies(mask.subarray(b * N, (b + 1) * N), cpu.masks.deface!, crop, `sample ${b}`);
  }
  if (everyTransform) {
    const skipped = everyTransform === "gamma" ? "gammaInverted" : "gamma";
    const expected = [...FIRED, "mirror"].filter((k) => k !== skipped);
    assertEquals([...fired].sort(), expected.sort(), "every transform fired");
  }
  out.image.dispose();
  out.masks.forEach((t) => t.dispose());
}

gpuTest("GPU augmentation matches the CPU path on the nnssl-mae preset (cubic)", async (gpu) => {
  await checkParity(gpu, "nnssl-mae", "cubic", 8, false);
});

gpuTest("GPU augmentation matches the CPU path on the nnunet preset (linear)", async (gpu) => {
  await checkParity(gpu, "nnunet", "linear", 8, false);
});

// Every transform fires, with one of the two gammas at a time: after two successive gammas the worst-case
// bound compounds (each amplifies errors near its minimum) past the point where it could catch a bug.
for (const gamma of ["gamma", "gammaInverted"] as const) {
  gpuTest(
    `GPU augmentation matches the CPU path with every nnunet transform firing (cubic, ${gamma})`,
    async (gpu) => {
      const on = { p: 1 };
      await checkParity(
        gpu,
        {
          preset: "nnunet",
          rotation: on,
          scale: on,
          noise: on,
          blur: on,
          brightness: on,
          contrast: on,
          lowres: on,
          [gamma]: on,
          [gamma === "gamma" ? "gammaInverted" : "gamma"]: { p: 0 },
        },
        "cubic",
        3,
        gamma,
      );
    },
  );
}

gpuTest(
  "GPU augmentation is a pure function of (seed, step, sample): the same batch again, others differ",
  async (gpu) => {
    const spec: SampleSpec = {
      patch: PATCH,
      augmentation: resolveAugmentation({ preset: "nnunet", noise: { p: 1 } }),
      anatomyProbability: 0,
      masks: [],
    };
    const run = async (step: number) => {
      const crops = [0, 1].map((b) => cutRawCrop(reader, createRng(5, step, b), spec, load()));
      const out = augmentBatchOnGpu(gpu, crops, {
        patch: PATCH,
        interpolation: "cubic",
        padding: "zero",
        seed: 5,
        step,
      });
      const values = await out.image.toFloat64();
      out.image.dispose();
      return values;
    };
    const first = await run(3);
    assertEquals([...await run(3)], [...first]);
    const other = await run(4);
    assert(other.some((v, i) => v !== first[i]), "another step gives another batch");
  },
);
