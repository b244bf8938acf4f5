/**
 * Training batches and evaluation crops for classification fine-tuning, over preprocessed cases held in
 * memory (classification sets are small, as segmentation's are).
 *
 * Training: each sample is a seeded random case and a random patch of it (zero padding where the case is
 * smaller), augmented like segmentation's patches (seg_batches.ts's cutter, without a label map or
 * foreground oversampling); its target is the label-smoothed one-hot row. Evaluation: one centred patch
 * per case (padded the same way), so a test case is one forward pass.
 *
 * A batch is a pure function of (seed, step): resume reproduces it. Arrays: `image` [B, C, D, H, W] f32,
 * `target` [B, K] f32 (smoothed one-hot), `label` [B] i32 (the class index, for logs and tests).
 *
 * @module
 */
import { type Augmentation, createRng, type Shape3 } from "../../data/mod.ts";
import type { BatchSource, HostBatch } from "../../train/mod.ts";
import { cutSegmentationPatch } from "../seg_batches.ts";
import { smoothedTargets } from "./loss.ts";

/** One preprocessed classification case in memory. */
export interface ClassificationVolume {
  /** Case id. */
  id: string;
  /** One array per input channel, [D, H, W] row-major, normalised. */
  image: Float32Array[];
  /** [D, H, W]. */
  shape: Shape3;
  /** Class index (into the run's classes). */
  classIndex: number;
}

/** How training samples are made. */
export interface ClassificationBatchSpec {
  /** Patch [D, H, W]. */
  patch: Shape3;
  /** Resolved augmentation. */
  augmentation: Augmentation;
  /** Number of classes. */
  classes: number;
  /** Label smoothing ε of the targets. */
  labelSmoothing: number;
}

/**
 * The centred patch of `volume`: start ⌊(size − patch)/2⌋ per axis (negative: the case is smaller and
 * the rest is zero padding), channels back to back [C·D·H·W].
 */
export function centreCrop(
  volume: Pick<ClassificationVolume, "image" | "shape">,
  patch: Shape3,
): Float32Array {
  const [D, H, W] = volume.shape;
  const [pd, ph, pw] = patch;
  const start = [0, 1, 2].map((a) => Math.floor((volume.shape[a] - patch[a]) / 2));
  const n = pd * ph * pw;
  const out = new Float32Array(volume.image.length * n);
  volume.image.forEach((channel, c) => {
    for (let d = 0; d < pd; d++) {
      const sd = start[0] + d;
      if (sd < 0 || sd >= D) continue;
      for (let h = 0; h < ph; h++) {
        const sh = start[1] + h;
        if (sh < 0 || sh >= H) continue;
        for (let w = 0; w < pw; w++) {
          const sw = start[2] + w;
          if (sw >= 0 && sw < W) out[c * n + (d * ph + h) * pw + w] = channel[(sd * H + sh) * W + sw];
        }
      }
    }
  });
  return out;
}

/** A deterministic source of classification training batches. */
export function classificationBatches(
  cases: readonly ClassificationVolume[],
  spec: ClassificationBatchSpec,
  batch: number,
  seed: number,
): BatchSource {
  if (cases.length === 0) throw new Error("classificationBatches(): no training cases");
  const channels = cases[0].image.length;
  const n = spec.patch[0] * spec.patch[1] * spec.patch[2];
  // the segmentation cutter wants a label map; classification cases have none (all background)
  const unlabelled = cases.map((c) => ({ ...c, label: new Uint8Array(c.image[0].length) }));
  const noLocations = [new Int32Array(0)];
  const cutSpec = { patch: spec.patch, augmentation: spec.augmentation, foregroundFraction: 0, classes: 1 };
  return {
    batch(step: number): Promise<HostBatch> {
      const image = new Float32Array(batch * channels * n);
      const label = new Int32Array(batch);
      const sources: string[] = [];
      for (let i = 0; i < batch; i++) {
        const rng = createRng(seed, "classification", step, i);
        const k = rng.int(cases.length);
        const patch = cutSegmentationPatch(unlabelled[k], noLocations, cutSpec, false, rng);
        image.set(patch.image, i * channels * n);
        label[i] = cases[k].classIndex;
        sources.push(cases[k].id);
      }
      const target = smoothedTargets(label, spec.classes, spec.labelSmoothing);
      return Promise.resolve({
        arrays: {
          image: { data: image, shape: [batch, channels, ...spec.patch], dtype: "f32" },
          target: { data: target, shape: [batch, spec.classes], dtype: "f32" },
          label: { data: label, shape: [batch], dtype: "i32" },
        },
        sources,
      });
    },
    close: () => Promise.resolve(),
  };
}
