/**
 * Cropping to the non-zero bounding box (nnU-Net's first preprocessing step after transposition): the
 * air around a head is cut away so patches fall on anatomy and the cache stores less.
 *
 * @module
 */
import { type Box3, extractBox, type Shape3, type VoxelArray } from "./volume.ts";

/** The smallest box holding every non-zero voxel, or `null` when all voxels are zero. */
export function nonzeroBox(data: ArrayLike<number>, shape: Shape3): Box3 | null {
  const [D, H, W] = shape;
  const lo = [D, H, W];
  const hi = [-1, -1, -1];
  let i = 0;
  for (let d = 0; d < D; d++) {
    for (let h = 0; h < H; h++) {
      let first = -1;
      let last = -1;
      for (let w = 0; w < W; w++, i++) {
        if (data[i] !== 0) {
          if (first < 0) first = w;
          last = w;
        }
      }
      if (first < 0) continue;
      if (d < lo[0]) lo[0] = d;
      if (d > hi[0]) hi[0] = d;
      if (h < lo[1]) lo[1] = h;
      if (h > hi[1]) hi[1] = h;
      if (first < lo[2]) lo[2] = first;
      if (last > hi[2]) hi[2] = last;
    }
  }
  if (hi[0] < 0) return null;
  return { start: lo as Shape3, end: hi.map((v) => v + 1) as Shape3 };
}

/** Size of a box. */
export function boxSize(box: Box3): Shape3 {
  return box.end.map((e, i) => e - box.start[i]) as Shape3;
}

/** Copies the box out of `data`. */
export function cropToBox<T extends VoxelArray>(data: T, shape: Shape3, box: Box3): T {
  return extractBox(data, shape, box.start, boxSize(box));
}
