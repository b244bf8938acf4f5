/**
 * SimMIM for ViTs as nnssl pretrains Primus with it (`SimMIMEvaTrainer.py`, `evaSimMIM_module.py`; facts
 * and deviations in README.md): a mask over the token grid (one block = one patch embedding = one
 * token; 20³ tokens at 160³), exactly int(0.75·N) tokens masked per sample; the masked tokens are
 * replaced by a learnable mask token (normal, std 1e-6) after the patch embedding and before the position
 * embedding (Primus's `forward(x, { maskToken })`); the full sequence goes through the encoder and the
 * network's own patch decoder (no transformer decoder); the loss is the MSE (or, as in the SimMIM paper,
 * the L1 error) over the voxels of the masked tokens, against the raw intensities.
 *
 * Data side (`sample`): the run's standard patch `image` and the token mask `tokenMask`, u8 over the
 * token grid (1 = masked), drawn from the sample's seeded stream.
 */
import {
  add,
  cast,
  definePlugin,
  expand,
  type Generator,
  l1Loss,
  Module,
  mseLoss,
  mul,
  type Network,
  normal,
  reshape,
  type Rng,
  sampleArray,
  type SslMethodPlugin,
  type Tensor,
  type Vec3,
  z,
} from "@voxssl/core";
import meta from "./deno.json" with { type: "json" };

/** SimMIM's configuration. */
export interface SimmimConfig {
  /** Fraction of tokens masked per sample: exactly int(ratio · N) (default 0.75). */
  maskRatio: number;
  /** The ViT's token (patch embedding) size in voxels, one edge or three (default 8, Primus's). */
  tokenSize: number | Vec3;
  /** The reconstruction loss over the masked voxels: "mse" (nnssl) or "l1" (the SimMIM paper). */
  loss: "mse" | "l1";
}

/** The zod schema of {@link SimmimConfig}, with its defaults. */
const SimmimConfig: z.ZodType<SimmimConfig> = z.object({
  /** Fraction of tokens masked per sample (nnssl: 0.75). */
  maskRatio: z.number().gt(0).lt(1).default(0.75),
  /** The ViT's token (patch embedding) size, checked against the network when built. */
  tokenSize: z.union([
    z.number().int().positive(),
    z.tuple([z.number().int().positive(), z.number().int().positive(), z.number().int().positive()]),
  ]).default(8),
  /** "mse" (nnssl's MAEMSELoss) or "l1" (the SimMIM paper's). */
  loss: z.enum(["mse", "l1"]).default("mse"),
});

/** The token size as three edges. */
function sizeOf(size: number | readonly number[]): Vec3 {
  return typeof size === "number" ? [size, size, size] : [size[0], size[1], size[2]];
}

/** The token grid of a patch (patch ÷ token size per axis), or an error naming both when one does not divide. */
export function simmimTokenGrid(patch: readonly number[], tokenSize: number | readonly number[]): Vec3 {
  const s = sizeOf(tokenSize);
  const grid = patch.map((p, a) => p / s[a]);
  if (patch.length !== 3 || grid.some((g) => !Number.isInteger(g) || g < 1)) {
    throw new RangeError(
      `simmim: the patch ${patch.join("×")} is not a whole number of ${
        s.join("×")
      } tokens (methodConfig.tokenSize)`,
    );
  }
  return grid as Vec3;
}

/** Tokens masked of `n`, as nnssl's `create_blocky_mask` counts them: int(ratio · n). */
export function maskedTokenCount(n: number, maskRatio: number): number {
  return Math.trunc(maskRatio * n);
}

/**
 * A token mask with exactly `count` of `n` tokens set (1 = masked), every subset equally likely (a
 * partial Fisher–Yates shuffle from `rng`).
 */
export function drawTokenMask(n: number, count: number, rng: Rng): Uint8Array {
  if (!Number.isInteger(count) || count < 0 || count > n) {
    throw new RangeError(`drawTokenMask(): cannot mask ${count} of ${n} tokens`);
  }
  const order = Int32Array.from({ length: n }, (_, i) => i);
  const mask = new Uint8Array(n);
  for (let i = 0; i < count; i++) {
    const j = i + rng.int(n - i);
    [order[i], order[j]] = [order[j], order[i]];
    mask[order[i]] = 1;
  }
  return mask;
}

/** Expands a token mask [B, gd, gh, gw] (f32) to its voxels [B, 1, gd·sd, gh·sh, gw·sw] on the GPU. */
export function tokenVoxelMask(mask: Tensor, tokenSize: number | readonly number[]): Tensor {
  const [b, gd, gh, gw] = mask.shape;
  const [sd, sh, sw] = sizeOf(tokenSize);
  const wide = expand(reshape(mask, [b, 1, gd, 1, gh, 1, gw, 1]), [b, 1, gd, sd, gh, sh, gw, sw]);
  return reshape(wide, [b, 1, gd * sd, gh * sh, gw * sw]);
}

/** SimMIM's learnable mask token: one parameter `mask_token` [1, 1, D], normal with std 1e-6. */
export class MaskToken extends Module {
  /** A token of width `dim` drawn from `rng`. */
  constructor(dim: number, rng: Generator) {
    super();
    this.registerParameter("mask_token", normal([1, 1, dim], 1e-6, rng));
  }
  /** The token [1, 1, D]. */
  get token(): Tensor {
    return this.p("mask_token");
  }
}

/** SimMIM's reconstruction and the voxels of the masked tokens (for the loss and for tests). */
export interface SimmimOutput {
  /** Reconstruction [B, out, D, H, W]. */
  prediction: Tensor;
  /** The voxels of the masked tokens, f32 [B, 1, D, H, W] (1 = in the loss). */
  lossMask: Tensor;
}

/**
 * SimMIM's forward pass: `image` [B, 1, D, H, W] through `network` with the tokens where `tokenMask`
 * (u8 [B, gd, gh, gw], 1 = masked, flattened row-major like the network's tokens) is set replaced by
 * `token` before the position embedding; `rng` draws drop path.
 */
export function simmimForward(
  network: Network,
  token: Tensor,
  batch: { image: Tensor; tokenMask: Tensor },
  rng: Generator,
): SimmimOutput {
  const { image, tokenMask } = batch;
  const [b, gd, gh, gw] = tokenMask.shape;
  const prediction = network.forward(image, {
    maskToken: { mask: reshape(tokenMask, [b, gd * gh * gw]), token },
    rng,
  });
  const size = image.shape.slice(2).map((p, a) => p / [gd, gh, gw][a]);
  return { prediction, lossMask: tokenVoxelMask(cast(tokenMask, "f32"), size) };
}

/** The SimMIM plugin (`--method simmim`). */
const plugin: SslMethodPlugin<SimmimConfig> = definePlugin({
  kind: "ssl-method",
  name: "simmim",
  version: meta.version,
  coreApi: "^0.2.0",
  description:
    "SimMIM as nnssl (ViTs): 75% of the tokens replaced by a learned mask token before the position embedding, patch decoder, MSE on masked voxels",
  supports: ["vit"],
  network: { outChannels: 1 },
  config: SimmimConfig,
  defaults: {
    vit: {
      optimizer: { name: "adamw", lr: 3e-4, betas: [0.9, 0.98], eps: 1e-8, weightDecay: 5e-2 },
      schedule: { name: "warmup-poly", warmup: 50, exponent: 0.9 },
      clipGradNorm: 1,
      patchSize: [160, 160, 160],
      batchSize: 2,
      augmentation: "nnssl-mae",
    },
  },
  // sample() returns context.patch()'s image (and deface mask) untouched: the GPU may augment it
  gpuAugmentation: true,
  sample(context) {
    const { config } = context;
    const patch = context.patch();
    const grid = simmimTokenGrid(patch.shape, config.tokenSize);
    const n = grid[0] * grid[1] * grid[2];
    const count = maskedTokenCount(n, config.maskRatio);
    if (count === 0) {
      throw new RangeError(
        `simmim: masking int(${config.maskRatio}·${n}) = 0 of the patch's ${n} tokens leaves nothing to reconstruct; use a larger patch`,
      );
    }
    return {
      image: sampleArray(patch.image, [1, ...patch.shape]),
      tokenMask: sampleArray(drawTokenMask(n, count, context.rng), grid),
    };
  },
  build({ network, config, rng, patchSize }) {
    const tokens = network.tokens;
    if (!tokens) throw new Error("simmim: needs a ViT with token hooks (network.tokens)");
    const grid = tokens.grid(patchSize);
    const expected = simmimTokenGrid(patchSize, config.tokenSize);
    if (grid.some((g, a) => g !== expected[a])) {
      throw new Error(
        `simmim: the mask is drawn for tokens of ${
          sizeOf(config.tokenSize).join("×")
        } voxels (methodConfig.tokenSize), but the network cuts the ${patchSize.join("×")} patch into ${
          grid.join("×")
        } tokens: set methodConfig.tokenSize to the network's patch embedding`,
      );
    }
    const mask = new MaskToken(tokens.embedDim, rng);
    return {
      modules: { mask },
      loss(batch, { rng }) {
        const image = batch.get("image"); // [B, 1, D, H, W]
        const { prediction, lossMask } = simmimForward(network, mask.token, {
          image,
          tokenMask: batch.get("tokenMask"),
        }, rng);
        const reconstruction = config.loss === "l1" ? l1Loss : mseLoss;
        return {
          loss: reconstruction(prediction, image, { mask: lossMask }),
          // masked tokens are replaced by a learnt token: shown as zeros
          reconstruction: () => ({
            input: image,
            corrupted: mul(image, add(mul(lossMask, -1), 1)),
            prediction,
            target: image,
          }),
        };
      },
    };
  },
});

export default plugin;
