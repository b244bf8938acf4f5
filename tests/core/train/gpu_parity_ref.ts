/**
 * The CPU side of the GPU augmentation parity tests: a generator that hands the CPU pipeline the GPU's
 * Philox normals, and the CPU pipeline run stage by stage with a per-voxel bound on the GPU result's f32
 * error carried through it (shared by gpu_augment_test.ts and gpu_view_augment_test.ts).
 */
import { gaussianBlur } from "../../../core/data/augment/blur.ts";
import { adjustContrast, adjustGamma, scaleBrightness } from "../../../core/data/augment/intensity.ts";
import { simulateLowResolution } from "../../../core/data/augment/lowres.ts";
import { mirrorInPlace } from "../../../core/data/augment/mirror.ts";
import { rot90 } from "../../../core/data/augment/rot90.ts";
import { spatialMatrix, type SpatialPadding, warpPatch } from "../../../core/data/augment/spatial.ts";
import { meanStd } from "../../../core/data/normalize.ts";
import type { Rng } from "../../../core/data/rng.ts";
import type { RawCrop } from "../../../core/data/sample.ts";
import type { Shape3 } from "../../../core/data/volume.ts";
import { assert } from "../../assert.ts";
import { coordinateError, maxAbs, philoxNoise, spatialTolerance, U } from "../../kernels/augment_ref.ts";

/** A generator whose normals are the GPU's Philox noise of one sample, in voxel order. */
export function philoxNormals(n: number, seed: number, step: number, sample: number, view = 0): Rng {
  const z = philoxNoise(n, seed, step, sample, view);
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

const sumTol = (n: number, m: number) => (n / 256 + 16) * U * m;

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
export function stagedWithBound(
  crop: Pick<RawCrop, "image" | "shape" | "centre" | "plan">,
  order: "linear" | "cubic",
  z: Float64Array,
  PATCH: Shape3,
  padding: SpatialPadding = "zero",
) {
  const N = PATCH[0] * PATCH[1] * PATCH[2];
  const { plan } = crop;
  const matrix = spatialMatrix(plan.spatial ?? { angles: [0, 0, 0], scale: 1 });
  // without a spatial transform the crop is the patch, or with border padding the part of it inside the
  // volume, which the identity warp extends (an exact copy)
  const plain = crop.shape.every((v, i) => v === PATCH[i]);
  let x = plan.spatial
    ? warpPatch(crop.image, crop.shape, crop.centre, matrix, PATCH, order, padding)
    : plain
    ? crop.image.slice()
    : warpPatch(crop.image, crop.shape, crop.centre, matrix, PATCH, "nearest", padding);
  // without a spatial transform the GPU copies the crop: exact
  let e = new Float64Array(N).fill(
    plan.spatial ? spatialTolerance(order, crop.image, coordinateError(matrix, crop.centre, PATCH)) : 0,
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
    // the GPU rounds the factor and the product (2 u), the CPU reference its own product (1 u)
    e = e.map((v, i) => f * (v + 3 * U * Math.abs(x[i])));
    scaleBrightness(x, plan.brightness);
  }
  if (plan.contrast !== undefined) {
    const f = plan.contrast;
    const m = maxAbs(x);
    const [lo, hi] = argExtremes(x);
    const dMean = mean(e) + sumTol(N, m);
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
    const dMeanB = mean(e) + sumTol(N, maxAbs(v)), dMeanY = mean(dy) + sumTol(N, maxAbs(y));
    const dk = k *
      ((rms(e) + 2 * sumTol(N, maxAbs(v))) / before.std + (rms(dy) + 2 * sumTol(N, maxAbs(y))) / after.std);
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
  if (plan.rot90) {
    // a permutation: the values and their bounds move together
    x = rot90(x, PATCH, plan.rot90.axes, plan.rot90.turns);
    e = Float64Array.from(rot90(Float32Array.from(e), PATCH, plan.rot90.axes, plan.rot90.turns));
  }
  return { image: x, bound: e };
}

/**
 * Voxels of the GPU mask that differ from the CPU's must sit at a nearest-neighbour rounding tie of the
 * warp (located through the plan's mirroring and quarter turns back to the warped patch).
 */
export function assertMaskTies(
  got: Uint8Array,
  expected: Uint8Array,
  crop: Pick<RawCrop, "centre" | "plan">,
  label: string,
  PATCH: Shape3,
  errorCentre: readonly number[] = crop.centre,
) {
  const N = PATCH[0] * PATCH[1] * PATCH[2];
  const matrix = spatialMatrix(crop.plan.spatial ?? { angles: [0, 0, 0], scale: 1 });
  // the coordinate error bound, from the centre the kernel added (errorCentre when it differs)
  const err = coordinateError(matrix, errorCentre, PATCH);
  // where each output voxel was in the warped patch: the plan's permutation applied to the indices
  let from = Float32Array.from({ length: N }, (_, i) => i);
  mirrorInPlace(from, PATCH, crop.plan.mirror);
  if (crop.plan.rot90) from = rot90(from, PATCH, crop.plan.rot90.axes, crop.plan.rot90.turns);
  for (let i = 0; i < N; i++) {
    if (got[i] === expected[i]) continue;
    const w = from[i];
    const v = [Math.floor(w / (PATCH[1] * PATCH[2])), Math.floor(w / PATCH[2]) % PATCH[1], w % PATCH[2]];
    const s = [0, 1, 2].map((a) =>
      crop.centre[a] + [0, 1, 2].reduce((acc, j) => acc + matrix[3 * a + j] * (v[j] - (PATCH[j] - 1) / 2), 0)
    );
    assert(
      s.some((c, a) => Math.abs(c - Math.floor(c) - 0.5) <= err[a]),
      `${label}: mask voxel ${i} is ${got[i]}, expected ${expected[i]} (source ${s})`,
    );
  }
}
