/**
 * SparK-3D as nnssl pretrains it (`SparkMAETrainer`, `architectures/spark_model.py` SparK3D with mask
 * tokens, `spark_utils.py`, `SparkLoss`; facts and sources in README.md), CNNs only. Per sample,
 * exactly int(ratio · blocks) of the patch's 16³ blocks (a 10³ grid at 160³) are masked. The encoder
 * runs sparse through the architecture's layer hooks: every encoder convolution and pooling output is
 * multiplied by the visible mask nearest-upsampled to its grid (dense where the feature map is smaller
 * than the mask grid on every axis: the 5³ bottleneck of ResEnc-L at 160³), and every encoder norm is
 * replaced by a masked instance norm over the visible voxels (same affine weights, fused LeakyReLU and
 * residual), so masked voxels stay exactly zero through the encoder. Each stage output is then
 * densified: a non-affine masked instance norm, a learnable per-stage mask token at the masked
 * positions, and a projection (identity for stage 0, a 3³ convolution with bias for the deeper stages);
 * the network's own U-Net decoder (`network.decode`) reconstructs the patch (1 channel), and the loss
 * is the MSE on the raw (z-scored) intensities over the voxels of masked blocks.
 *
 * As nnssl, the input is NOT masked (the stem reads the whole patch; its output is masked). The
 * `variant: "original"` option gives the original SparK's masking instead: the input is multiplied by
 * the visible mask, and the mask grid must be the coarsest feature grid (block = the network's total
 * stride, default 32), so every stage including the bottleneck is sparse.
 *
 * Data side (`sample`): the run's standard patch `image` and the u8 block grid `blockMask`
 * [gd, gh, gw], 1 = masked. Checkpoints: the mask tokens and densify projections are the method's
 * modules (`method.mask_tokens.<i>`, `method.densify_projs.<i>.*`, nnssl's SparK3D names), so
 * `network.safetensors` holds the plain network.
 */
import {
  add,
  cast,
  clamp,
  Conv3d,
  definePlugin,
  div,
  expand,
  full,
  type Generator,
  instanceNorm,
  type LayerHooks,
  maskedInstanceNorm,
  Module,
  mul,
  type Network,
  powScalar,
  reshape,
  type Rng,
  sampleArray,
  type SslMethodPlugin,
  sub,
  sum,
  type Tensor,
  truncNormal,
  type Vec3,
  where,
  z,
} from "@voxssl/core";
import meta from "./deno.json" with { type: "json" };

/** SparK's configuration. */
export interface SparkConfig {
  /** Fraction of blocks masked per sample: exactly int(ratio · blocks) (default 0.75). */
  maskRatio: number;
  /**
   * Edge of a mask block in voxels (default 16 for "nnssl", 32 for "original"); the patch must be a
   * multiple of it.
   */
  block?: number;
  /**
   * "nnssl" (default): unmasked input, mask at patch/block (dense where a feature map is smaller than
   * the mask grid). "original": the original SparK's masked input, with the mask at the coarsest
   * feature grid (block must equal the network's total stride).
   */
  variant: "nnssl" | "original";
}

/** The zod schema of {@link SparkConfig}, with its defaults. */
const SparkConfig: z.ZodType<SparkConfig> = z.object({
  /** Fraction of blocks masked per sample (exactly int(ratio · blocks)). */
  maskRatio: z.number().gt(0).lt(1).default(0.75),
  /** Edge of a mask block in voxels (default 16 for "nnssl", 32 for "original"). */
  block: z.number().int().positive().optional(),
  /** "nnssl" (unmasked input, dense bottleneck) or "original" (masked input, mask at the coarsest grid). */
  variant: z.enum(["nnssl", "original"]).default("nnssl"),
});

/** The block edge a config masks with: `block`, else 16 ("nnssl") or 32 ("original": ResEnc's total stride). */
export function maskBlock(config: Pick<SparkConfig, "block" | "variant">): number {
  return config.block ?? (config.variant === "original" ? 32 : 16);
}

/** The block grid of a patch (patch / block per axis); the patch must be a multiple of the block. */
export function blockGrid(patch: readonly number[], block: number): Vec3 {
  if (patch.some((p) => p % block !== 0)) {
    throw new RangeError(`spark: the patch ${patch.join("×")} is not a multiple of the mask block ${block}`);
  }
  return [patch[0] / block, patch[1] / block, patch[2] / block];
}

/**
 * Chooses exactly ⌊ratio · n⌋ of n blocks (nnssl's `int(sparsity · n)`), uniformly without replacement
 * by a partial Fisher–Yates shuffle driven by `next` (uniform in [0, 1)); 1 = masked.
 */
export function chooseMaskedBlocks(n: number, ratio: number, next: () => number): Uint8Array {
  const order = Array.from({ length: n }, (_, i) => i);
  const masked = Math.floor(ratio * n);
  const mask = new Uint8Array(n);
  for (let i = 0; i < masked; i++) {
    const j = i + Math.floor(next() * (n - i));
    [order[i], order[j]] = [order[j], order[i]];
    mask[order[i]] = 1;
  }
  return mask;
}

/**
 * The visible mask of a batch at any feature grid, cached per grid and dtype: `at(spatial)` is the
 * visible block grid nearest-upsampled to `spatial` ([B, 1, ...spatial], 1 = visible), or undefined
 * (dense, i.e. all ones) where the grid is smaller than the block grid on every axis, as nnssl's
 * `_get_active_ex_or_ii`.
 */
export class VisibleMask {
  readonly #cache = new Map<string, Tensor | undefined>();
  /** The visible block grid [B, gd, gh, gw] (f32, 1 = visible). */
  readonly visible: Tensor;
  /** Wraps the visible block grid [B, gd, gh, gw] (f32, 1 = visible). */
  constructor(visible: Tensor) {
    this.visible = visible;
  }

  /** The mask at a feature grid `spatial` (undefined: dense), in `dtype` (u8: a `where` condition). */
  at(spatial: readonly number[], dtype: "f32" | "f16" | "u8" = "f32"): Tensor | undefined {
    const key = `${spatial.join("x")}:${dtype}`;
    if (this.#cache.has(key)) return this.#cache.get(key);
    let out: Tensor | undefined;
    if (dtype !== "f32") {
      const base = this.at(spatial);
      out = base && cast(base, dtype);
    } else {
      const [b, ...grid] = this.visible.shape;
      if (!spatial.every((s, a) => s < grid[a])) {
        const ratio = spatial.map((s, a) => s / grid[a]);
        if (!ratio.every((r) => Number.isInteger(r) && r >= 1)) {
          throw new RangeError(
            `spark: a feature map of ${spatial.join("×")} is not a whole multiple of the ${
              grid.join("×")
            } mask grid (nor smaller on every axis)`,
          );
        }
        const [gd, gh, gw] = grid;
        const [rd, rh, rw] = ratio;
        const column = reshape(this.visible, [b, 1, gd, 1, gh, 1, gw, 1]);
        const wide = expand(column, [b, 1, gd, rd, gh, rh, gw, rw]);
        out = reshape(wide, [b, 1, ...spatial]);
      }
    }
    this.#cache.set(key, out);
    return out;
  }
}

/** The mask of `t`'s grid in `t`'s dtype (undefined: dense). */
function maskFor(mask: VisibleMask, t: Tensor): Tensor | undefined {
  return mask.at(t.shape.slice(2), t.dtype === "f16" ? "f16" : "f32");
}

/**
 * SparK's sparse encoder as layer hooks: every convolution and pooling output multiplied by the visible
 * mask of its grid, every norm (+ residual + LeakyReLU) replaced by {@link maskedInstanceNorm} with the
 * same parameters; dense grids are left to the network.
 */
export function sparseHooks(mask: VisibleMask): LayerHooks {
  // where(visible, y, 0) rather than y·mask: the same values, and autograd keeps the small u8 condition
  // instead of y (the convolution's output would otherwise stay alive for backward beside the norm's input)
  const apply = (y: Tensor) => {
    const visible = mask.at(y.shape.slice(2), "u8");
    return visible ? where(visible, y, full([], 0, { dtype: y.dtype, gpu: y.gpu })) : y;
  };
  return {
    conv: apply,
    pool: apply,
    norm: (x, call) => {
      const m = maskFor(mask, x);
      return m && maskedInstanceNorm(x, m, call.weight, call.bias, {
        eps: call.eps,
        slope: call.slope,
        residual: call.residual,
      });
    },
  };
}

/** One learnable mask token per encoder stage, [1, C_i, 1, 1, 1] (nnssl's `mask_tokens.<i>`). */
export class MaskTokens extends Module {
  /** Tokens for stages of `channels` widths, trunc-normal std 0.02 clipped to ±0.02. */
  constructor(channels: readonly number[], rng: Generator) {
    super();
    channels.forEach((c, i) =>
      this.registerParameter(String(i), truncNormal([1, c, 1, 1, 1], rng, 0.02, -0.02, 0.02))
    );
  }
  /** The token of stage `i`. */
  token(i: number): Tensor {
    return this.p(String(i));
  }
}

/**
 * The densify projections (nnssl's `densify_projs.<i>`): identity for stage 0 (no parameters), a 3³
 * convolution C_i → C_i with bias (PyTorch's default initialisation) for every deeper stage.
 */
export class DensifyProjections extends Module {
  /** Projections for stages of `channels` widths. */
  constructor(channels: readonly number[], rng: Generator) {
    super();
    channels.forEach((c, i) => {
      if (i > 0) {
        this.registerModule(String(i), new Conv3d(c, c, 3, rng, { padding: 1, init: "torch-default" }));
      }
    });
  }
  /** Stage `i`'s projection of `x`. */
  project(i: number, x: Tensor): Tensor {
    return i === 0 ? x : this.child<Conv3d>(String(i)).forward(x);
  }
}

/**
 * Densifies sparse stage outputs: a non-affine instance norm over the visible voxels (eps 1e-5), the
 * stage's mask token at masked positions, then the stage's projection. Dense stages get a plain
 * instance norm and no token.
 */
export function densify(
  features: readonly Tensor[],
  mask: VisibleMask,
  tokens: Pick<MaskTokens, "token">,
  projections: Pick<DensifyProjections, "project">,
): Tensor[] {
  return features.map((f, i) => {
    const m = maskFor(mask, f);
    const token = tokens.token(i);
    const filled = m
      ? where(
        mask.at(f.shape.slice(2), "u8")!,
        maskedInstanceNorm(f, m),
        token.dtype === f.dtype ? token : cast(token, f.dtype),
      )
      : instanceNorm(f);
    return projections.project(i, filled);
  });
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

/** What {@link sparkForward} computes. */
export interface SparkOutput {
  /** The reconstruction [B, 1, D, H, W]. */
  prediction: Tensor;
  /** 1 at voxels of masked blocks [B, 1, D, H, W] (the loss mask). */
  masked: Tensor;
  /** The sparse encoder's stage outputs. */
  features: Tensor[];
  /** The densified stage outputs the decoder got. */
  densified: Tensor[];
}

/**
 * SparK's forward pass on a batch: `image` [B, 1, D, H, W] and the block grid `blockMask`
 * [B, gd, gh, gw] (1 = masked, any dtype).
 */
export function sparkForward(
  network: Network,
  modules: { tokens: MaskTokens; projections: DensifyProjections },
  image: Tensor,
  blockMask: Tensor,
  config: SparkConfig,
  rng?: Generator,
): SparkOutput {
  if (!network.decode) throw new Error("spark: the network has no decode(); SparK needs a CNN U-Net");
  const patch = image.shape.slice(2);
  const grid = blockGrid(patch, maskBlock(config));
  if (blockMask.shape.slice(1).join() !== grid.join()) {
    throw new RangeError(`spark: blockMask is [${blockMask.shape}], expected [B, ${grid}]`);
  }
  const maskedGrid = cast(blockMask, "f32");
  const mask = new VisibleMask(oneMinus(maskedGrid));
  const visible = mask.at(patch)!; // the patch is a multiple of the block: never dense
  const masked = oneMinus(visible);
  const input = config.variant === "original" ? mul(image, visible) : image;
  const features = network.encode(input, { layerHooks: sparseHooks(mask), rng });
  if (config.variant === "original") {
    const deepest = features[features.length - 1].shape.slice(2);
    if (deepest.join() !== grid.join()) {
      throw new RangeError(
        `spark: variant "original" masks at the coarsest feature grid (${deepest.join("×")}): set block to ` +
          `the network's total stride (${patch[0] / deepest[0]}); block ${maskBlock(config)} gives a ${
            grid.join("×")
          } grid`,
      );
    }
  }
  const densified = densify(features, mask, modules.tokens, modules.projections);
  return { prediction: network.decode(densified), masked, features, densified };
}

/** The SparK-3D plugin (`--method spark`). */
const plugin: SslMethodPlugin<SparkConfig> = definePlugin({
  kind: "ssl-method",
  name: "spark",
  version: meta.version,
  coreApi: "^0.2.0",
  description:
    "SparK-3D as nnssl: sparse encoder (masked convs and norms over 75% masked 16³ blocks), densify with mask tokens, U-Net decoder, MSE on masked voxels",
  supports: ["cnn"],
  network: { outChannels: 1 },
  config: SparkConfig,
  defaults: {
    cnn: {
      optimizer: { name: "sgd", lr: 1e-2, momentum: 0.99, nesterov: true, weightDecay: 3e-5 },
      schedule: { name: "poly", exponent: 0.9 },
      clipGradNorm: 12,
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
    const grid = blockGrid(patch.shape, maskBlock(config));
    const rng: Rng = context.rng.fork("mask");
    const blocks = chooseMaskedBlocks(grid[0] * grid[1] * grid[2], config.maskRatio, () => rng.next());
    return {
      image: sampleArray(patch.image, [1, ...patch.shape]),
      blockMask: sampleArray(blocks, grid),
    };
  },
  build({ network, config, rng, patchSize }) {
    if (!network.decode) throw new Error("spark: the network has no decode(); SparK needs a CNN U-Net");
    blockGrid(patchSize, maskBlock(config));
    const tokens = new MaskTokens(network.featureChannels, rng);
    const projections = new DensifyProjections(network.featureChannels, rng);
    return {
      modules: { mask_tokens: tokens, densify_projs: projections },
      loss(batch, { rng }) {
        const image = batch.get("image");
        const out = sparkForward(
          network,
          { tokens, projections },
          image,
          batch.get("blockMask"),
          config,
          rng,
        );
        return {
          loss: maskedMse(out.prediction, image, out.masked),
          reconstruction: () => ({
            input: image,
            corrupted: mul(image, oneMinus(out.masked)),
            prediction: out.prediction,
            target: image,
          }),
        };
      },
    };
  },
});

export default plugin;
