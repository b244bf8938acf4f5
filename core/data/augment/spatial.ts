/**
 * Rotation and scaling in one resampling step. The patch is sampled from the source through a 3×3
 * matrix around its centre: `source = centre + M · (voxel − patchCentre)` with `M = s · R`, where R
 * rotates about the D, H and W axes and s multiplies the sampling coordinates as batchgenerators does
 * (s < 1 zooms in, s > 1 zooms out). Outside the source is zero (or, as an option, the edge voxel).
 * Images use trilinear or cubic interpolation, masks nearest neighbour. Because the rotated patch covers more of the source than the patch itself,
 * the caller reads the larger box given by {@link sourceBox} first (the "larger initial crop").
 *
 * @module
 */
import { keysCubic } from "../resample.ts";
import type { Shape3 } from "../volume.ts";

/** Rotation angles (radians) about the D, H and W axes and the coordinate scale. */
export interface SpatialParams {
  /** Rotation about D, H, W in radians. */
  angles: [number, number, number];
  /** Coordinate scale (< 1 zooms in). */
  scale: number;
}

/** `M = s · Rd · Rh · Rw` as a row-major 3×3 over `(d, h, w)`. */
export function spatialMatrix(params: SpatialParams): number[] {
  const [a, b, c] = params.angles;
  const rot = (t: number, i: number, j: number) => {
    const m = [1, 0, 0, 0, 1, 0, 0, 0, 1];
    m[i * 3 + i] = Math.cos(t);
    m[j * 3 + j] = Math.cos(t);
    m[i * 3 + j] = -Math.sin(t);
    m[j * 3 + i] = Math.sin(t);
    return m;
  };
  const mul = (x: number[], y: number[]) => {
    const out = new Array<number>(9).fill(0);
    for (let r = 0; r < 3; r++) {
      for (let col = 0; col < 3; col++) {
        for (let k = 0; k < 3; k++) out[r * 3 + col] += x[r * 3 + k] * y[k * 3 + col];
      }
    }
    return out;
  };
  // about D: rotates the (h, w) plane; about H: the (d, w) plane; about W: the (d, h) plane
  const m = mul(mul(rot(a, 1, 2), rot(b, 0, 2)), rot(c, 0, 1));
  return m.map((v) => v * params.scale);
}

/**
 * The box of the source that a transformed patch samples from, for a patch centred at `centre`
 * (continuous source coordinates), with `margin` voxels more on each side: 1 covers trilinear
 * interpolation, 2 cubic (whose taps reach from ⌊x⌋ − 1 to ⌊x⌋ + 2).
 */
export function sourceBox(
  matrix: number[],
  patch: Shape3,
  centre: readonly number[],
  margin = 1,
): { start: Shape3; size: Shape3 } {
  const start: number[] = [];
  const size: number[] = [];
  for (let i = 0; i < 3; i++) {
    let extent = 0;
    for (let j = 0; j < 3; j++) extent += Math.abs(matrix[i * 3 + j]) * (patch[j] - 1) / 2;
    const lo = Math.floor(centre[i] - extent) - margin;
    const hi = Math.ceil(centre[i] + extent) + 1 + margin;
    start.push(lo);
    size.push(hi - lo);
  }
  return { start: start as Shape3, size: size as Shape3 };
}

/** Interpolation of the spatial transform: masks always use "nearest". */
export type SpatialInterpolation = "nearest" | "linear" | "cubic";

/** What the transform reads outside the source: zeros, or the nearest edge voxel. */
export type SpatialPadding = "zero" | "border";

/**
 * Samples a patch of `patch` voxels from `src` (shape `srcShape`) through `matrix` around `centre`
 * (continuous coordinates in `src`). `order` "linear" interpolates trilinearly, "cubic" with Keys' cubic
 * convolution (a = −0.5, Catmull–Rom; 4 taps per axis, no prefilter), "nearest" rounds (half up).
 * `padding` "zero" reads zeros outside the source, "border" the nearest edge voxel. Arithmetic is float64
 * whatever the array type, so a Float64Array source makes this the float64 reference of the GPU kernel.
 */
export function warpPatch<T extends Float32Array | Float64Array | Uint8Array>(
  src: T,
  srcShape: Shape3,
  centre: readonly number[],
  matrix: number[],
  patch: Shape3,
  order: SpatialInterpolation,
  padding: SpatialPadding = "zero",
): T {
  const [D, H, W] = srcShape;
  const out = new (src.constructor as new (n: number) => T)(patch[0] * patch[1] * patch[2]);
  const half = patch.map((p) => (p - 1) / 2);
  const m = matrix;
  const border = padding === "border";
  const clamp = (i: number, n: number) => (i < 0 ? 0 : i >= n ? n - 1 : i);
  const taps = order === "cubic" ? 4 : 2;
  const first = order === "cubic" ? -1 : 0;
  const wd = new Float64Array(4), wh = new Float64Array(4), ww = new Float64Array(4);
  const id = new Int32Array(4), ih = new Int32Array(4), iw = new Int32Array(4);
  // per axis: tap indices (−1 where zero padding reads outside) and weights
  const axisTaps = (s: number, n: number, index: Int32Array, weight: Float64Array) => {
    const base = Math.floor(s);
    const t = s - base;
    for (let j = 0; j < taps; j++) {
      const i = base + first + j;
      weight[j] = order === "cubic" ? keysCubic(t - first - j) : j === 0 ? 1 - t : t;
      index[j] = border ? clamp(i, n) : i >= 0 && i < n ? i : -1;
    }
  };
  let o = 0;
  for (let d = 0; d < patch[0]; d++) {
    const od = d - half[0];
    for (let h = 0; h < patch[1]; h++) {
      const oh = h - half[1];
      const ow0 = -half[2];
      // source coordinate of (d, h, 0); each step along w adds the matrix's third column
      let sd = centre[0] + m[0] * od + m[1] * oh + m[2] * ow0;
      let sh = centre[1] + m[3] * od + m[4] * oh + m[5] * ow0;
      let sw = centre[2] + m[6] * od + m[7] * oh + m[8] * ow0;
      for (let w = 0; w < patch[2]; w++, o++, sd += m[2], sh += m[5], sw += m[8]) {
        if (order === "nearest") {
          let rd = Math.round(sd), rh = Math.round(sh), rw = Math.round(sw);
          if (border) {
            rd = clamp(rd, D);
            rh = clamp(rh, H);
            rw = clamp(rw, W);
          }
          if (rd >= 0 && rd < D && rh >= 0 && rh < H && rw >= 0 && rw < W) {
            out[o] = src[(rd * H + rh) * W + rw];
          }
          continue;
        }
        // with zero padding, a point whose taps all lie outside reads zero
        if (
          !border && (sd < first - 1 || sd >= D - first || sh < first - 1 || sh >= H - first ||
            sw < first - 1 || sw >= W - first)
        ) continue;
        axisTaps(sd, D, id, wd);
        axisTaps(sh, H, ih, wh);
        axisTaps(sw, W, iw, ww);
        let v = 0;
        for (let a = 0; a < taps; a++) {
          if (id[a] < 0 || wd[a] === 0) continue;
          for (let b = 0; b < taps; b++) {
            if (ih[b] < 0 || wh[b] === 0) continue;
            const row = (id[a] * H + ih[b]) * W;
            let acc = 0;
            for (let c = 0; c < taps; c++) if (iw[c] >= 0) acc += ww[c] * src[row + iw[c]];
            v += wd[a] * wh[b] * acc;
          }
        }
        out[o] = v;
      }
    }
  }
  return out;
}
