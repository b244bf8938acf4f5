/**
 * The SwinUNETR pretext tasks (Tang et al. 2022) as nnssl trains them on ResEnc and Primus
 * (`SwinUNETRTrainer.py`, `SwinUNETREvaTrainer.py`, `swin_unetr_transform.py`, `swinunetr_loss.py`,
 * `swinunetr_architecture.py`; facts in README.md): two views of each patch, each turned by its own
 * k·90° (k uniform in 0…3) in the plane of the last two axes, then cut out: boxes of N(0, 1) noise
 * (min-max scaled to [0, 1]) until their summed volume reaches a budget of U(0, 0.3) of the patch, and,
 * with a probability, a second budget of boxes copied from another volume. The encoder sees the cut-out
 * views; on its bottleneck a rotation head (Linear C→4) and a contrastive head (Linear C→512) read fixed
 * positions 0 and 1 of the flattened grid, and a reconstruction head mirroring the encoder restores the
 * clean rotated view. Loss: L1(reconstruction, rotated view) + NT-Xent(τ 0.5, the two views of a patch
 * are positives) + CE(rotation), weights 1, 1, 1.
 *
 * Data side (`sample`): `views` f32 [2, 1, D, H, W] (cut out), `targets` f32 [2, 1, D, H, W] (the clean
 * rotated views) and `rotations` i32 [2] (k of each view).
 */
import {
  add,
  crossEntropy,
  definePlugin,
  l1Loss,
  Linear,
  mulScalar,
  type Network,
  reshape,
  type Rng,
  rot90,
  sampleArray,
  type SslMethodPlugin,
  type Tensor,
  type Vec3,
  z,
} from "@voxssl/core";
import { ntXent } from "@voxssl/simclr";
import meta from "./deno.json" with { type: "json" };
import {
  headInputs,
  reconstructionChannels,
  ReconstructionHead,
  upsampleTargets,
  vitUpsamplings,
} from "./head.ts";

export {
  headInputs,
  reconstructionChannels,
  ReconstructionHead,
  tokenAt,
  upsampleTargets,
  vitUpsamplings,
} from "./head.ts";

/** The voxssl axes of the rotation plane: nnssl's (Y, Z) of [X, Y, Z] are voxssl's (H, W) of [D, H, W]. */
export const ROTATION_AXES: [number, number] = [1, 2];

/** The cut-out's geometry, as fractions of the patch. */
export interface CutoutConfig {
  /** The budget of one cut-out is U(0, maxDrop) of the patch's voxels (nnssl 0.3). */
  maxDrop: number;
  /** Smallest box side per axis, as a fraction of the axis, truncated, at least 1 voxel (nnssl 0.05: 8 at 160). */
  minSide: number;
  /** Largest box side per axis, as a fraction of the axis, truncated (nnssl 0.25: 40 at 160). */
  maxSide: number;
}

/** The SwinUNETR pretext's configuration. */
export interface SwinunetrConfig {
  /** Cut-out geometry (noise boxes and copied boxes alike). */
  cutout: CutoutConfig;
  /**
   * Probability that a view also gets boxes copied from another volume (default 0.5: nnssl's (B − 1)/B at
   * its per-GPU batch of 2).
   */
  copyProbability: number;
  /** Input of the rotation and contrastive heads: bottleneck positions 0 and 1 ("tokens", nnssl) or its average. */
  headInput: "tokens" | "pooled";
  /** Width of the contrastive head (default 512). */
  contrastDim: number;
  /** NT-Xent temperature (default 0.5). */
  temperature: number;
  /** Weight of the L1 reconstruction term (default 1). */
  reconstructionWeight: number;
  /** Weight of the contrastive term (default 1). */
  contrastWeight: number;
  /** Weight of the rotation term (default 1). */
  rotationWeight: number;
}

const fraction = z.number().gt(0).max(1);

/** The zod schema of {@link SwinunetrConfig}, with its defaults. */
const SwinunetrConfig: z.ZodType<SwinunetrConfig> = z.object({
  /** Cut-out geometry (nnssl: budget U(0, 0.3), sides 5–25% of the axis). */
  cutout: z.object({
    maxDrop: z.number().gt(0).lt(1).default(0.3),
    minSide: fraction.default(0.05),
    maxSide: fraction.default(0.25),
  }).refine((c) => c.minSide <= c.maxSide, "cutout: minSide must not exceed maxSide").default({
    maxDrop: 0.3,
    minSide: 0.05,
    maxSide: 0.25,
  }),
  /** Probability of the copied boxes per view (nnssl: (B − 1)/B = 0.5 at batch 2). */
  copyProbability: z.number().min(0).max(1).default(0.5),
  /** Head input: fixed positions 0 and 1 of the bottleneck (nnssl, MONAI) or its global average. */
  headInput: z.enum(["tokens", "pooled"]).default("tokens"),
  /** Contrastive head width (nnssl: 512). */
  contrastDim: z.number().int().positive().default(512),
  /** NT-Xent temperature (nnssl: 0.5). */
  temperature: z.number().positive().default(0.5),
  /** Loss weights (nnssl: 1, 1, 1). */
  reconstructionWeight: z.number().min(0).default(1),
  contrastWeight: z.number().min(0).default(1),
  rotationWeight: z.number().min(0).default(1),
});

/**
 * The side range [lo, hi] (inclusive) of a cut-out box along an axis of `extent` voxels, as nnssl's
 * `patch_rand_drop`: lo = int(minSide · extent), hi = int(maxSide · extent) (8 and 40 at 160); here lo is
 * at least 1 and hi at least lo, so that small patches still get boxes (nnssl's loop never ends when both
 * round to 0).
 */
export function cutoutSides(extent: number, config: Pick<CutoutConfig, "minSide" | "maxSide">): {
  lo: number;
  hi: number;
} {
  const lo = Math.max(1, Math.trunc(config.minSide * extent));
  return { lo, hi: Math.max(lo, Math.trunc(config.maxSide * extent)) };
}

/** A cut-out box: [start, end) per axis, clipped to the patch. */
export interface CutoutBox {
  /** First voxel per axis. */
  start: Vec3;
  /** One past the last voxel per axis (at most the patch's extent). */
  end: Vec3;
}

/** The voxels of a box. */
export function boxVolume(box: CutoutBox): number {
  return (box.end[0] - box.start[0]) * (box.end[1] - box.start[1]) * (box.end[2] - box.start[2]);
}

/**
 * Draws one cut-out as nnssl's `patch_rand_drop`: a budget of U(0, maxDrop) · voxels, then boxes until
 * their summed volume (overlaps counted twice) reaches it; per box and axis a start uniform in
 * {0 … extent − lo} and a side uniform in {lo … hi} ({@link cutoutSides}), the box clipped at the border.
 */
export function drawCutoutBoxes(
  patch: readonly number[],
  config: CutoutConfig,
  rng: Rng,
): { budget: number; boxes: CutoutBox[]; total: number } {
  const ranges = [0, 1, 2].map((a) => cutoutSides(patch[a], config));
  const budget = rng.uniform(0, config.maxDrop) * patch[0] * patch[1] * patch[2];
  const boxes: CutoutBox[] = [];
  let total = 0;
  while (total < budget) {
    const start = ranges.map(({ lo }, a) => rng.intRange(0, patch[a] - lo)) as Vec3;
    const end = ranges.map(({ lo, hi }, a) => Math.min(start[a] + rng.intRange(lo, hi), patch[a])) as Vec3;
    const box = { start, end };
    boxes.push(box);
    total += boxVolume(box);
  }
  return { budget, boxes, total };
}

/** Calls `fn` with the flat index of every voxel of `box` in a patch, in C order. */
function forEachVoxel(patch: readonly number[], box: CutoutBox, fn: (index: number) => void): void {
  const [, H, W] = patch;
  for (let d = box.start[0]; d < box.end[0]; d++) {
    for (let h = box.start[1]; h < box.end[1]; h++) {
      const row = (d * H + h) * W;
      for (let w = box.start[2]; w < box.end[2]; w++) fn(row + w);
    }
  }
}

/**
 * Fills each box of `image` with standard normal noise min-max scaled to [0, 1] over the box (a box whose
 * noise is constant, i.e. a single voxel, gets 0; nnssl would divide by zero), in order.
 */
export function fillNoise(
  image: Float32Array,
  patch: readonly number[],
  boxes: readonly CutoutBox[],
  rng: Rng,
): void {
  for (const box of boxes) {
    const noise = Float64Array.from({ length: boxVolume(box) }, () => rng.normal());
    let lo = Infinity, hi = -Infinity;
    for (const v of noise) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    let k = 0;
    forEachVoxel(patch, box, (i) => (image[i] = hi > lo ? (noise[k++] - lo) / (hi - lo) : 0));
  }
}

/** Copies the voxels of each box from `donor` into `image` (same patch shape). */
export function copyBoxes(
  image: Float32Array,
  donor: Float32Array,
  patch: readonly number[],
  boxes: readonly CutoutBox[],
): void {
  for (const box of boxes) forEachVoxel(patch, box, (i) => (image[i] = donor[i]));
}

/** What {@link swinunetrLoss} takes, for N = 2B views ordered view 1, view 2 of each sample in turn. */
export interface SwinunetrOutputs {
  /** Rotation logits [N, 4]. */
  rotationLogits: Tensor;
  /** The rotation class k of each view, i32 [N]. */
  rotations: Tensor;
  /** Contrastive embeddings [N, d]; rows 2i and 2i + 1 are the two views of sample i. */
  contrast: Tensor;
  /** Reconstruction [N, 1, D, H, W]. */
  reconstruction: Tensor;
  /** The clean rotated views [N, 1, D, H, W]. */
  target: Tensor;
}

/** Options of {@link swinunetrLoss}. */
export interface SwinunetrLossOptions {
  /** NT-Xent temperature (default 0.5). */
  temperature?: number;
  /** Weight of the reconstruction term (default 1). */
  reconstructionWeight?: number;
  /** Weight of the contrastive term (default 1). */
  contrastWeight?: number;
  /** Weight of the rotation term (default 1). */
  rotationWeight?: number;
}

/**
 * nnssl's `SwinUNETRLoss`: mean |reconstruction − target| + NT-Xent of the contrastive embeddings (cosine
 * similarity / τ; each view's positive is the other view of its sample; the denominator sums every other
 * view, the positive included) + the mean cross-entropy of the rotation logits; each term is returned as a
 * metric too.
 */
export function swinunetrLoss(
  outputs: SwinunetrOutputs,
  options: SwinunetrLossOptions = {},
): { loss: Tensor; metrics: { reconstruction: Tensor; contrast: Tensor; rotation: Tensor } } {
  const reconstruction = l1Loss(outputs.reconstruction, outputs.target);
  const contrast = ntXent(outputs.contrast, options.temperature ?? 0.5).loss;
  const rotation = crossEntropy(outputs.rotationLogits, outputs.rotations);
  const loss = add(
    add(
      mulScalar(reconstruction, options.reconstructionWeight ?? 1),
      mulScalar(contrast, options.contrastWeight ?? 1),
    ),
    mulScalar(rotation, options.rotationWeight ?? 1),
  );
  return { loss, metrics: { reconstruction, contrast, rotation } };
}

/** The token grid of a ViT at `patch` (throws for a ViT without token hooks). */
function tokenGrid(network: Network, patch: Vec3): Vec3 {
  if (!network.tokens) {
    throw new Error("swinunetr-pretext: a ViT needs `tokens.grid` to size its reconstruction head");
  }
  return network.tokens.grid(patch);
}

/** The SwinUNETR pretext plugin. */
const plugin: SslMethodPlugin<SwinunetrConfig> = definePlugin({
  kind: "ssl-method",
  name: "swinunetr-pretext",
  version: meta.version,
  coreApi: "^0.2.0",
  description:
    "SwinUNETR's pretext tasks as nnssl (on ResEnc/Primus): rotation + cut-out views, L1 reconstruction + NT-Xent + rotation CE",
  supports: ["cnn", "vit"],
  network: { encoderOnly: true },
  config: SwinunetrConfig,
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
  async sample(context) {
    const { config } = context;
    const patch = context.patchSize;
    const voxels = patch[0] * patch[1] * patch[2];
    const clean = context.patch().image;
    let donor: Float32Array | undefined;
    const views = new Float32Array(2 * voxels);
    const targets = new Float32Array(2 * voxels);
    const rotations = new Int32Array(2);
    for (let v = 0; v < 2; v++) {
      const rng = context.rng.fork("view", v);
      const k = rng.int(4);
      const rotated = rot90(clean, patch, ROTATION_AXES, k);
      const view = rotated.slice();
      fillNoise(
        view,
        patch,
        drawCutoutBoxes(patch, config.cutout, rng.fork("cutout")).boxes,
        rng.fork("noise"),
      );
      if (rng.chance(config.copyProbability)) {
        donor ??= (await context.otherVolume()).patch().image;
        const donorView = rot90(donor, patch, ROTATION_AXES, rng.int(4));
        copyBoxes(view, donorView, patch, drawCutoutBoxes(patch, config.cutout, rng.fork("copy")).boxes);
      }
      views.set(view, v * voxels);
      targets.set(rotated, v * voxels);
      rotations[v] = k;
    }
    return {
      views: sampleArray(views, [2, 1, ...patch]),
      targets: sampleArray(targets, [2, 1, ...patch]),
      rotations: sampleArray(rotations, [2]),
    };
  },
  build({ network, config, rng, patchSize }) {
    if (patchSize[1] !== patchSize[2]) {
      throw new RangeError(
        `swinunetr-pretext: quarter turns in the (H, W) plane need H = W, got the patch ${
          patchSize.join("×")
        }`,
      );
    }
    const upsamplings = network.family === "vit"
      ? vitUpsamplings(patchSize, tokenGrid(network, patchSize))
      : 0;
    const channels = reconstructionChannels(network.family, network.featureChannels, upsamplings);
    const width = network.featureChannels[network.featureChannels.length - 1];
    const rotationHead = new Linear(width, 4, rng, { init: "torch-default" });
    const contrastHead = new Linear(width, config.contrastDim, rng, { init: "torch-default" });
    const reconstructionHead = new ReconstructionHead(channels, rng);
    return {
      modules: {
        rotation_proj_head: rotationHead,
        contrast_proj_head: contrastHead,
        recon_proj_head: reconstructionHead,
      },
      loss(batch, { rng }) {
        const views = batch.get("views"); // [B, 2, 1, D, H, W]
        const [b, v, c, ...spatial] = views.shape;
        const x = reshape(views, [b * v, c, ...spatial]);
        const features = network.encode(x, { rng });
        const bottleneck = features[features.length - 1];
        const inputs = headInputs(bottleneck, config.headInput);
        const targets = upsampleTargets(
          network.family,
          features.map((f) => f.shape.slice(2)),
          spatial,
          reconstructionHead.stages,
        );
        return swinunetrLoss({
          rotationLogits: rotationHead.forward(inputs.rotation),
          rotations: reshape(batch.get("rotations"), [b * v]),
          contrast: contrastHead.forward(inputs.contrast),
          reconstruction: reconstructionHead.forward(bottleneck, targets),
          target: reshape(batch.get("targets"), [b * v, c, ...spatial]),
        }, config);
      },
    };
  },
});

export default plugin;
