/**
 * nnU-Net's full-resolution target spacing (ExperimentPlanner.determine_fullres_target_spacing): the
 * per-axis median of the cases' spacings, except for a strongly anisotropic dataset, where the coarse
 * axis takes the 10th percentile of its spacings (at least the finest in-plane spacing) so thick slices
 * are not interpolated into many more.
 *
 * @module
 */
import { planCanonical, readNiftiHeader, type Shape3 } from "../data/mod.ts";
import type { NnunetCase } from "./nnunet_dataset.ts";

/** numpy's `percentile` with linear interpolation (its default). */
export function percentile(values: readonly number[], q: number): number {
  if (values.length === 0) return NaN;
  const s = values.slice().sort((a, b) => a - b);
  const pos = (q / 100) * (s.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(s.length - 1, lo + 1);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

/**
 * The target spacing nnU-Net chooses for spacings and shapes (both `[D, H, W]` per case, after
 * reorientation). nnU-Net uses shapes after cropping to non-zero; voxssl passes the header shapes
 * (no decoding needed), which differ only where the crop removes a large margin.
 */
export function nnunetTargetSpacing(spacings: Shape3[], shapes: Shape3[], anisotropyThreshold = 3): Shape3 {
  const target = [0, 1, 2].map((a) => percentile(spacings.map((s) => s[a]), 50)) as Shape3;
  const size = [0, 1, 2].map((a) => percentile(shapes.map((s) => s[a]), 50));
  const worst = target.indexOf(Math.max(...target));
  const others = [0, 1, 2].filter((a) => a !== worst);
  const otherSpacing = Math.max(...others.map((a) => target[a]));
  const anisoSpacing = target[worst] > anisotropyThreshold * otherSpacing;
  const anisoVoxels = size[worst] * anisotropyThreshold < Math.min(...others.map((a) => size[a]));
  if (anisoSpacing && anisoVoxels) {
    let t = percentile(spacings.map((s) => s[worst]), 10);
    if (t < otherSpacing) t = Math.max(otherSpacing, t) + 1e-5;
    target[worst] = t;
  }
  return target;
}

/** {@link nnunetTargetSpacing} of a dataset's cases, from their first channel's header (RAS order). */
export async function medianSpacingOf(cases: readonly NnunetCase[]): Promise<Shape3> {
  const spacings: Shape3[] = [];
  const shapes: Shape3[] = [];
  for (const c of cases) {
    const header = await readNiftiHeader(c.images[0]);
    const plan = planCanonical(header.shape, header.affine);
    spacings.push(plan.spacing);
    shapes.push(plan.shape);
  }
  return nnunetTargetSpacing(spacings, shapes);
}
