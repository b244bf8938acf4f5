/**
 * Test helpers for the augmentation kernels: the float64 reference of the Philox noise, random spatial
 * draws, and tolerances derived from f32 rounding (u = 2⁻²⁴ per operation) of each kernel's arithmetic.
 */
import type { SpatialInterpolation } from "../../core/data/augment/spatial.ts";
import type { Shape3 } from "../../core/data/volume.ts";
import { philox4x32 } from "../../core/tensor/reference/philox.ts";

/** Unit roundoff of f32 (round to nearest). */
export const U = 2 ** -24;

/** Float64 reference of kernels/augment/noise.wgsl: the normals z_i for (seed, step, sample, view). */
export function philoxNoise(n: number, seed: number, step: number, sample: number, view = 0): Float64Array {
  const out = new Float64Array(n);
  const key: [number, number] = [seed % 2 ** 32, Math.floor(seed / 2 ** 32) % 2 ** 32];
  for (let t = 0; 4 * t < n; t++) {
    const r = philox4x32([t, step, sample, (0x4e4f4953 + view) >>> 0], key);
    for (let pair = 0; pair < 2; pair++) {
      const u1 = ((r[2 * pair] >>> 8) + 1) / 16777216;
      const u2 = (r[2 * pair + 1] >>> 8) / 16777216;
      const radius = Math.sqrt(-2 * Math.log(u1));
      const i = 4 * t + 2 * pair;
      if (i < n) out[i] = radius * Math.cos(2 * Math.PI * u2);
      if (i + 1 < n) out[i + 1] = radius * Math.sin(2 * Math.PI * u2);
    }
  }
  return out;
}

/** max |x|. */
export function maxAbs(x: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]));
  return m;
}

/**
 * Bound on |Δs| of the kernel's f32 source coordinate s = M·(v − half) + c along each axis: the inputs M,
 * c rounded to f32 (1 u each), a 3-term dot product and the add (4 u), over the largest |terms|.
 */
export function coordinateError(
  matrix: readonly number[],
  centre: readonly number[],
  patch: Shape3,
): number[] {
  return [0, 1, 2].map((i) => {
    let terms = Math.abs(centre[i]);
    for (let j = 0; j < 3; j++) terms += Math.abs(matrix[3 * i + j]) * (patch[j] - 1) / 2;
    return 6 * U * terms;
  });
}

/**
 * Per-voxel-uniform bound for the spatial kernel against the float64 reference: rounding of the tap sums
 * (Σ|w| per axis W, 3 nested sums of `taps` terms plus the weights' own rounding) and the coordinate
 * error times the interpolant's slope (Σ|w'| per axis: 2 for linear, 3 for Keys' cubic) times max|x|.
 */
export function spatialTolerance(
  order: Exclude<SpatialInterpolation, "nearest">,
  src: ArrayLike<number>,
  coordErr: number[],
): number {
  const w = order === "cubic" ? 1.25 : 1; // max Σ|w| per axis (Keys: 1.25 at t = ½)
  const slope = order === "cubic" ? 3 : 2;
  const taps = order === "cubic" ? 4 : 2;
  const sums = (3 * (taps + 4)) * w ** 3;
  const coord = coordErr.reduce((s, e) => s + slope * w * w * e, 0);
  return maxAbs(src) * (sums * U + coord);
}
