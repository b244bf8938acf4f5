/**
 * MAE (`--method mae`), nnssl's masked autoencoding for both families.
 *
 * CNNs (nnssl's MAE on ResEnc, `BaseMAETrainer`): the patch is cut into cubic blocks (16³ by default, a
 * 10³ grid at 160³), a fixed fraction of them (75%) is set to zero in the input, and the network is
 * trained to reconstruct the original intensities; the MSE is taken over the masked voxels only.
 * Optionally voxels inside the deface mask are left out of the loss (loss mask × (1 − deface)), the
 * OpenMind variant that improved downstream Dice. Simplifications relative to nnssl: none.
 *
 * ViTs (family "vit", Primus), `vitVariant`:
 * - "token-dropping" (default; nnssl's EvaMAE, `BaseEvaMAETrainer`): 75% of the tokens are dropped
 *   before the encoder, the full sequence is restored with a learnable mask token, a 2-block transformer
 *   decoder (the method's module `decoder`) and the network's own patch decoder reconstruct the voxels,
 *   and the MSE is taken over the voxels of the dropped tokens (./vit.ts).
 * - "masked-input" (voxssl 2.x): masked blocks are zeroed in the input voxels, every token goes through
 *   the encoder, and the network's own patch decoder reconstructs them (the CNN objective on a ViT).
 *
 * Data side (`sample`, in the loader's workers): the run's standard patch, plus which blocks are masked
 * (exactly round(ratio · blocks) of them, a small u8 block grid `blockMask`) and, for token dropping,
 * the kept tokens (`keep`, i32 [K]) and the loss's token mask (`tokenMask`, u8 over the token grid),
 * all drawn from the sample's seeded stream. The data side does not know the run's architecture, so it
 * ships both; each family's loss reads its own.
 */
import {
  add,
  cast,
  clamp,
  definePlugin,
  div,
  expand,
  type Generator,
  mseLoss,
  mul,
  type Network,
  powScalar,
  reshape,
  sampleArray,
  type SampleOutput,
  slice,
  type SslMethodPlugin,
  sub,
  sum,
  type Tensor,
  type Vec3,
  z,
} from "@voxssl/core";
import meta from "./deno.json" with { type: "json" };
import {
  decoderConfig,
  drawKeptTokens,
  droppedTokens,
  keptTokenCount,
  MaeVitDecoder,
  nnsslLossTokens,
  restoreSequence,
  tokenGridOf,
  tokenSizeOf,
} from "./vit.ts";

export {
  decoderConfig,
  type DecoderOptions,
  drawKeptTokens,
  droppedTokens,
  keptTokenCount,
  MaeVitDecoder,
  nnsslLossTokens,
  restoreSequence,
  tokenGridOf,
  tokenSizeOf,
} from "./vit.ts";
/** Primus's block and config, which the token-dropping decoder is built from. */
export type { EvaBlock, PrimusConfig } from "@voxssl/primus";

/** MAE's configuration. */
export interface MaeConfig {
  /** Fraction of blocks (CNN, masked input) or tokens (token dropping) masked (default 0.75). */
  maskRatio: number;
  /** Edge of a masked block in voxels (CNN, ViT masked input; default 16). */
  block: number;
  /** Leave voxels inside the deface mask out of the loss (needs a "deface" mask; default false). */
  excludeDefaced: boolean;
  /** ViTs: drop tokens before the encoder (nnssl's EvaMAE; default) or zero masked blocks in the input. */
  vitVariant: "token-dropping" | "masked-input";
  /** Token dropping: the ViT's token (patch embedding) size in voxels, one edge or three (default 8). */
  tokenSize: number | Vec3;
  /** Token dropping: transformer blocks of the decoder (default 2). */
  decoderDepth: number;
  /** Token dropping: heads of the decoder's blocks (default: the encoder's). */
  decoderHeads?: number;
  /** Token dropping: the decoder's drop-path rate (default: the encoder's `dropPathRate`). */
  decoderDropPathRate?: number;
  /**
   * Token dropping: reproduce nnssl's token-order bug, whose loss mask is the axis-2/3 transpose of the
   * tokens it dropped (default false: the loss covers exactly the dropped tokens).
   */
  nnsslTransposedLossMask: boolean;
}

const size3 = z.tuple([
  z.number().int().positive(),
  z.number().int().positive(),
  z.number().int().positive(),
]);

/** The zod schema of {@link MaeConfig}, with its defaults. */
const MaeConfig: z.ZodType<MaeConfig> = z.object({
  /** Fraction of blocks (CNN, masked input) or tokens (token dropping) masked. */
  maskRatio: z.number().gt(0).lt(1).default(0.75),
  /** Edge of a masked block in voxels (CNN, ViT masked input). */
  block: z.number().int().positive().default(16),
  /** Leave voxels inside the deface mask out of the loss (needs a "deface" mask in the data). */
  excludeDefaced: z.boolean().default(false),
  /** ViTs: "token-dropping" (nnssl's EvaMAE) or "masked-input" (zeroed blocks, every token encoded). */
  vitVariant: z.enum(["token-dropping", "masked-input"]).default("token-dropping"),
  /** Token dropping: the ViT's token (patch embedding) size, checked against the network when built. */
  tokenSize: z.union([z.number().int().positive(), size3]).default(8),
  /** Token dropping: decoder blocks (nnssl: 2). */
  decoderDepth: z.number().int().positive().default(2),
  /** Token dropping: decoder heads (default the encoder's; nnssl: 12, the encoder's). */
  decoderHeads: z.number().int().positive().optional(),
  /** Token dropping: decoder drop-path rate (default the encoder's). */
  decoderDropPathRate: z.number().min(0).lt(1).optional(),
  /** Token dropping: nnssl's transposed loss mask (its token-order bug), for comparisons only. */
  nnsslTransposedLossMask: z.boolean().default(false),
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

/**
 * Expands a block grid [B, gd, gh, gw] to a voxel mask [B, 1, D, H, W] on the GPU; `block` is the block's
 * edge, or its three edges (a token of an anisotropic patch embedding).
 */
export function voxelMask(grid: Tensor, block: number | readonly number[], patch: readonly number[]): Tensor {
  const [b, gd, gh, gw] = grid.shape;
  const [sd, sh, sw] = tokenSizeOf(block);
  const wide = expand(reshape(grid, [b, 1, gd, 1, gh, 1, gw, 1]), [b, 1, gd, sd, gh, sh, gw, sw]);
  const full = reshape(wide, [b, 1, gd * sd, gh * sh, gw * sw]);
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

/** The token-dropping network's output and the loss's voxel mask (for tests and the loss). */
export interface TokenDroppingOutput {
  /** Reconstruction [B, out, D, H, W]. */
  prediction: Tensor;
  /** The voxels of the loss's tokens, f32 [B, 1, D, H, W] (1 = in the loss). */
  lossMask: Tensor;
}

/**
 * MAE's token-dropping forward pass: `image` [B, 1, D, H, W], `keep` i32 [B, K] and `tokenMask` u8 [B,
 * gd, gh, gw] as the data side made them → the reconstruction and the loss's voxel mask.
 */
export function tokenDroppingForward(
  network: Network,
  decoder: MaeVitDecoder,
  batch: { image: Tensor; keep: Tensor; tokenMask: Tensor },
  rng: Generator,
): TokenDroppingOutput {
  const tokens = network.tokens;
  if (!tokens) throw new Error("mae: token dropping needs a ViT with token hooks (network.tokens)");
  const patch = batch.image.shape.slice(2);
  const grid = decoder.grid;
  const n = grid[0] * grid[1] * grid[2];
  const encoded = tokens.encodeTokens(batch.image, { keep: batch.keep, rng }); // [B, K, D]
  const decoded = decoder.forward(restoreSequence(encoded, batch.keep, decoder.maskToken, n), rng);
  const prediction = tokens.decodeTokens(decoded, grid);
  const size = patch.map((p, a) => p / grid[a]);
  return { prediction, lossMask: voxelMask(cast(batch.tokenMask, "f32"), size, patch) };
}

/** The MAE method plugin (`--method mae`). */
const plugin: SslMethodPlugin<MaeConfig> = definePlugin({
  kind: "ssl-method",
  name: "mae",
  version: meta.version,
  coreApi: "^0.2.0",
  description:
    "masked autoencoding: CNNs 75% of 16³ blocks zeroed; ViTs 75% of tokens dropped + 2-block decoder (EvaMAE); MSE on masked voxels",
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
  // sample() returns context.patch()'s image (and deface mask) untouched: the GPU may augment it
  gpuAugmentation: true,
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
    // token dropping (ViTs): only where the patch is a whole number of tokens (a CNN's patch need not be)
    const tokenGrid = config.vitVariant === "token-dropping"
      ? tokenGridOf(patch.shape, config.tokenSize)
      : undefined;
    if (tokenGrid) {
      const n = tokenGrid[0] * tokenGrid[1] * tokenGrid[2];
      const kept = drawKeptTokens(n, keptTokenCount(n, config.maskRatio), context.rng.fork("tokens"));
      const dropped = droppedTokens(n, kept);
      out.keep = sampleArray(kept, [kept.length]);
      out.tokenMask = sampleArray(
        config.nnsslTransposedLossMask ? nnsslLossTokens(dropped, tokenGrid) : dropped,
        tokenGrid,
      );
    }
    if (patch.masks.deface) out.deface = sampleArray(patch.masks.deface, [1, ...patch.shape]);
    return out;
  },
  build({ network, config, rng, patchSize }) {
    const tokenDropping = network.family === "vit" && config.vitVariant === "token-dropping";
    let decoder: MaeVitDecoder | undefined;
    if (tokenDropping) {
      const grid = network.tokens?.grid(patchSize);
      const expected = tokenGridOf(patchSize, config.tokenSize);
      if (!grid || !expected || grid.some((g, a) => g !== expected[a])) {
        throw new Error(
          `mae: token dropping draws its masks for tokens of ${
            tokenSizeOf(config.tokenSize).join("×")
          } voxels (methodConfig.tokenSize), but the network cuts the ${patchSize.join("×")} patch into ${
            grid ? grid.join("×") + " tokens" : "no token grid"
          }: set methodConfig.tokenSize to the network's patch embedding`,
        );
      }
      decoder = new MaeVitDecoder(
        decoderConfig(network, {
          depth: config.decoderDepth,
          heads: config.decoderHeads,
          dropPathRate: config.decoderDropPathRate,
        }),
        grid,
        rng,
      );
    }
    return {
      modules: decoder ? { decoder } : {} as Record<string, never>,
      loss(batch, { rng }) {
        const image = batch.get("image");
        const deface = () => oneMinus(cast(batch.get("deface"), "f32"));
        if (decoder) {
          const { prediction, lossMask } = tokenDroppingForward(network, decoder, {
            image,
            keep: batch.get("keep"),
            tokenMask: batch.get("tokenMask"),
          }, rng);
          const mask = config.excludeDefaced ? mul(lossMask, deface()) : lossMask;
          return {
            loss: mseLoss(prediction, image, { mask }),
            // the dropped tokens' voxels shown as zeros, as the masked-input variant gives them
            reconstruction: () => ({
              input: image,
              corrupted: mul(image, oneMinus(lossMask)),
              prediction,
              target: image,
            }),
          };
        }
        const patch = image.shape.slice(2);
        const grid = cast(batch.get("blockMask"), "f32"); // [B, gd, gh, gw], 1 = masked
        const mask = voxelMask(grid, config.block, patch);
        // masked blocks are zero; the step's generator draws drop-path masks (ViTs)
        const corrupted = mul(image, oneMinus(mask));
        const prediction = network.forward(corrupted, { rng });
        const lossMask = config.excludeDefaced ? mul(mask, deface()) : mask;
        return {
          loss: maskedMse(prediction, image, lossMask),
          reconstruction: () => ({ input: image, corrupted, prediction, target: image }),
        };
      },
    };
  },
});

export default plugin;
