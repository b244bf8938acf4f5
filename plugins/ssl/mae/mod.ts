/**
 * MAE for CNNs (nnssl's MAE on ResEnc): the patch is cut into cubic blocks (16³ by default, a 10³ grid
 * at 160³), a fixed fraction of them (75%) is set to zero in the input, and the network is trained to
 * reconstruct the original intensities; the MSE is taken over the masked voxels only. Optionally voxels
 * inside the deface mask are left out of the loss (loss mask × (1 − deface)), the OpenMind variant that
 * improved downstream Dice.
 *
 * Data side (`sample`, in the loader's workers): the run's standard patch, plus which blocks are masked,
 * exactly round(ratio · blocks) of them, drawn from the sample's seeded stream, shipped as a small u8
 * block grid. GPU side: the grid is expanded to voxels with a reshape/expand (no upload of a voxel mask).
 *
 * Simplifications relative to nnssl: none in the CNN objective.
 *
 * ViTs (family "vit", e.g. Primus): the same objective, i.e. the SimMIM-style masked-input variant:
 * masked blocks are zeroed in the input voxels, every token goes through the encoder, and the network's
 * own patch decoder reconstructs them. This is a simplification of nnssl's EvaMAE, which drops 75% of
 * the 8³ tokens before the encoder and fills them with a mask token before a 2-block transformer
 * decoder. Blocks of 16³ cover 2³ tokens of an 8³ patch embedding; `block: 8` masks single tokens as
 * EvaMAE does. The ViT defaults are EvaMAE's: AdamW lr 3e-4, weight decay 5e-2, betas (0.9, 0.98),
 * 50-epoch linear warm-up then poly, gradient clip 1, patch 160³, batch 2.
 */
import {
  add,
  cast,
  clamp,
  definePlugin,
  div,
  expand,
  mul,
  powScalar,
  reshape,
  sampleArray,
  type SampleOutput,
  slice,
  type SslMethodPlugin,
  sub,
  sum,
  type Tensor,
  z,
} from "@voxssl/core";
import meta from "./deno.json" with { type: "json" };

/** MAE's configuration. */
export interface MaeConfig {
  /** Fraction of blocks masked (default 0.75). */
  maskRatio: number;
  /** Edge of a masked block in voxels (default 16). */
  block: number;
  /** Leave voxels inside the deface mask out of the loss (needs a "deface" mask; default false). */
  excludeDefaced: boolean;
}

/** The zod schema of {@link MaeConfig}, with its defaults. */
const MaeConfig: z.ZodType<MaeConfig> = z.object({
  /** Fraction of blocks masked. */
  maskRatio: z.number().gt(0).lt(1).default(0.75),
  /** Edge of a masked block in voxels. */
  block: z.number().int().positive().default(16),
  /** Leave voxels inside the deface mask out of the loss (needs a "deface" mask in the data). */
  excludeDefaced: z.boolean().default(false),
});

/** The block grid covering a patch (the last block may stick out; it is cropped on the GPU). */
export function blockGrid(shape: readonly number[], block: number): [number, number, number] {
  return [Math.ceil(shape[0] / block), Math.ceil(shape[1] / block), Math.ceil(shape[2] / block)];
}

/** Chooses exactly round(ratio · n) of n blocks with a seeded partial Fisher–Yates shuffle (1 = masked). */
export function chooseMaskedBlocks(n: number, ratio: number, next: () => number): Uint8Array {
  const order = Array.from({ length: n }, (_, i) => i);
  const masked = Math.round(ratio * n);
  const mask = new Uint8Array(n);
  for (let i = 0; i < masked; i++) {
    const j = i + Math.floor(next() * (n - i));
    [order[i], order[j]] = [order[j], order[i]];
    mask[order[i]] = 1;
  }
  return mask;
}

/** Expands a block grid [B, gd, gh, gw] to a voxel mask [B, 1, D, H, W] on the GPU. */
export function voxelMask(grid: Tensor, block: number, patch: readonly number[]): Tensor {
  const [b, gd, gh, gw] = grid.shape;
  const wide = expand(reshape(grid, [b, 1, gd, 1, gh, 1, gw, 1]), [b, 1, gd, block, gh, block, gw, block]);
  const full = reshape(wide, [b, 1, gd * block, gh * block, gw * block]);
  return full.shape[2] === patch[0] && full.shape[3] === patch[1] && full.shape[4] === patch[2]
    ? full
    : slice(full, [0, 0, 0, 0, 0], [b, 1, patch[0], patch[1], patch[2]]);
}

/** 1 − t. */
function oneMinus(t: Tensor): Tensor {
  return add(mul(t, -1), 1);
}

/** The masked reconstruction loss: Σ (pred − target)² · m / max(Σ m, 1). */
export function maskedMse(prediction: Tensor, target: Tensor, lossMask: Tensor): Tensor {
  const squared = mul(powScalar(sub(prediction, target), 2), lossMask);
  return div(sum(squared), clamp(sum(lossMask), 1, Number.MAX_VALUE));
}

/** The MAE method plugin (`--method mae`). */
const plugin: SslMethodPlugin<MaeConfig> = definePlugin({
  kind: "ssl-method",
  name: "mae",
  version: meta.version,
  coreApi: "^0.2.0",
  description:
    "masked autoencoding with cubic block masks (75% of 16³ blocks), MSE on masked voxels (ViTs: masked input)",
  supports: ["cnn", "vit"],
  network: { outChannels: 1 },
  config: MaeConfig,
  defaults: {
    cnn: {
      optimizer: { name: "sgd", lr: 1e-2, momentum: 0.99, nesterov: true, weightDecay: 3e-5 },
      schedule: { name: "poly", exponent: 0.9 },
      clipGradNorm: 12,
      patchSize: [160, 160, 160],
      batchSize: 2,
      augmentation: "nnssl-mae",
    },
    vit: {
      optimizer: { name: "adamw", lr: 3e-4, betas: [0.9, 0.98], eps: 1e-8, weightDecay: 5e-2 },
      schedule: { name: "warmup-poly", warmup: 50, exponent: 0.9 },
      clipGradNorm: 1,
      patchSize: [160, 160, 160],
      batchSize: 2,
      augmentation: "nnssl-mae",
    },
  },
  masks: (config) => (config.excludeDefaced ? ["deface"] : []),
  sample(context) {
    const { config } = context;
    const patch = context.patch();
    const grid = blockGrid(patch.shape, config.block);
    const blocks = chooseMaskedBlocks(
      grid[0] * grid[1] * grid[2],
      config.maskRatio,
      () => context.rng.next(),
    );
    const out: SampleOutput = {
      image: sampleArray(patch.image, [1, ...patch.shape]),
      blockMask: sampleArray(blocks, grid),
    };
    if (patch.masks.deface) out.deface = sampleArray(patch.masks.deface, [1, ...patch.shape]);
    return out;
  },
  build({ network, config }) {
    return {
      modules: {},
      loss(batch, { rng }) {
        const image = batch.get("image");
        const patch = image.shape.slice(2);
        const grid = cast(batch.get("blockMask"), "f32"); // [B, gd, gh, gw], 1 = masked
        const mask = voxelMask(grid, config.block, patch);
        // masked blocks are zero; the step's generator draws drop-path masks (ViTs)
        const prediction = network.forward(mul(image, oneMinus(mask)), { rng });
        const lossMask = config.excludeDefaced ? mul(mask, oneMinus(cast(batch.get("deface"), "f32"))) : mask;
        return { loss: maskedMse(prediction, image, lossMask) };
      },
    };
  },
});

export default plugin;
