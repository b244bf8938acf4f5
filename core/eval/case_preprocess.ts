/**
 * Preprocessing one labelled (or unlabelled) downstream case in memory, in the pretraining plan's order
 * (core/data/preprocess.ts): reorient to RAS → crop to the non-zero box of all channels → z-score each
 * channel → resample to the target spacing (cubic for images, nearest along a much coarser axis;
 * nearest neighbour for labels, which stay integers). The geometry of every stage is recorded so that a
 * prediction can be taken back to the original grid (prediction.ts).
 *
 * Checks, each a `DataFileError` naming the file: every channel and the label share the first channel's
 * shape and affine; label values are integers declared in dataset.json. An empty label (background only)
 * is a warning by default (datasets have cases without the structure) and an error with
 * `emptyLabel: "error"`.
 *
 * @module
 */
import {
  type Affine,
  applyReorientation,
  axisOrders,
  type Box3,
  boxSize,
  cropToBox,
  DataFileError,
  type NiftiVolume,
  planCanonical,
  readNifti,
  resampleArray,
  resampledAffine,
  resampledShape,
  type Shape3,
  zscoreInPlace,
} from "../data/mod.ts";
import type { NnunetCase } from "./nnunet_dataset.ts";

/** Shape, voxel size and affine of a grid. */
export interface GridGeometry {
  /** `[D, H, W]`. */
  shape: Shape3;
  /** `[sd, sh, sw]` in mm. */
  spacing: Shape3;
  /** Voxel-to-world matrix (NIfTI axis order). */
  affine: Affine;
}

/** Where a preprocessed case came from, stage by stage: what undoing the preprocessing needs. */
export interface CaseGeometry {
  /** The input files' grid, with the header fields a prediction file copies. */
  original: GridGeometry & {
    /** NIfTI version of the first channel's file. */
    version: 1 | 2;
    /** Its qform_code. */
    qformCode: number;
    /** Its sform_code. */
    sformCode: number;
    /** Its orientation, e.g. "LPS". */
    orientation: string;
  };
  /** The reorientation to RAS: for each new array axis, its source axis and whether it is flipped. */
  reorient: { sourceAxis: Shape3; flip: [boolean, boolean, boolean]; identity: boolean };
  /** The grid after reorientation. */
  reoriented: GridGeometry;
  /** The non-zero box in reoriented array coordinates. */
  crop: { start: Shape3; end: Shape3 };
  /** The preprocessed grid (after cropping and resampling). */
  final: GridGeometry;
}

/** A case after preprocessing. */
export interface PreprocessedCase {
  /** The case id. */
  id: string;
  /** One z-scored float32 volume per channel, each of `geometry.final.shape`. */
  channels: Float32Array[];
  /** Integer label map of `geometry.final.shape` (absent for unlabelled cases). */
  label?: Uint8Array;
  /** Grids of every stage. */
  geometry: CaseGeometry;
  /** Mean and standard deviation used for each channel's z-score (inside the crop box). */
  normalization: { mean: number; std: number }[];
  /** Voxels of each label value in the preprocessed label map (value → count), when labelled. */
  classVoxels?: Record<string, number>;
  /** Non-fatal findings (an empty label). */
  warnings: string[];
}

/** Options of {@link preprocessCase}. */
export interface CasePreprocessOptions {
  /** Target spacing `[sd, sh, sw]` in mm, or null to keep each case's own spacing. */
  targetSpacing: Shape3 | null;
  /** The label values dataset.json declares (background 0 included); other values are an error. */
  labelValues?: readonly number[];
  /** An all-background label: a warning (default) or an error. */
  emptyLabel?: "warn" | "error";
  /** An axis coarser than this × the finest is resampled with nearest neighbour (default 3, as nnU-Net). */
  anisotropyThreshold?: number;
  /** Read the label (default true when the case has one). */
  readLabel?: boolean;
}

/** True when two affines agree to 1e-4 relative (and 1e-3 mm in their offsets). */
export function sameAffine(a: Affine, b: Affine): boolean {
  for (let i = 0; i < 12; i++) {
    const tolerance = i % 4 === 3 ? 1e-3 + 1e-5 * Math.abs(b[i]) : 1e-4 * Math.max(1, Math.abs(b[i]));
    if (!(Math.abs(a[i] - b[i]) <= tolerance)) return false;
  }
  return true;
}

function checkSameGrid(volume: NiftiVolume, reference: NiftiVolume, what: string): void {
  if (volume.shape.join() !== reference.shape.join()) {
    throw new DataFileError(
      volume.path,
      `${what} shape ${volume.shape.join("×")} differs from ${reference.path}'s ${
        reference.shape.join("×")
      }` +
        " (expected the same grid)",
    );
  }
  if (!sameAffine(volume.affine, reference.affine)) {
    const fmt = (a: Affine) => `[${a.slice(0, 12).map((v) => +v.toFixed(4)).join(", ")}]`;
    throw new DataFileError(
      volume.path,
      `${what} affine ${fmt(volume.affine)} differs from ${reference.path}'s ${fmt(reference.affine)}` +
        " (expected the same voxel-to-world geometry)",
    );
  }
}

/** The affine of a box cut out of a grid with `affine` (the box's first voxel becomes voxel 0). */
export function croppedAffine(affine: Affine, box: Box3): Affine {
  const out = affine.slice();
  for (let r = 0; r < 3; r++) {
    out[r * 4 + 3] += affine[r * 4] * box.start[2] + affine[r * 4 + 1] * box.start[1] +
      affine[r * 4 + 2] * box.start[0];
  }
  return out;
}

/** The non-zero box over all channels (nnU-Net's crop_to_nonzero mask: any channel non-zero). */
function unionNonzeroBox(channels: Float32Array[], shape: Shape3): Box3 | null {
  const [D, H, W] = shape;
  const lo = [D, H, W];
  const hi = [-1, -1, -1];
  let i = 0;
  for (let d = 0; d < D; d++) {
    for (let h = 0; h < H; h++) {
      for (let w = 0; w < W; w++, i++) {
        let any = false;
        for (const c of channels) {
          if (c[i] !== 0) {
            any = true;
            break;
          }
        }
        if (!any) continue;
        if (d < lo[0]) lo[0] = d;
        if (d > hi[0]) hi[0] = d;
        if (h < lo[1]) lo[1] = h;
        if (h > hi[1]) hi[1] = h;
        if (w < lo[2]) lo[2] = w;
        if (w > hi[2]) hi[2] = w;
      }
    }
  }
  if (hi[0] < 0) return null;
  return { start: lo as Shape3, end: hi.map((v) => v + 1) as Shape3 };
}

/** Converts a float label map to uint8, checking values are declared integers. */
function toLabelMap(volume: NiftiVolume, allowed: readonly number[] | undefined): Uint8Array {
  const out = new Uint8Array(volume.data.length);
  const seen = new Set<number>();
  for (let i = 0; i < out.length; i++) {
    const v = volume.data[i];
    if (!Number.isInteger(v) || v < 0 || v > 255) {
      throw new DataFileError(
        volume.path,
        `label value ${v} at voxel ${i}: expected integer label values 0..255`,
      );
    }
    out[i] = v;
    seen.add(v);
  }
  if (allowed) {
    const extra = [...seen].filter((v) => !allowed.includes(v)).sort((a, b) => a - b);
    if (extra.length > 0) {
      throw new DataFileError(
        volume.path,
        `label value(s) ${extra.join(", ")} are not in dataset.json's labels (${
          [...allowed].sort((a, b) => a - b).join(", ")
        })`,
      );
    }
  }
  return out;
}

/** Nearest-neighbour resampling of a label map (values stay integers). */
export function resampleLabels(label: Uint8Array, shape: Shape3, newShape: Shape3): Uint8Array {
  if (shape.every((n, i) => n === newShape[i])) return label.slice();
  const resampled = resampleArray(Float32Array.from(label), shape, newShape, "nearest");
  return Uint8Array.from(resampled);
}

/**
 * Reads and preprocesses one case. Throws a `DataFileError` naming the file for a channel or label whose
 * grid differs from the first channel's, an undeclared or non-integer label value, an all-zero image,
 * and (with `emptyLabel: "error"`) a background-only label.
 */
export async function preprocessCase(
  c: NnunetCase,
  options: CasePreprocessOptions,
): Promise<PreprocessedCase> {
  const threshold = options.anisotropyThreshold ?? 3;
  const volumes: NiftiVolume[] = [];
  for (const path of c.images) {
    const volume = await readNifti(path);
    if (volumes.length > 0) checkSameGrid(volume, volumes[0], `channel ${volumes.length}`);
    volumes.push(volume);
  }
  const first = volumes[0];
  let labelVolume: NiftiVolume | undefined;
  const warnings: string[] = [];
  if (c.label && options.readLabel !== false) {
    labelVolume = await readNifti(c.label);
    checkSameGrid(labelVolume, first, "label");
  }
  let label = labelVolume && toLabelMap(labelVolume, options.labelValues);
  if (label && !label.some((v) => v !== 0)) {
    const problem = "label is empty (background only)";
    if (options.emptyLabel === "error") throw new DataFileError(c.label!, problem);
    warnings.push(`${c.label}: ${problem}`);
  }

  const plan = planCanonical(first.shape, first.affine);
  let channels = volumes.map((v) => applyReorientation(v.data, first.shape, plan));
  label = label && applyReorientation(label, first.shape, plan);

  const box = unionNonzeroBox(channels, plan.shape);
  if (!box) throw new DataFileError(c.images[0], "every channel is all zeros (nothing to crop to)");
  const cropShape = boxSize(box);
  channels = channels.map((data) => cropToBox(data, plan.shape, box));
  label = label && cropToBox(label, plan.shape, box);
  const cropAffine = croppedAffine(plan.affine, box);
  const normalization = channels.map((data) => zscoreInPlace(data));

  let final: GridGeometry = { shape: cropShape, spacing: plan.spacing, affine: cropAffine };
  if (options.targetSpacing) {
    const shape = resampledShape(cropShape, plan.spacing, options.targetSpacing);
    if (shape.some((n, i) => n !== cropShape[i])) {
      const orders = axisOrders(plan.spacing, "cubic", threshold);
      channels = channels.map((data) => resampleArray(data, cropShape, shape, orders));
      label = label && resampleLabels(label, cropShape, shape);
    }
    final = {
      shape,
      spacing: plan.spacing.map((s, i) => (s * cropShape[i]) / shape[i]) as Shape3,
      affine: resampledAffine(cropAffine, cropShape, shape),
    };
  }
  let classVoxels: Record<string, number> | undefined;
  if (label) {
    classVoxels = {};
    for (const v of label) classVoxels[v] = (classVoxels[v] ?? 0) + 1;
  }
  return {
    id: c.id,
    channels,
    label,
    geometry: {
      original: {
        shape: first.shape,
        spacing: first.spacing,
        affine: first.affine,
        version: first.header.version,
        qformCode: first.header.qformCode,
        sformCode: first.header.sformCode,
        orientation: plan.from,
      },
      reorient: { sourceAxis: plan.sourceAxis, flip: plan.flip, identity: plan.identity },
      reoriented: { shape: plan.shape, spacing: plan.spacing, affine: plan.affine },
      crop: box,
      final,
    },
    normalization,
    classVoxels,
    warnings,
  };
}
