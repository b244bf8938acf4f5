/**
 * Orientation: axis codes from an affine (like nibabel's `aff2axcodes`) and reorientation to voxssl's
 * canonical orientation RAS+ (NIfTI axis i runs Left→Right, j Posterior→Anterior, k Inferior→Superior;
 * in array order `[D, H, W]` that is D: I→S, H: P→A, W: L→R). Reorientation only permutes and flips
 * axes (no interpolation), and the affine is updated so every voxel keeps its world position.
 *
 * @module
 */
import {
  type Affine,
  mulAffine,
  type Shape3,
  spacingFromAffine,
  type Volume,
  type VoxelArray,
} from "./volume.ts";

/** One letter per voxel axis: the world direction the axis runs towards. */
export type AxisCode = "R" | "L" | "A" | "P" | "S" | "I";

const POSITIVE: AxisCode[] = ["R", "A", "S"];
const NEGATIVE: AxisCode[] = ["L", "P", "I"];

/**
 * For each NIfTI voxel axis i, j, k: the world axis it is closest to and its sign. Oblique axes go to
 * the closest world axis, choosing greedily by the largest cosine so the result is always a permutation.
 */
export function axisAssignment(
  affine: Affine,
): { world: [number, number, number]; sign: [number, number, number] } {
  const cos = (w: number, a: number) =>
    affine[w * 4 + a] / (Math.hypot(affine[a], affine[4 + a], affine[8 + a]) || 1);
  const world: number[] = [-1, -1, -1];
  const sign: number[] = [1, 1, 1];
  const usedWorld = new Set<number>();
  for (let round = 0; round < 3; round++) {
    let best = { a: -1, w: -1, v: -1 };
    for (let a = 0; a < 3; a++) {
      if (world[a] >= 0) continue;
      for (let w = 0; w < 3; w++) {
        if (usedWorld.has(w)) continue;
        const v = Math.abs(cos(w, a));
        if (v > best.v) best = { a, w, v };
      }
    }
    world[best.a] = best.w;
    sign[best.a] = cos(best.w, best.a) < 0 ? -1 : 1;
    usedWorld.add(best.w);
  }
  return { world: world as [number, number, number], sign: sign as [number, number, number] };
}

/** Axis codes of NIfTI voxel axes (i, j, k), e.g. `["L", "A", "S"]` for a radiological MNI file. */
export function axisCodes(affine: Affine): [AxisCode, AxisCode, AxisCode] {
  const { world, sign } = axisAssignment(affine);
  return world.map((w, a) => (sign[a] > 0 ? POSITIVE : NEGATIVE)[w]) as [AxisCode, AxisCode, AxisCode];
}

/** Orientation string of an affine, e.g. `"LAS"`. */
export function orientationOf(affine: Affine): string {
  return axisCodes(affine).join("");
}

/** How to reorient an array: for each new array axis, its source axis and whether it is flipped. */
export interface ReorientPlan {
  /** For new array axis n (D, H, W), the old array axis it reads. */
  sourceAxis: Shape3;
  /** For new array axis n, whether it runs backwards through its source axis. */
  flip: [boolean, boolean, boolean];
  /** New shape, spacing and affine. */
  shape: Shape3;
  /** Voxel size after reorientation. */
  spacing: Shape3;
  /** Affine after reorientation (world positions unchanged). */
  affine: Affine;
  /** Orientation before (e.g. `"LAS"`); after is always `"RAS"`. */
  from: string;
  /** True when nothing moves. */
  identity: boolean;
}

/** The plan that takes an array of `shape` with `affine` to canonical RAS+. */
export function planCanonical(shape: Shape3, affine: Affine): ReorientPlan {
  const { world, sign } = axisAssignment(affine);
  const niftiSize = [shape[2], shape[1], shape[0]]; // sizes of NIfTI axes i, j, k
  // T maps new NIfTI voxel coordinates to old ones: old_a = flip ? n_a - 1 - new_w : new_w.
  const T = new Array<number>(16).fill(0);
  T[15] = 1;
  const sourceAxis: number[] = [0, 0, 0];
  const flip: boolean[] = [false, false, false];
  for (let a = 0; a < 3; a++) {
    const w = world[a];
    const flipped = sign[a] < 0;
    T[a * 4 + w] = flipped ? -1 : 1;
    T[a * 4 + 3] = flipped ? niftiSize[a] - 1 : 0;
    sourceAxis[2 - w] = 2 - a; // new array axis of world w reads old array axis of NIfTI a
    flip[2 - w] = flipped;
  }
  const newShape = sourceAxis.map((s) => shape[s]) as Shape3;
  const newAffine = mulAffine(affine, T);
  return {
    sourceAxis: sourceAxis as Shape3,
    flip: flip as [boolean, boolean, boolean],
    shape: newShape,
    spacing: spacingFromAffine(newAffine),
    affine: newAffine,
    from: orientationOf(affine),
    identity: sourceAxis.every((s, n) => s === n) && flip.every((f) => !f),
  };
}

/** Permutes/flips `data` (of `shape`) by `plan`; returns the input itself when the plan is the identity. */
export function applyReorientation<T extends VoxelArray>(data: T, shape: Shape3, plan: ReorientPlan): T {
  if (plan.identity) return data;
  const oldStride = [shape[1] * shape[2], shape[2], 1];
  let base = 0;
  const step = [0, 0, 0];
  for (let n = 0; n < 3; n++) {
    const s = plan.sourceAxis[n];
    step[n] = plan.flip[n] ? -oldStride[s] : oldStride[s];
    if (plan.flip[n]) base += (shape[s] - 1) * oldStride[s];
  }
  const [D, H, W] = plan.shape;
  const out = new (data.constructor as new (n: number) => T)(data.length);
  let o = 0;
  for (let d = 0; d < D; d++) {
    const rowD = base + d * step[0];
    for (let h = 0; h < H; h++) {
      let src = rowD + h * step[1];
      for (let w = 0; w < W; w++, src += step[2]) out[o++] = data[src];
    }
  }
  return out;
}

/** Reorients a volume to RAS+ (a copy unless it already is). */
export function reorientToCanonical<T extends VoxelArray>(
  volume: Volume<T>,
): Volume<T> & { plan: ReorientPlan } {
  const plan = planCanonical(volume.shape, volume.affine);
  return {
    data: applyReorientation(volume.data, volume.shape, plan),
    shape: [...plan.shape],
    spacing: [...plan.spacing],
    affine: [...plan.affine],
    plan,
  };
}
