/**
 * The SwinUNETR pretext's heads on an encoder's bottleneck (nnssl's `swinunetr_architecture.py`): the
 * reconstruction head that mirrors the encoder, and the inputs of the rotation and contrastive heads (the
 * bottleneck at fixed token positions, MONAI's choice, or its global average).
 *
 * @module
 */
import {
  type ArchitectureFamily,
  Conv3d,
  type Generator,
  globalAvgPool,
  instanceNormAct,
  interpolate,
  Module,
  reshape,
  slice,
  type Tensor,
} from "@voxssl/core";

/**
 * The channels of the reconstruction head, its input first: a CNN's stage widths reversed, then
 * `outChannels` (ResEnc-L: 320, 320, 256, 128, 64, 32, 1); a ViT's token width halved (rounded down) once
 * per upsampling, then `outChannels` (Primus-M with 8³ patches: 864, 432, 216, 108, 1). Stage i of the
 * head is a 3³ convolution from entry i to entry i + 1.
 */
export function reconstructionChannels(
  family: ArchitectureFamily,
  featureChannels: readonly number[],
  vitUpsamplings: number,
  outChannels = 1,
): number[] {
  if (family === "cnn") return [...featureChannels].reverse().concat(outChannels);
  const width = featureChannels[0];
  return Array.from({ length: vitUpsamplings + 1 }, (_, i) => Math.floor(width / 2 ** i)).concat(outChannels);
}

/**
 * Upsamplings of a ViT's reconstruction head: log2 of the largest patch-to-grid ratio (3 for 8³ patch
 * embeddings). Throws where a ratio is not a power of two.
 */
export function vitUpsamplings(patch: readonly number[], grid: readonly number[]): number {
  const ratios = patch.map((p, a) => p / grid[a]);
  const n = Math.log2(Math.max(...ratios));
  if (!ratios.every((r) => Number.isInteger(Math.log2(r)))) {
    throw new RangeError(
      `swinunetr-pretext: the patch ${patch.join("×")} over the token grid ${grid.join("×")} must be a ` +
        "power of two per axis (the reconstruction head upsamples by 2)",
    );
  }
  return n;
}

/**
 * The spatial size after each stage of the reconstruction head (one entry per stage), from the shapes of
 * the encoder's features (shallow to deep) and of the input. A CNN's head stage i ends at the resolution of
 * encoder stage L − 2 − i (the last one at the input's); a ViT's doubles the token grid per axis (up to the
 * input) until it reaches the input. A stage whose size changes upsamples.
 */
export function upsampleTargets(
  family: ArchitectureFamily,
  features: readonly (readonly number[])[],
  input: readonly number[],
  stages: number,
): number[][] {
  if (family === "cnn") {
    const L = features.length;
    return Array.from({ length: stages }, (_, i) => [...(i < L - 1 ? features[L - 2 - i] : input)]);
  }
  let current = [...features[features.length - 1]];
  return Array.from({ length: stages }, () => (current = current.map((c, a) => Math.min(2 * c, input[a]))));
}

/**
 * The reconstruction head: per stage a 3³ convolution (padding 1, bias), then, where the stage's target
 * size differs from its input's (where the mirrored encoder stage had a stride), a non-affine instance
 * norm (eps 1e-5), LeakyReLU 0.01 and trilinear upsampling to the target (align corners false). nnssl
 * builds it as an `nn.Sequential` of exactly these layers (PyTorch's default initialisation).
 */
export class ReconstructionHead extends Module {
  /** The channels, input first (see {@link reconstructionChannels}). */
  readonly channels: readonly number[];
  /** One convolution per stage, from `channels[i]` to `channels[i + 1]`, drawn from `rng`. */
  constructor(channels: readonly number[], rng: Generator) {
    super();
    this.channels = [...channels];
    for (let i = 0; i + 1 < channels.length; i++) {
      this.registerModule(
        `conv${i}`,
        new Conv3d(channels[i], channels[i + 1], 3, rng, { padding: 1, init: "torch-default" }),
      );
    }
  }
  /** Stages of the head. */
  get stages(): number {
    return this.channels.length - 1;
  }
  /** [N, channels[0], ...] → [N, channels.at(-1), ...targets.at(-1)]; `targets` from {@link upsampleTargets}. */
  forward(x: Tensor, targets: readonly (readonly number[])[]): Tensor {
    if (targets.length !== this.stages) {
      throw new RangeError(`ReconstructionHead: ${this.stages} stages need ${this.stages} targets`);
    }
    let y = x;
    for (let i = 0; i < this.stages; i++) {
      y = this.child<Conv3d>(`conv${i}`).forward(y);
      const size = y.shape.slice(2);
      if (size.some((s, a) => s !== targets[i][a])) {
        y = instanceNormAct(y, undefined, undefined, { slope: 0.01, eps: 1e-5 });
        y = interpolate(y, { size: targets[i], mode: "trilinear", alignCorners: false });
      }
    }
    return y;
  }
}

/**
 * The bottleneck [N, C, d, h, w] at one position of its flattened grid (w fastest, as PyTorch's
 * `flatten(2)`): [N, C].
 */
export function tokenAt(bottleneck: Tensor, index: number): Tensor {
  const [n, c, ...spatial] = bottleneck.shape;
  const tokens = spatial.reduce((a, b) => a * b, 1);
  if (index >= tokens) {
    throw new RangeError(
      `swinunetr-pretext: the bottleneck ${spatial.join("×")} has ${tokens} position(s), position ${index} ` +
        'is needed (use a larger patch, or headInput "pooled")',
    );
  }
  const flat = reshape(bottleneck, [n, c, tokens]);
  return reshape(slice(flat, [0, 0, index], [n, c, index + 1]), [n, c]);
}

/**
 * The inputs of the rotation and contrastive heads: positions 0 and 1 of the flattened bottleneck
 * ("tokens", as nnssl and MONAI) or its global average for both ("pooled").
 */
export function headInputs(
  bottleneck: Tensor,
  mode: "tokens" | "pooled",
): { rotation: Tensor; contrast: Tensor } {
  if (mode === "pooled") {
    const pooled = globalAvgPool(bottleneck);
    return { rotation: pooled, contrast: pooled };
  }
  return { rotation: tokenAt(bottleneck, 0), contrast: tokenAt(bottleneck, 1) };
}
