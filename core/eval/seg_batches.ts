/**
 * Training patches for segmentation fine-tuning, as nnU-Net's data loader cuts them: per batch the last
 * ⌈B·0.33⌉-ish samples (nnU-Net's rule: sample i is forced when i ≥ round(B·(1 − p))) are centred on a
 * random voxel of a random foreground class present in the case, the others start uniformly at random;
 * then nnU-Net's augmentation, with the label map following every spatial transform by nearest
 * neighbour (rotation/scaling while cutting, mirroring, quarter turns) and untouched by intensity
 * transforms. Every channel of a multi-channel case gets the same spatial transform and mirroring;
 * intensity transforms draw their noise per channel.
 *
 * A batch is a pure function of (seed, step): resume reproduces it. Cases are held in memory (downstream
 * datasets are small); `image` is [B, C, D, H, W] f32, `label` [B, D, H, W] i32.
 *
 * @module
 */
import {
  applyAugmentation,
  type Augmentation,
  centredCropStart,
  createRng,
  planAugmentation,
  randomCropStart,
  type Rng,
  type Shape3,
  sourceBox,
  spatialMatrix,
  warpPatch,
} from "../data/mod.ts";
import type { BatchSource, HostBatch } from "../train/mod.ts";

/** One preprocessed case in memory. */
export interface SegmentationCase {
  /** Case id (nnU-Net's file stem without the channel suffix). */
  id: string;
  /** One array per input channel, [D, H, W] row-major, normalised. */
  image: Float32Array[];
  /** The label map [D, H, W] (class values 0…C−1). */
  label: Uint8Array;
  /** [D, H, W]. */
  shape: Shape3;
}

/** Up to `max` voxel coordinates of each foreground class (nnU-Net samples 10,000 per class), seeded. */
export function classLocations(c: SegmentationCase, classes: number, max = 10_000): Int32Array[] {
  const [, H, W] = c.shape;
  const byClass: number[][] = Array.from({ length: classes }, () => []);
  for (let i = 0; i < c.label.length; i++) if (c.label[i] > 0) byClass[c.label[i]]?.push(i);
  const rng = createRng(0, "class-locations", c.id);
  return byClass.map((list) => {
    // a seeded partial shuffle keeps `max` of them, spread over the whole class
    const n = Math.min(max, list.length);
    for (let i = 0; i < n; i++) {
      const j = i + rng.int(list.length - i);
      [list[i], list[j]] = [list[j], list[i]];
    }
    const out = new Int32Array(3 * n);
    for (let k = 0; k < n; k++) {
      const v = list[k];
      out[3 * k] = Math.floor(v / (H * W));
      out[3 * k + 1] = Math.floor(v / W) % H;
      out[3 * k + 2] = v % W;
    }
    return out;
  });
}

/** How patches are cut. */
export interface SegmentationPatchSpec {
  /** Patch [D, H, W]. */
  patch: Shape3;
  /** Resolved augmentation. */
  augmentation: Augmentation;
  /** nnU-Net's oversample_foreground_percent (0.33). */
  foregroundFraction: number;
  /** Classes including background. */
  classes: number;
}

/** nnU-Net's `get_do_oversample`: the last samples of each batch are forced onto foreground. */
export function forcedForeground(index: number, batch: number, fraction: number): boolean {
  return !(index < Math.round(batch * (1 - fraction)));
}

function readBox<T extends Float32Array | Uint8Array>(
  src: T,
  shape: Shape3,
  start: number[],
  size: Shape3,
): T {
  const out = new (src.constructor as new (n: number) => T)(size[0] * size[1] * size[2]);
  const [D, H, W] = shape;
  let o = 0;
  for (let d = 0; d < size[0]; d++) {
    const sd = start[0] + d;
    for (let h = 0; h < size[1]; h++, o += size[2]) {
      const sh = start[1] + h;
      if (sd < 0 || sd >= D || sh < 0 || sh >= H) continue;
      const w0 = Math.max(0, -start[2]), w1 = Math.min(size[2], W - start[2]);
      if (w1 > w0) {
        out.set(src.subarray((sd * H + sh) * W + start[2] + w0, (sd * H + sh) * W + start[2] + w1), o + w0);
      }
    }
  }
  return out;
}

/** One augmented patch of a case: channels [C·D·H·W] and the label [D·H·W]. */
export function cutSegmentationPatch(
  c: SegmentationCase,
  locations: Int32Array[],
  spec: SegmentationPatchSpec,
  forceForeground: boolean,
  rng: Rng,
): { image: Float32Array; label: Uint8Array; centredOn: number } {
  const crop = rng.fork("crop");
  let start: Shape3 = randomCropStart(c.shape, spec.patch, crop);
  let centredOn = 0;
  if (forceForeground) {
    const present = locations.map((l, k) => (k > 0 && l.length > 0 ? k : -1)).filter((k) => k > 0);
    if (present.length > 0) {
      centredOn = present[crop.int(present.length)];
      const loc = locations[centredOn];
      const k = crop.int(loc.length / 3) * 3;
      start = centredCropStart(c.shape, spec.patch, [loc[k], loc[k + 1], loc[k + 2]]);
    }
  }
  const plan = planAugmentation(spec.augmentation, rng.fork("augment"));
  const size = spec.patch;
  const n = size[0] * size[1] * size[2];
  const image = new Float32Array(c.image.length * n);
  let label: Uint8Array;
  let channels: Float32Array[];
  if (plan.spatial) {
    const centre = start.map((s, i) => s + (size[i] - 1) / 2);
    const matrix = spatialMatrix(plan.spatial);
    const box = sourceBox(matrix, size, centre);
    const local = centre.map((x, i) => x - box.start[i]);
    channels = c.image.map((ch) =>
      warpPatch(readBox(ch, c.shape, box.start, box.size), box.size, local, matrix, size, "linear")
    );
    label = warpPatch(
      readBox(c.label, c.shape, box.start, box.size),
      box.size,
      local,
      matrix,
      size,
      "nearest",
    );
  } else {
    channels = c.image.map((ch) => readBox(ch, c.shape, start, size));
    label = readBox(c.label, c.shape, start, size);
  }
  const masks = [label];
  channels.forEach((ch, k) => {
    // the label follows the first channel's mirroring and turns; every channel draws the same plan
    image.set(applyAugmentation(ch, size, plan, rng.fork("noise", k), k === 0 ? masks : []), k * n);
  });
  return { image, label: masks[0], centredOn };
}

/** A deterministic source of fine-tuning batches over in-memory cases. */
export function segmentationBatches(
  cases: readonly SegmentationCase[],
  spec: SegmentationPatchSpec,
  batch: number,
  seed: number,
): BatchSource {
  if (cases.length === 0) throw new Error("segmentationBatches(): no training cases");
  const channels = cases[0].image.length;
  const locations = cases.map((c) => classLocations(c, spec.classes));
  const n = spec.patch[0] * spec.patch[1] * spec.patch[2];
  return {
    batch(step: number): Promise<HostBatch> {
      const image = new Float32Array(batch * channels * n);
      const label = new Int32Array(batch * n);
      const sources: string[] = [];
      for (let i = 0; i < batch; i++) {
        const rng = createRng(seed, "finetune", step, i);
        const k = rng.int(cases.length);
        const forced = forcedForeground(i, batch, spec.foregroundFraction);
        const patch = cutSegmentationPatch(cases[k], locations[k], spec, forced, rng);
        image.set(patch.image, i * channels * n);
        label.set(patch.label, i * n);
        sources.push(cases[k].id);
      }
      return Promise.resolve({
        arrays: {
          image: { data: image, shape: [batch, channels, ...spec.patch], dtype: "f32" },
          label: { data: label, shape: [batch, ...spec.patch], dtype: "i32" },
        },
        sources,
      });
    },
    close: () => Promise.resolve(),
  };
}
