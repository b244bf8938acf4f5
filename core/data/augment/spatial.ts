/**
 * Rotation and scaling in one resampling step. The patch is sampled from the source through a 3×3
 * matrix around its centre: `source = centre + M · (voxel − patchCentre)` with `M = s · R`, where R
 * rotates about the D, H and W axes and s multiplies the sampling coordinates as batchgenerators does
 * (s < 1 zooms in, s > 1 zooms out). Outside the source is zero. Images use trilinear interpolation,
 * masks nearest neighbour. Because the rotated patch covers more of the source than the patch itself,
 * the caller reads the larger box given by {@link sourceBox} first (the "larger initial crop").
 *
 * @module
 */
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
 * The box of the source that a transformed patch samples from (with one voxel of margin for trilinear
 * interpolation), for a patch centred at `centre` (continuous source coordinates).
 */
export function sourceBox(
  matrix: number[],
  patch: Shape3,
  centre: readonly number[],
): { start: Shape3; size: Shape3 } {
  const start: number[] = [];
  const size: number[] = [];
  for (let i = 0; i < 3; i++) {
    let extent = 0;
    for (let j = 0; j < 3; j++) extent += Math.abs(matrix[i * 3 + j]) * (patch[j] - 1) / 2;
    const lo = Math.floor(centre[i] - extent) - 1;
    const hi = Math.ceil(centre[i] + extent) + 2;
    start.push(lo);
    size.push(hi - lo);
  }
  return { start: start as Shape3, size: size as Shape3 };
}

/**
 * Samples a patch of `patch` voxels from `src` (shape `srcShape`) through `matrix` around `centre`
 * (continuous coordinates in `src`). `order` "linear" interpolates trilinearly, "nearest" rounds.
 */
export function warpPatch<T extends Float32Array | Uint8Array>(
  src: T,
  srcShape: Shape3,
  centre: readonly number[],
  matrix: number[],
  patch: Shape3,
  order: "linear" | "nearest",
): T {
  const [D, H, W] = srcShape;
  const out = new (src.constructor as new (n: number) => T)(patch[0] * patch[1] * patch[2]);
  const half = patch.map((p) => (p - 1) / 2);
  const m = matrix;
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
          const id = Math.round(sd), ih = Math.round(sh), iw = Math.round(sw);
          if (id >= 0 && id < D && ih >= 0 && ih < H && iw >= 0 && iw < W) {
            out[o] = src[(id * H + ih) * W + iw];
          }
          continue;
        }
        const d0 = Math.floor(sd), h0 = Math.floor(sh), w0 = Math.floor(sw);
        if (d0 < -1 || d0 >= D || h0 < -1 || h0 >= H || w0 < -1 || w0 >= W) continue;
        const fd = sd - d0, fh = sh - h0, fw = sw - w0;
        let v = 0;
        for (let k = 0; k < 8; k++) {
          const dd = d0 + (k >> 2), hh = h0 + ((k >> 1) & 1), ww = w0 + (k & 1);
          if (dd < 0 || dd >= D || hh < 0 || hh >= H || ww < 0 || ww >= W) continue;
          const wt = (k >> 2 ? fd : 1 - fd) * ((k >> 1) & 1 ? fh : 1 - fh) * (k & 1 ? fw : 1 - fw);
          v += wt * src[(dd * H + hh) * W + ww];
        }
        out[o] = v;
      }
    }
  }
  return out;
}
