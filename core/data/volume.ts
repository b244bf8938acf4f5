/**
 * The in-memory volume of the data pipeline and small geometry helpers.
 *
 * Axis convention: arrays are C-order `[D, H, W]` (W fastest), which is exactly NIfTI's storage order with
 * W = NIfTI axis i, H = j, D = k, so reading a file needs no transpose. `spacing` follows the array order
 * (`[sd, sh, sw]` in mm). `affine` is NIfTI's voxel-to-world matrix (row-major 4×4, world in RAS+ mm) and
 * maps the column vector `(i, j, k, 1) = (w, h, d, 1)`; it is kept in NIfTI's order so it can be written
 * back unchanged.
 *
 * @module
 */

/** Three sizes in array order `[D, H, W]`. */
export type Shape3 = [number, number, number];

/** A 4×4 voxel-to-world matrix, row-major, 16 numbers; columns act on `(w, h, d, 1)` (NIfTI i, j, k). */
export type Affine = number[];

/** Typed arrays the pipeline hands around (images are float32, masks uint8). */
export type VoxelArray = Float32Array | Uint8Array;

/** A 3D image: voxels, shape, voxel size and position in world space. */
export interface Volume<T extends VoxelArray = Float32Array> {
  /** Voxels, C-order `[D, H, W]`. */
  data: T;
  /** Array shape `[D, H, W]`. */
  shape: Shape3;
  /** Voxel size in mm, `[sd, sh, sw]`. */
  spacing: Shape3;
  /** Voxel-to-world matrix (NIfTI order of axes). */
  affine: Affine;
}

/** Number of voxels of a shape. */
export function voxelCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** The 4×4 identity. */
export function identityAffine(): Affine {
  return [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1];
}

/** `a · b` for row-major 4×4 matrices. */
export function mulAffine(a: Affine, b: Affine): Affine {
  const out = new Array<number>(16).fill(0);
  for (let r = 0; r < 4; r++) {
    for (let c = 0; c < 4; c++) {
      let s = 0;
      for (let k = 0; k < 4; k++) s += a[r * 4 + k] * b[k * 4 + c];
      out[r * 4 + c] = s;
    }
  }
  return out;
}

/** World coordinates `[x, y, z]` of voxel `(w, h, d)` (NIfTI `(i, j, k)`). */
export function voxelToWorld(affine: Affine, w: number, h: number, d: number): [number, number, number] {
  const row = (r: number) =>
    affine[r * 4] * w + affine[r * 4 + 1] * h + affine[r * 4 + 2] * d + affine[r * 4 + 3];
  return [row(0), row(1), row(2)];
}

/** Voxel size `[sd, sh, sw]` from an affine: the lengths of its columns k, j, i. */
export function spacingFromAffine(affine: Affine): Shape3 {
  const norm = (c: number) => Math.hypot(affine[c], affine[4 + c], affine[8 + c]);
  return [norm(2), norm(1), norm(0)];
}

/** True when all 12 upper entries are finite and the 3×3 part is not singular. */
export function isUsableAffine(affine: Affine): boolean {
  if (affine.length !== 16 || !affine.every(Number.isFinite)) return false;
  const m = (r: number, c: number) => affine[r * 4 + c];
  const det = m(0, 0) * (m(1, 1) * m(2, 2) - m(1, 2) * m(2, 1)) -
    m(0, 1) * (m(1, 0) * m(2, 2) - m(1, 2) * m(2, 0)) +
    m(0, 2) * (m(1, 0) * m(2, 1) - m(1, 1) * m(2, 0));
  return Math.abs(det) > 1e-12;
}

/** A half-open box `[start, end)` per axis, in array order `[D, H, W]`. */
export interface Box3 {
  /** First voxel per axis. */
  start: Shape3;
  /** One past the last voxel per axis. */
  end: Shape3;
}

/**
 * Copies the box `start .. start + size` of `src` (shape `srcShape`) into a new array of `size`, with
 * zeros where the box leaves the source (any part of the box may lie outside, even all of it).
 */
export function extractBox<T extends VoxelArray>(
  src: T,
  srcShape: Shape3,
  start: readonly number[],
  size: Shape3,
): T {
  const out = new (src.constructor as new (n: number) => T)(voxelCount(size));
  const [D, H, W] = srcShape;
  const [sd, sh, sw] = start;
  const w0 = Math.max(0, -sw);
  const w1 = Math.min(size[2], W - sw);
  if (w1 <= w0) return out;
  for (let d = Math.max(0, -sd); d < Math.min(size[0], D - sd); d++) {
    for (let h = Math.max(0, -sh); h < Math.min(size[1], H - sh); h++) {
      const from = ((d + sd) * H + (h + sh)) * W + sw;
      out.set(src.subarray(from + w0, from + w1), (d * size[1] + h) * size[2] + w0);
    }
  }
  return out;
}
