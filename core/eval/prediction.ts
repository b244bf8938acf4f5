/**
 * Predicting a raw case end to end (what `voxssl predict` runs per case): preprocess it like training
 * data (case_preprocess.ts), sliding-window logits, softmax, then the probabilities back to the input's
 * grid — resampled linearly to the crop box's spacing (nearest along a much coarser axis; linear
 * weights keep probabilities summing to 1), put into the uncropped grid (outside the crop box:
 * background with probability 1), reoriented back from RAS — and the argmax written as NIfTI with the
 * input's affine, qform/sform codes and NIfTI version.
 *
 * @module
 */
import { axisOrders, resampleArray, type Shape3, writeNifti } from "../data/mod.ts";
import { type CaseGeometry, preprocessCase } from "./case_preprocess.ts";
import type { NnunetCase } from "./nnunet_dataset.ts";
import {
  argmaxClasses,
  type PatchPredictor,
  type SlidingWindowOptions,
  slidingWindowPredict,
  softmaxClasses,
} from "./sliding_window.ts";

/** Scatters `data` (reoriented by `reorient` from an array of `originalShape`) back to the original order. */
export function undoReorientation<T extends Float32Array | Uint8Array>(
  data: T,
  originalShape: Shape3,
  reorient: CaseGeometry["reorient"],
): T {
  if (reorient.identity) return data;
  const oldStride = [originalShape[1] * originalShape[2], originalShape[2], 1];
  let base = 0;
  const step = [0, 0, 0];
  for (let n = 0; n < 3; n++) {
    const s = reorient.sourceAxis[n];
    step[n] = reorient.flip[n] ? -oldStride[s] : oldStride[s];
    if (reorient.flip[n]) base += (originalShape[s] - 1) * oldStride[s];
  }
  const shape = reorient.sourceAxis.map((s) => originalShape[s]);
  const out = new (data.constructor as new (n: number) => T)(data.length);
  let o = 0;
  for (let d = 0; d < shape[0]; d++) {
    for (let h = 0; h < shape[1]; h++) {
      let dst = base + d * step[0] + h * step[1];
      for (let w = 0; w < shape[2]; w++, dst += step[2]) out[dst] = data[o++];
    }
  }
  return out;
}

/**
 * Class probabilities `[K, final shape]` on the preprocessed grid → `[K, original shape]` on the input
 * file's grid (see the module notes).
 */
export function probabilitiesToOriginal(
  probabilities: Float32Array,
  numClasses: number,
  geometry: CaseGeometry,
  anisotropyThreshold = 3,
): Float32Array {
  const final = geometry.final.shape;
  const box = geometry.crop;
  const cropShape = box.end.map((e, i) => e - box.start[i]) as Shape3;
  const full = geometry.reoriented.shape;
  const nFinal = final[0] * final[1] * final[2];
  const nFull = full[0] * full[1] * full[2];
  const orders = axisOrders(geometry.reoriented.spacing, "linear", anisotropyThreshold);
  const out = new Float32Array(numClasses * nFull);
  for (let k = 0; k < numClasses; k++) {
    const plane = probabilities.subarray(k * nFinal, (k + 1) * nFinal);
    const cropped = cropShape.every((n, i) => n === final[i])
      ? plane
      : resampleArray(plane, final, cropShape, orders);
    const uncropped = new Float32Array(nFull);
    if (k === 0) uncropped.fill(1);
    for (let d = 0; d < cropShape[0]; d++) {
      for (let h = 0; h < cropShape[1]; h++) {
        const src = (d * cropShape[1] + h) * cropShape[2];
        const dst = ((d + box.start[0]) * full[1] + (h + box.start[1])) * full[2] + box.start[2];
        uncropped.set(cropped.subarray(src, src + cropShape[2]), dst);
      }
    }
    out.set(undoReorientation(uncropped, geometry.original.shape, geometry.reorient), k * nFull);
  }
  return out;
}

/** Options of {@link predictCase}. */
export interface PredictCaseOptions extends SlidingWindowOptions {
  /** The spacing the network was trained at (`[sd, sh, sw]` mm), or null for the case's own. */
  targetSpacing: Shape3 | null;
  /** Keep the probabilities on the original grid in the result (default false). */
  keepProbabilities?: boolean;
}

/** A prediction on the input's grid. */
export interface CasePrediction {
  /** The case id. */
  id: string;
  /** Class per voxel, `[D, H, W]` of the input file. */
  label: Uint8Array;
  /** `[K, D, H, W]` probabilities (with `keepProbabilities`). */
  probabilities?: Float32Array;
  /** The preprocessing geometry (original grid and header facts included). */
  geometry: CaseGeometry;
}

/** Preprocesses a raw case, predicts it window by window and takes the result back to its own grid. */
export async function predictCase(
  c: NnunetCase,
  predict: PatchPredictor,
  options: PredictCaseOptions,
): Promise<CasePrediction> {
  const pre = await preprocessCase({ id: c.id, images: c.images }, { targetSpacing: options.targetSpacing });
  const logits = await slidingWindowPredict(pre.channels, pre.geometry.final.shape, predict, options);
  const probabilities = probabilitiesToOriginal(
    softmaxClasses(logits, options.numClasses),
    options.numClasses,
    pre.geometry,
  );
  return {
    id: c.id,
    label: argmaxClasses(probabilities, options.numClasses),
    probabilities: options.keepProbabilities ? probabilities : undefined,
    geometry: pre.geometry,
  };
}

/** Writes a prediction as a uint8 NIfTI with the input's affine, qform/sform codes and version. */
export async function writePrediction(path: string, prediction: CasePrediction): Promise<void> {
  const o = prediction.geometry.original;
  await writeNifti(path, { data: prediction.label, shape: o.shape, affine: o.affine }, {
    datatype: "uint8",
    version: o.version,
    qformCode: o.qformCode,
    sformCode: o.sformCode,
    description: "voxssl prediction",
  });
}
