/**
 * VolumeFusion as nnssl pretrains it (`VolumeFusionTrainer.py`, `VolumeFusionEvaTrainer.py`,
 * `volume_fusion_transform.py`; facts in README.md): a foreground crop of the sample's own volume and a
 * background crop of another volume, each augmented on its own, are fused box by box: M ~ U{10..39}
 * boxes, each with a random size, position and class k ~ U{0..4}, painted one after the other on a class
 * map that starts at 0 (later boxes overwrite earlier ones); every voxel of the input is
 * x = (k/4)·fg + (1 − k/4)·bg with the class k at that voxel. The network (a U-Net with 5 outputs)
 * segments the class map; the loss is soft Dice (per sample, background included, smooth 1e-5) plus
 * cross-entropy, 1 : 1, as nnU-Net's `DC_and_CE_loss` with `MemoryEfficientSoftDiceLoss`.
 *
 * Data side (`sample`): `image` f32 [1, D, H, W] (the fused crop) and `target` u8 [1, D, H, W] (the
 * class map). When the run augments the crops on the GPU (`context.gpuViews`), `foreground` and
 * `background` f32 [1, D, H, W] (raw; augmented in place on the GPU) instead of `image`, fused in `loss`.
 */
import {
  add,
  addScalar,
  type AugmentationInput,
  cast,
  crossEntropy,
  definePlugin,
  mul,
  mulScalar,
  reshape,
  type Rng,
  sampleArray,
  type SampleOutput,
  type SampleVolume,
  softDiceLoss,
  softmax,
  type SslMethodPlugin,
  type Tensor,
  type Vec3,
  z,
} from "@voxssl/core";
import meta from "./deno.json" with { type: "json" };

/** VolumeFusion's configuration. */
export interface VolumeFusionConfig {
  /** Where the two crops are cut: the volume's centre (nnssl, the default) or a random start. */
  crop: "centre" | "random";
  /** Fusion classes K: coefficients k/(K − 1) for k = 0…K − 1, and the network's outputs (default 5). */
  classes: number;
  /** Fewest and most boxes per sample, both inclusive (default nnssl's [10, 39]). */
  boxCount: [number, number];
  /** Smallest box side in voxels, per axis (default nnssl's 8; lowered to the largest where that is smaller). */
  boxMinSide: number;
  /** Largest box side as a fraction of the patch, per axis, rounded down (default nnssl's 0.625: 100 at 160). */
  boxMaxFraction: number;
  /** Per-crop augmentation before the fusion: nnssl's list, or none (default "nnssl"; validation: none). */
  augmentation: "nnssl" | "none";
  /** Weight of the soft Dice term (default 1). */
  diceWeight: number;
  /** Weight of the cross-entropy term (default 1). */
  ceWeight: number;
}

const countRange = z.tuple([z.number().int().positive(), z.number().int().positive()])
  .refine(([lo, hi]) => lo <= hi, "a range is [fewest, most]");

/** The zod schema of {@link VolumeFusionConfig}, with its defaults. */
const VolumeFusionConfig: z.ZodType<VolumeFusionConfig> = z.object({
  /** Where the crops are cut (nnssl: centre crops only). */
  crop: z.enum(["centre", "random"]).default("centre"),
  /** Fusion classes (nnssl: 5; its variants use 3 and 9). */
  classes: z.number().int().min(2).max(255).default(5),
  /** Boxes per sample, inclusive (nnssl: U{10..39}). */
  boxCount: countRange.default([10, 39]),
  /** Smallest box side in voxels (nnssl: 8). */
  boxMinSide: z.number().int().positive().default(8),
  /** Largest box side as a fraction of the patch, rounded down (nnssl: 0.625). */
  boxMaxFraction: z.number().gt(0).max(1).default(0.625),
  /** Per-crop augmentation (nnssl's list or none). */
  augmentation: z.enum(["nnssl", "none"]).default("nnssl"),
  /** Loss weights (nnssl: 1 and 1). */
  diceWeight: z.number().min(0).default(1),
  ceWeight: z.number().min(0).default(1),
});

/**
 * nnssl's VolumeFusion augmentation, applied to each crop on its own before the fusion: Gaussian noise
 * p 0.1, blur p 0.2 per sample × 0.5 per channel, brightness p 0.15, contrast p 0.15, low resolution p 0.25
 * per sample × 0.5 per channel, inverted gamma p 0.1, gamma p 0.3, mirroring p 0.5 per axis; no rotation or
 * scaling. On one-channel images blur and low resolution therefore fire with p 0.1 and 0.125.
 */
export const VOLUME_FUSION_AUGMENTATION: AugmentationInput = {
  preset: "nnunet",
  rotation: { p: 0 },
  scale: { p: 0 },
  blur: { p: 0.2 * 0.5 },
  lowres: { p: 0.25 * 0.5 },
  rot90: { p: 0 },
};

/** One fusion box: where it starts, its size (inside the patch) and its class. */
export interface FusionBox {
  /** First voxel per axis. */
  start: Vec3;
  /** Size per axis. */
  size: Vec3;
  /** Class k: the box's voxels are (k/(K − 1))·fg + (1 − k/(K − 1))·bg. */
  cls: number;
}

/**
 * The box side range [lo, hi] (inclusive) along an axis of `extent` voxels: hi = ⌊fraction · extent⌋
 * (at least 1), lo = min(minSide, hi). nnssl's rule (`int(0.625 · s)`, 8), which gives U{8..100} at 160 and
 * U{8..60} at 96; below 13 voxels, where ⌊0.625 · s⌋ < 8 and nnssl's draw fails, every side is hi.
 */
export function boxSideRange(
  extent: number,
  config: Pick<VolumeFusionConfig, "boxMinSide" | "boxMaxFraction">,
): {
  lo: number;
  hi: number;
} {
  const hi = Math.max(1, Math.floor(config.boxMaxFraction * extent));
  return { lo: Math.min(config.boxMinSide, hi), hi };
}

/**
 * Draws the boxes of one sample: their number uniform in `boxCount`; per box a class uniform in
 * 0…classes − 1, a side per axis uniform in {@link boxSideRange}, and a start per axis uniform among the
 * positions that keep the box inside the patch.
 */
export function drawFusionBoxes(
  patch: readonly number[],
  config: Pick<VolumeFusionConfig, "classes" | "boxCount" | "boxMinSide" | "boxMaxFraction">,
  rng: Rng,
): FusionBox[] {
  const ranges = [0, 1, 2].map((a) => boxSideRange(patch[a], config));
  const count = rng.intRange(config.boxCount[0], config.boxCount[1]);
  return Array.from({ length: count }, () => {
    const cls = rng.int(config.classes);
    const size = ranges.map(({ lo, hi }) => rng.intRange(lo, hi)) as Vec3;
    const start = size.map((s, a) => rng.intRange(0, patch[a] - s)) as Vec3;
    return { start, size, cls };
  });
}

/** The class map of `boxes` painted in order on zeros (later boxes overwrite earlier ones), u8 [D, H, W]. */
export function paintClassMap(patch: readonly number[], boxes: readonly FusionBox[]): Uint8Array {
  const [, H, W] = patch;
  const map = new Uint8Array(patch[0] * H * W);
  for (const { start, size, cls } of boxes) {
    for (let d = start[0]; d < start[0] + size[0]; d++) {
      for (let h = start[1]; h < start[1] + size[1]; h++) {
        const row = (d * H + h) * W;
        map.fill(cls, row + start[2], row + start[2] + size[2]);
      }
    }
  }
  return map;
}

/** x = α·fg + (1 − α)·bg voxel by voxel, with α = k/(classes − 1) for the class k of the voxel. */
export function fuse(
  foreground: Float32Array,
  background: Float32Array,
  classMap: Uint8Array,
  classes: number,
): Float32Array {
  const out = new Float32Array(classMap.length);
  for (let i = 0; i < out.length; i++) {
    const alpha = classMap[i] / (classes - 1);
    out[i] = alpha * foreground[i] + (1 - alpha) * background[i];
  }
  return out;
}

/**
 * nnssl's centre crop start (`nnsslCenterCropDataLoader3D`): trunc((shape − patch) / 2) per axis, so a
 * volume smaller than the patch is padded on both sides (zeros).
 */
export function centreStart(shape: readonly number[], patch: readonly number[]): Vec3 {
  return [0, 1, 2].map((a) => Math.trunc((shape[a] - patch[a]) / 2)) as Vec3;
}

/** Options of {@link volumeFusionLoss}. */
export interface VolumeFusionLossOptions {
  /** Weight of the Dice term (default 1). */
  diceWeight?: number;
  /** Weight of the cross-entropy term (default 1). */
  ceWeight?: number;
}

/**
 * nnssl's VolumeFusion loss (`DC_and_CE_loss` with `MemoryEfficientSoftDiceLoss(batch_dice=False,
 * do_bg=True, smooth=1e-5)`): −mean over samples and classes of (2·Σ p·y + 1e-5) / (Σ p + Σ y + 1e-5)
 * with p = softmax(logits), plus the mean voxel cross-entropy. `logits` [B, K, D, H, W]; `target` the class
 * map [B, 1, D, H, W] (u8, i32 or u32). The Dice term is negative (in [−1, 0]), as nnU-Net's.
 */
export function volumeFusionLoss(
  logits: Tensor,
  target: Tensor,
  options: VolumeFusionLossOptions = {},
): { loss: Tensor; metrics: { dice: Tensor; crossEntropy: Tensor } } {
  const [b, , ...spatial] = logits.shape;
  const labels = cast(reshape(target, [b, ...spatial]), "i32");
  const dice = softDiceLoss(softmax(logits, 1), labels, { includeBackground: true, smooth: 1e-5 });
  const ce = crossEntropy(logits, labels);
  const loss = add(mulScalar(dice, options.diceWeight ?? 1), mulScalar(ce, options.ceWeight ?? 1));
  return { loss, metrics: { dice, crossEntropy: ce } };
}

/** Cuts a crop of `patch` from `volume` (centre or random start) and augments it (training only). */
function cutCrop(
  volume: SampleVolume,
  patch: Vec3,
  config: VolumeFusionConfig,
  rng: Rng,
  augment: ((crop: ReturnType<SampleVolume["crop"]>, rng: Rng) => void) | undefined,
): Float32Array {
  const start = config.crop === "centre" ? centreStart(volume.shape, patch) : volume.randomStart(patch, rng);
  const crop = volume.crop(start, patch);
  augment?.(crop, rng.fork("augment"));
  return crop.image;
}

/**
 * {@link fuse} on the GPU, for batches whose crops were augmented there: `foreground` and `background`
 * f32 [B, 1, D, H, W], `target` u8 [B, 1, D, H, W]; x = α·fg + (1 − α)·bg with α = k/(K − 1).
 */
export function fuseOnGpu(foreground: Tensor, background: Tensor, target: Tensor, classes: number): Tensor {
  const alpha = mulScalar(cast(target, "f32"), 1 / (classes - 1));
  return add(mul(foreground, alpha), mul(background, addScalar(mulScalar(alpha, -1), 1)));
}

/** The VolumeFusion plugin. */
const plugin: SslMethodPlugin<VolumeFusionConfig> = definePlugin({
  kind: "ssl-method",
  name: "volume-fusion",
  version: meta.version,
  coreApi: "^0.2.0",
  description:
    "VolumeFusion as nnssl: two volumes fused box by box (10–39 boxes, 5 fusion classes), segmented with soft Dice + CE",
  supports: ["cnn", "vit"],
  network: (config: VolumeFusionConfig) => ({ outChannels: config.classes }),
  gpuViewAugmentation: true,
  config: VolumeFusionConfig,
  defaults: {
    cnn: {
      optimizer: { name: "sgd", lr: 1e-2, momentum: 0.99, nesterov: true, weightDecay: 3e-5 },
      schedule: { name: "poly", exponent: 0.9 },
      clipGradNorm: 12,
      patchSize: [160, 160, 160],
      batchSize: 2,
    },
    vit: {
      optimizer: { name: "adamw", lr: 3e-4, betas: [0.9, 0.98], eps: 1e-8, weightDecay: 5e-2 },
      schedule: { name: "warmup-poly", warmup: 50, exponent: 0.9 },
      clipGradNorm: 1,
      patchSize: [160, 160, 160],
      batchSize: 2,
    },
  },
  async sample(context): Promise<SampleOutput> {
    const { config } = context;
    const patch = context.patchSize;
    const augmenting = context.training && config.augmentation === "nnssl";
    // on the GPU path the two crops go raw into their own arrays and are fused after their augmentation
    const raw = augmenting && context.gpuViews === true;
    const augmentInto = (array: string) =>
      augmenting
        ? (crop: ReturnType<SampleVolume["crop"]>, rng: Rng) => {
          context.augment(crop, VOLUME_FUSION_AUGMENTATION, rng, { array, index: 0 });
        }
        : undefined;
    const foreground = cutCrop(
      context.volume,
      patch,
      config,
      context.rng.fork("foreground"),
      augmentInto("foreground"),
    );
    const other = await context.otherVolume();
    const background = cutCrop(
      other,
      patch,
      config,
      context.rng.fork("background"),
      augmentInto("background"),
    );
    const boxes = drawFusionBoxes(patch, config, context.rng.fork("boxes"));
    const target = paintClassMap(patch, boxes);
    if (raw) {
      return {
        foreground: sampleArray(foreground, [1, ...patch]),
        background: sampleArray(background, [1, ...patch]),
        target: sampleArray(target, [1, ...patch]),
      };
    }
    return {
      image: sampleArray(fuse(foreground, background, target, config.classes), [1, ...patch]),
      target: sampleArray(target, [1, ...patch]),
    };
  },
  build({ network, config }) {
    return {
      modules: {},
      loss(batch, { rng }) {
        const image = "image" in batch.tensors
          ? batch.get("image")
          : fuseOnGpu(batch.get("foreground"), batch.get("background"), batch.get("target"), config.classes);
        const logits = network.forward(image, { rng });
        return volumeFusionLoss(logits, batch.get("target"), config);
      },
    };
  },
});

export default plugin;
