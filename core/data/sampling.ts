/**
 * Where a patch is cut from a volume, following nnssl's data loaders: a random box whose range lets the
 * patch leave the volume by up to half the missing size when the volume is smaller than the patch (the
 * rest is zero padding), or, for anatomy-centred sampling, a box centred on a random voxel of the anatomy
 * mask (clamped at the lower bound only, as nnssl does).
 *
 * @module
 */
import type { Rng } from "./rng.ts";
import type { Shape3 } from "./volume.ts";

/** The range `[lo, hi]` (inclusive) of a patch's start per axis (nnssl's `get_bbox`). */
export function cropRange(shape: Shape3, patch: Shape3): { lo: Shape3; hi: Shape3 } {
  const lo: number[] = [];
  const hi: number[] = [];
  for (let a = 0; a < 3; a++) {
    const need = Math.max(0, patch[a] - shape[a]);
    lo.push(0 - Math.ceil(need / 2)); // Python's -need // 2 (and +0, never -0)
    hi.push(shape[a] + Math.ceil(need / 2) - patch[a]); // need // 2 + need % 2
  }
  return { lo: lo as Shape3, hi: hi as Shape3 };
}

/** A uniformly random patch start. */
export function randomCropStart(shape: Shape3, patch: Shape3, rng: Rng): Shape3 {
  const { lo, hi } = cropRange(shape, patch);
  return [0, 1, 2].map((a) => rng.intRange(lo[a], hi[a])) as Shape3;
}

/** The start of a patch centred on `voxel` (`[d, h, w]`), not below the random range's lower bound. */
export function centredCropStart(shape: Shape3, patch: Shape3, voxel: readonly number[]): Shape3 {
  const { lo } = cropRange(shape, patch);
  return [0, 1, 2].map((a) => Math.max(lo[a], voxel[a] - Math.floor(patch[a] / 2))) as Shape3;
}

/**
 * Chooses a patch start: with probability `anatomyProbability`, centred on a random entry of
 * `locations` (`[N, 3]` voxel coordinates); otherwise, or without locations, uniformly random.
 */
export function choosePatchStart(
  shape: Shape3,
  patch: Shape3,
  rng: Rng,
  options: { anatomyProbability?: number; locations?: Int32Array } = {},
): { start: Shape3; centred: boolean } {
  const useAnatomy = rng.chance(options.anatomyProbability ?? 0);
  const n = options.locations ? options.locations.length / 3 : 0;
  if (useAnatomy && n > 0) {
    const k = rng.int(n) * 3;
    const loc = options.locations!;
    return { start: centredCropStart(shape, patch, [loc[k], loc[k + 1], loc[k + 2]]), centred: true };
  }
  return { start: randomCropStart(shape, patch, rng), centred: false };
}
