/**
 * Primus (dynamic_network_architectures' Primus / PrimusS/B/M/L, the ViT of nnssl and the OpenMind
 * benchmark): an 8³ patch embedding (`down_projection`), an EVA-02 style transformer (`eva`: learnable
 * absolute position embedding plus 3D rotary embedding on q and k, pre-norm blocks with layer scale,
 * an attention sub-LayerNorm, a SwiGLU MLP with its own LayerNorm, stochastic depth) and a patch decoder
 * of transposed convolutions with channels-first LayerNorm + GELU (`up_projection`). Module tree and
 * parameter names follow the reference, so `network.safetensors` loads into the PyTorch class.
 *
 * Facts and sources: plugins/arch/primus/README.md. In short:
 * - tokens are the patch grid flattened row-major over the input's dims 2, 3, 4 (Primus's
 *   "b c w h d -> b (w h d) c"); the rotary table uses the same order (rotary layout: ropeSinCos);
 * - block: x += dp(γ₁·proj(norm(attn(norm1(x))))); x += dp(γ₂·fc2(norm(silu(fc1_g(h))·fc1_x(h)))),
 *   h = norm2(x); k has no bias; LayerNorm eps 1e-5 (decoder 1e-6); attention scale head_dim^-½;
 * - init: Linear trunc-normal std 0.02 with zero bias, attn.proj and mlp.fc2 weights of block i divided
 *   by √(2(i+1)), pos_embed trunc-normal 0.02, γ = layer-scale init, patch embedding and decoder convs He
 *   (a = 0.01) with zero bias, norms 1 / 0.
 *
 * The reference's `mask_token` is a persistent all-zero buffer, not a parameter: it is written into
 * exports (`referenceBuffers`) so PyTorch loads them strictly. Not built: register tokens (0 in every
 * preset).
 *
 * Contract hooks: `encoderOnly` builds no `up_projection`; `encode` returns the token grid
 * (`featureChannels` = [embedDim]); `maskToken` replaces masked tokens before the position embedding
 * (SimMIM); `tokens.encodeTokens(x, { keep })` runs the transformer on the kept tokens only, gathering
 * the position embedding and the rotary table with the same indices (token dropping, as nnssl's EvaMAE
 * does with timm's PatchDropout); `tokens.decodeTokens` runs the patch decoder on a token sequence.
 */
import {
  type AdaptationPlan,
  add,
  applyRope,
  type ArchitecturePlugin,
  cast,
  checkpoint,
  checkpointedSegments,
  Conv3d,
  type ConvInit,
  ConvTranspose3d,
  definePlugin,
  dropPath,
  type ForwardOptions,
  full,
  gatherRows,
  gelu,
  Generator,
  type HostTensor,
  interpolate,
  keep,
  LayerNorm,
  LayerNormChannelsFirst,
  lerp,
  Linear,
  type MaskTokenInput,
  Module,
  mul,
  type Network,
  type NetworkShape,
  permute,
  reshape,
  ropeSinCos,
  scaledDotProductAttention,
  swiglu,
  type Tensor,
  type TokenEncodeOptions,
  type TokenHooks,
  truncNormal,
  type Vec3,
  z,
} from "@voxssl/core";
import meta from "./deno.json" with { type: "json" };

const NAME = "primus";
const VERSION = meta.version;

const size3 = z.tuple([
  z.number().int().positive(),
  z.number().int().positive(),
  z.number().int().positive(),
]);

/** Primus's configuration. */
export interface PrimusConfig {
  /** Token width D (default 864). */
  embedDim: number;
  /** Transformer blocks (default 16). */
  depth: number;
  /** Attention heads; D / heads must be divisible by 6 (3D RoPE over the whole head; default 12). */
  heads: number;
  /** Patch embedding size (= stride), one size or three; powers of two (default 8). */
  patchEmbedSize: number | [number, number, number];
  /** MLP hidden width = int(D · mlpRatio) (default 4·2/3, the reference's). */
  mlpRatio: number;
  /** Stochastic depth: block i of n drops its branches with rate·i/(n−1) (default 0; nnssl: 0.2). */
  dropPathRate: number;
  /** LayerScale init of γ₁/γ₂ (default 0.1); null: no layer scale (the bare Primus class). */
  layerScaleInit: number | null;
  /** LayerNorm on the attention output before `proj` (`scale_attn_inner`; default true). */
  attnInnerNorm: boolean;
  /** "he" (default): Primus (InitWeights_He on up_projection); "torch-default": nnssl's EvaMAE. */
  decoderInit: "he" | "torch-default";
  /**
   * Activation checkpointing of transformer blocks: "none" (default), "blocks" (every block) or block
   * indices; a checkpointed block keeps only its input for backward and recomputes its forward pass there.
   */
  activationCheckpointing: "none" | "blocks" | number[];
}

/** The zod schema of {@link PrimusConfig}, with its defaults. */
const PrimusConfig: z.ZodType<PrimusConfig> = z.object({
  /** Token width D. */
  embedDim: z.number().int().positive().default(864),
  /** Transformer blocks. */
  depth: z.number().int().positive().default(16),
  /** Attention heads; D / heads must be divisible by 6 (3D RoPE over the whole head). */
  heads: z.number().int().positive().default(12),
  /** Patch embedding size (= stride), one size or three; powers of two (the decoder halves it). */
  patchEmbedSize: z.union([z.number().int().positive(), size3]).default(8),
  /** MLP hidden width = int(D · mlpRatio) (reference: 4·2/3). */
  mlpRatio: z.number().positive().default(4 * 2 / 3),
  /** Stochastic depth: block i of n drops its branches with rate·i/(n−1) (nnssl pretraining: 0.2). */
  dropPathRate: z.number().min(0).lt(1).default(0),
  /** LayerScale init of γ₁/γ₂ (presets: 0.1); null: no layer scale (the bare Primus class). */
  layerScaleInit: z.number().nullable().default(0.1),
  /** LayerNorm on the attention output before `proj` (`scale_attn_inner`, on in the presets). */
  attnInnerNorm: z.boolean().default(true),
  /** "he": Primus (InitWeights_He on up_projection); "torch-default": what nnssl's EvaMAE ends up with. */
  decoderInit: z.enum(["he", "torch-default"]).default("he"),
  /** Activation checkpointing of transformer blocks: "none", "blocks" (all) or block indices. */
  activationCheckpointing: z.union([z.enum(["none", "blocks"]), z.array(z.number().int().min(0))]).default(
    "none",
  ),
}).refine((c) => c.embedDim % c.heads === 0 && (c.embedDim / c.heads) % 6 === 0, {
  message: "embedDim / heads (the head dim) must be an integer divisible by 6 for the 3D rotary embedding",
}).refine((c) => patchEmbedSizeOf(c).every((p) => Number.isInteger(Math.log2(p))) && patchEmbedMax(c) >= 2, {
  message: "patchEmbedSize must be powers of two, at least 2 along one axis (the decoder halves it)",
});

/** The patch embedding size as three sizes. */
export function patchEmbedSizeOf(c: { patchEmbedSize: number | readonly number[] }): Vec3 {
  const p = c.patchEmbedSize;
  return typeof p === "number" ? [p, p, p] : [p[0], p[1], p[2]];
}

function patchEmbedMax(c: { patchEmbedSize: number | readonly number[] }): number {
  return Math.max(...patchEmbedSizeOf(c));
}

/** MLP hidden width as the reference computes it: int(D · mlp_ratio). */
export function mlpHidden(c: PrimusConfig): number {
  return Math.trunc(c.embedDim * c.mlpRatio);
}

/** numpy's round (half to even). */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * The decoder's stages as PatchDecode builds them: stage s maps channels[s] → channels[s+1] with a
 * transposed conv of kernel = stride = strides[s]. log2(max patch) stages; per axis a stride of 2 while
 * that axis still has a factor of 2 left (the coarse end first); channels shrink geometrically from D
 * towards 2·out, rounded to multiples of 8 (at least 8), the last one being `outChannels`.
 */
export function decoderStages(
  c: PrimusConfig,
  outChannels: number,
): { channels: number[]; strides: Vec3[] } {
  const patch = patchEmbedSizeOf(c);
  const n = Math.round(Math.log2(Math.max(...patch)));
  const strides = Array.from(
    { length: n },
    (_, k) => patch.map((p) => ((p / 2 ** k) % 2 === 0 ? 2 : 1)) as Vec3,
  ).reverse();
  const dimRed = (c.embedDim / (2 * outChannels)) ** (1 / n);
  const round8 = (v: number) => Math.trunc(Math.max(8, roundHalfEven((v + 1e-6) / 8) * 8));
  const channels = [
    c.embedDim,
    ...Array.from({ length: n }, (_, x) => round8(c.embedDim / dimRed ** (x + 1))),
  ];
  channels[n] = outChannels;
  return { channels, strides };
}

/** The token grid of a patch: patch / patch embedding per axis (each must divide). */
export function tokenGrid(c: PrimusConfig, patch: readonly number[]): Vec3 {
  const pe = patchEmbedSizeOf(c);
  if (patch.length !== 3 || patch.some((s, i) => !Number.isInteger(s / pe[i]) || s < pe[i])) {
    throw new RangeError(
      `primus: input ${patch.join("×")} must be a multiple of the patch embedding ${pe.join("×")}`,
    );
  }
  return [patch[0] / pe[0], patch[1] / pe[1], patch[2] / pe[2]];
}

/**
 * Parameters of a configuration at a patch size (the position embedding has one row per token), from
 * the reference's arithmetic; the `mask_token` buffer is not a parameter; `encoderOnly` leaves out the
 * patch decoder. Primus-M, 1 → 1 channels at 160³: 151,786,529.
 */
export function countPrimusParameters(
  c: PrimusConfig,
  inChannels: number,
  outChannels: number,
  patchSize: Vec3 = [160, 160, 160],
  encoderOnly = false,
): number {
  const d = c.embedDim;
  const hidden = mlpHidden(c);
  const pe = patchEmbedSizeOf(c);
  const tokens = tokenGrid(c, patchSize).reduce((a, b) => a * b, 1);
  const block = 4 * d * d + 3 * d * hidden + 8 * d + 4 * hidden + (c.attnInnerNorm ? 2 * d : 0) +
    (c.layerScaleInit === null ? 0 : 2 * d);
  const stem = d * inChannels * pe[0] * pe[1] * pe[2] + d;
  const eva = c.depth * block + tokens * d + 2 * d;
  if (encoderOnly) return stem + eva;
  const { channels, strides } = decoderStages(c, outChannels);
  let decoder = 0;
  strides.forEach((s, i) => {
    decoder += channels[i] * channels[i + 1] * s[0] * s[1] * s[2] + channels[i + 1];
    if (i < strides.length - 1) decoder += 2 * channels[i + 1];
  });
  return stem + eva + decoder;
}

/**
 * Resizes a position embedding [1, N, D] from one token grid to another, as nnssl's downstream loader
 * does (`interpolate_patch_embed_3d`): rows → [1, D, d, h, w] (row-major grid), trilinear
 * interpolation with align_corners=False, back to [1, N', D]. Differentiable.
 */
export function resizePositionEmbedding(pos: Tensor, from: readonly number[], to: readonly number[]): Tensor {
  const [one, n, d] = pos.shape;
  if (pos.rank !== 3 || one !== 1 || n !== from[0] * from[1] * from[2]) {
    throw new RangeError(`resizePositionEmbedding(): ${pos} is not [1, ${from.join("·")}, D]`);
  }
  const volume = reshape(permute(pos, [0, 2, 1]), [1, d, ...from]);
  const resized = interpolate(volume, { size: to, mode: "trilinear", alignCorners: false });
  return permute(reshape(resized, [1, d, to[0] * to[1] * to[2]]), [0, 2, 1]);
}

/** A list of modules named "0", "1", … (nn.Sequential / nn.ModuleList). */
class Sequence<T extends Module> extends Module {
  readonly items: T[] = [];
  add(m: T): this {
    this.registerModule(String(this.items.length), m);
    this.items.push(m);
    return this;
  }
}

/** PatchEmbed: Conv3d with kernel = stride = patch embedding size, as `proj`. */
class PatchEmbed extends Module {
  readonly proj: Conv3d;
  constructor(inChannels: number, c: PrimusConfig, rng: Generator) {
    super();
    const pe = patchEmbedSizeOf(c);
    this.proj = this.registerModule("proj", new Conv3d(inChannels, c.embedDim, pe, rng, { stride: pe }));
  }
  forward(x: Tensor): Tensor {
    return this.proj.forward(x);
  }
}

/** EvaAttention with separate q/k/v projections (k without bias), RoPE on q and k, optional sub-LN. */
export class EvaAttention extends Module {
  /** Width of one head (dim / heads). */
  readonly headDim: number;
  /** Whether the attention output is layer-normed before `proj`. */
  readonly innerNorm: boolean;
  /**
   * Attention of width `dim` over `heads` heads for block `layer` (1-based: `proj` starts scaled by
   * 1/√(2·layer)), weights drawn from `rng`.
   */
  constructor(
    readonly dim: number,
    readonly heads: number,
    layer: number,
    innerNorm: boolean,
    rng: Generator,
  ) {
    super();
    this.headDim = dim / heads;
    this.registerModule("q_proj", new Linear(dim, dim, rng));
    this.registerModule("k_proj", new Linear(dim, dim, rng, { bias: false }));
    this.registerModule("v_proj", new Linear(dim, dim, rng));
    if (innerNorm) this.registerModule("norm", new LayerNorm(dim));
    // fix_init_weight: the output projection of block `layer` (1-based) starts divided by √(2·layer)
    this.registerModule("proj", new Linear(dim, dim, rng, { std: 0.02 / Math.sqrt(2 * layer) }));
    this.innerNorm = innerNorm;
  }

  /** x [B, N, D], rope table [N, 2·head_dim] → [B, N, D]. */
  forward(x: Tensor, rope: Tensor): Tensor {
    const [b, n] = x.shape;
    const heads = (name: string) =>
      permute(reshape(this.child<Linear>(name).forward(x), [b, n, this.heads, this.headDim]), [0, 2, 1, 3]);
    const q = applyRope(heads("q_proj"), rope);
    const k = applyRope(heads("k_proj"), rope);
    const o = scaledDotProductAttention(q, k, heads("v_proj")); // [B, H, N, hd], scale hd^-½
    let y = reshape(permute(o, [0, 2, 1, 3]), [b, n, this.dim]);
    if (this.innerNorm) y = this.child<LayerNorm>("norm").forward(y);
    return this.child<Linear>("proj").forward(y);
  }
}

/** timm's SwiGLU with scale_mlp: fc2(norm(silu(fc1_g(x)) · fc1_x(x))). */
class SwiGluMlp extends Module {
  constructor(dim: number, hidden: number, layer: number, rng: Generator) {
    super();
    this.registerModule("fc1_g", new Linear(dim, hidden, rng));
    this.registerModule("fc1_x", new Linear(dim, hidden, rng));
    this.registerModule("norm", new LayerNorm(hidden));
    this.registerModule("fc2", new Linear(hidden, dim, rng, { std: 0.02 / Math.sqrt(2 * layer) }));
  }
  forward(x: Tensor): Tensor {
    const h = swiglu(this.child<Linear>("fc1_g").forward(x), this.child<Linear>("fc1_x").forward(x));
    return this.child<Linear>("fc2").forward(this.child<LayerNorm>("norm").forward(h));
  }
}

/** timm's EvaBlock (pre-norm, LayerScale, drop path). */
export class EvaBlock extends Module {
  /** Whether the branches are scaled by γ₁/γ₂ (LayerScale). */
  readonly layerScale: boolean;
  /** The attention branch. */
  readonly attn: EvaAttention;
  /** Block `layer` (1-based) of a Primus of config `c`, dropping its branches at `dropPathRate`. */
  constructor(c: PrimusConfig, readonly dropPathRate: number, layer: number, rng: Generator) {
    super();
    const d = c.embedDim;
    this.layerScale = c.layerScaleInit !== null;
    if (c.layerScaleInit !== null) {
      this.registerParameter("gamma_1", full([d], c.layerScaleInit));
      this.registerParameter("gamma_2", full([d], c.layerScaleInit));
    }
    this.registerModule("norm1", new LayerNorm(d));
    this.attn = this.registerModule("attn", new EvaAttention(d, c.heads, layer, c.attnInnerNorm, rng));
    this.registerModule("norm2", new LayerNorm(d));
    this.registerModule("mlp", new SwiGluMlp(d, mlpHidden(c), layer, rng));
  }

  #branch(x: Tensor, y: Tensor, gamma: string, rng: Generator | undefined): Tensor {
    let r = this.layerScale ? mul(y, this.p(gamma)) : y;
    if (this.training && this.dropPathRate > 0) {
      if (!rng) throw new Error("EvaBlock: drop path in training mode needs a generator");
      r = dropPath(r, this.dropPathRate, rng);
    }
    return add(x, r);
  }

  /** x [B, N, D] with the rotary table of its token grid; `rng` draws drop-path masks in training. */
  forward(x: Tensor, rope: Tensor, rng?: Generator): Tensor {
    const a = this.attn.forward(this.child<LayerNorm>("norm1").forward(x), rope);
    const h = this.#branch(x, a, "gamma_1", rng);
    const m = this.child<SwiGluMlp>("mlp").forward(this.child<LayerNorm>("norm2").forward(h));
    return this.#branch(h, m, "gamma_2", rng);
  }
}

/** DNA's Eva container: pos_embed, blocks, final norm; the rotary tables are cached per token grid. */
class Eva extends Module {
  readonly blocks: Sequence<EvaBlock>;
  /** Blocks run with activation checkpointing. */
  readonly checkpointed: ReadonlySet<number>;
  readonly #rope = new Map<string, Tensor>();
  constructor(readonly c: PrimusConfig, readonly grid: Vec3, rng: Generator) {
    super();
    this.checkpointed = checkpointedSegments(
      c.activationCheckpointing,
      c.depth,
      "blocks",
      "primus: activationCheckpointing",
    );
    const tokens = grid[0] * grid[1] * grid[2];
    this.registerParameter("pos_embed", truncNormal([1, tokens, c.embedDim], rng, 0.02));
    this.blocks = this.registerModule("blocks", new Sequence<EvaBlock>());
    for (let i = 0; i < c.depth; i++) {
      // np.linspace(0, rate, depth): block 0 never drops, the last drops at the full rate
      const rate = c.depth > 1 ? (c.dropPathRate * i) / (c.depth - 1) : 0;
      this.blocks.add(new EvaBlock(c, rate, i + 1, rng));
    }
    this.registerModule("norm", new LayerNorm(c.embedDim));
  }

  /** The [N, 2·head_dim] rotary table of a token grid (integer positions along each axis). */
  rope(grid: Vec3, like: Tensor): Tensor {
    const key = grid.join("x");
    let table = this.#rope.get(key);
    if (!table) {
      table = keep(ropeSinCos(grid, this.c.embedDim / this.c.heads, { gpu: like.gpu }));
      this.#rope.set(key, table);
    }
    return table;
  }

  /** The position embedding for a token grid: the parameter, or its trilinear resize. */
  positionEmbedding(grid: Vec3): Tensor {
    const pos = this.p("pos_embed");
    return grid.every((g, i) => g === this.grid[i]) ? pos : resizePositionEmbedding(pos, this.grid, grid);
  }

  /**
   * tokens [B, N, D] of a grid → [B, N, D], or [B, K, D] with `keep` (i32 [B, K]): the position embedding
   * is added to every token, then only the kept ones (and their rotary rows) go through the blocks.
   */
  forward(x: Tensor, grid: Vec3, rng?: Generator, keep?: Tensor): Tensor {
    // under autocast x is f16: the (possibly resized) position embedding follows it
    let h = add(x, cast(this.positionEmbedding(grid), x.dtype));
    let rope = this.rope(grid, x);
    if (keep) {
      h = gatherRows(h, keep);
      rope = gatherRows(reshape(rope, [1, ...rope.shape]), keep); // [B, K, 2R]: one table per sample
    }
    this.blocks.items.forEach((block, i) => {
      const run = (x: Tensor) => block.forward(x, rope, rng);
      h = this.checkpointed.has(i) ? checkpoint(run, [h], { generators: [rng] }) : run(h);
    });
    return this.child<LayerNorm>("norm").forward(h);
  }

  override dispose(): void {
    super.dispose();
    for (const t of this.#rope.values()) t.dispose();
    this.#rope.clear();
  }
}

/** ConvTranspose3d → LayerNormNd → GELU (one Sequential stage of PatchDecode). */
class DecodeStage extends Module {
  constructor(cin: number, cout: number, stride: Vec3, init: ConvInit, rng: Generator) {
    super();
    this.registerModule("0", new ConvTranspose3d(cin, cout, stride, rng, { stride, init }));
    this.registerModule("1", new LayerNormChannelsFirst(cout, 1e-6));
  }
  forward(x: Tensor): Tensor {
    const y = this.child<ConvTranspose3d>("0").forward(x);
    return gelu(this.child<LayerNormChannelsFirst>("1").forward(y));
  }
}

/** PatchDecode: token grid [B, D, d, h, w] → voxels [B, out, D', H', W']. */
class PatchDecode extends Module {
  readonly stages: ((x: Tensor) => Tensor)[] = [];
  constructor(c: PrimusConfig, outChannels: number, rng: Generator) {
    super();
    const decode = this.registerModule("decode", new Sequence<Module>());
    const { channels, strides } = decoderStages(c, outChannels);
    strides.forEach((s, i) => {
      if (i < strides.length - 1) {
        const stage = new DecodeStage(channels[i], channels[i + 1], s, c.decoderInit, rng);
        decode.add(stage);
        this.stages.push((x) => stage.forward(x));
      } else {
        const last = new ConvTranspose3d(channels[i], channels[i + 1], s, rng, {
          stride: s,
          init: c.decoderInit,
        });
        decode.add(last);
        this.stages.push((x) => last.forward(x));
      }
    });
  }
  forward(x: Tensor): Tensor {
    return this.stages.reduce((h, stage) => stage(h), x);
  }
}

/**
 * tokens [B, N, D] with the rows where `mask` [B, N] is 1 replaced by `token` [D]:
 * x·(1 − m) + m·token, one `lerp` (exact for a 0/1 mask).
 */
export function substituteMaskToken(tokens: Tensor, { mask, token }: MaskTokenInput): Tensor {
  const [b, n, d] = tokens.shape;
  if (mask.shape.join() !== [b, n].join()) {
    throw new RangeError(`primus: maskToken.mask must be [${b}, ${n}] (batch, tokens), got ${mask}`);
  }
  if (token.size !== d) throw new RangeError(`primus: maskToken.token must have ${d} values, got ${token}`);
  // in the tokens' dtype (f16 under autocast)
  const m = reshape(cast(mask, tokens.dtype), [b, n, 1]);
  const t = reshape(cast(token, tokens.dtype), [1, 1, d]);
  return lerp(tokens, t, m);
}

/** The Primus network. */
export class Primus extends Module implements Network {
  /** A ViT. */
  readonly family = "vit" as const;
  /** The token grid the position embedding was made for (patch / patch embedding). */
  readonly grid: Vec3;
  /**
   * The patch embedding (`down_projection.proj`).
   * @internal A submodule; its parameters are reached by name (`namedParameters`, state dicts).
   */
  readonly down_projection: PatchEmbed;
  /**
   * The patch decoder, absent when built encoder-only.
   * @internal A submodule; its parameters are reached by name (`namedParameters`, state dicts).
   */
  readonly up_projection: PatchDecode | undefined;
  /**
   * The transformer (`eva.*`).
   * @internal A submodule; its parameters are reached by name (`namedParameters`, state dicts).
   */
  readonly eva: Eva;
  /** Whether it was built without the patch decoder. */
  readonly encoderOnly: boolean;
  /** [embedDim]: `encode` returns the token grid. */
  readonly featureChannels: readonly number[];
  /** Input channels. */
  readonly inChannels: number;
  /** Decoder output channels. */
  readonly outChannels: number;
  /** The pretraining patch. */
  readonly patchSize: Vec3;
  /** Token-level entry points. */
  readonly tokens: TokenHooks;
  /** Drop-path randomness when a caller passes none (see ForwardOptions.rng). */
  readonly #fallbackRng: Generator;

  /** Builds the network for `shape`, initialised from `rng`. */
  constructor(readonly config: PrimusConfig, shape: NetworkShape, rng: Generator) {
    super();
    const { inChannels, outChannels, patchSize, encoderOnly } = shape;
    this.inChannels = inChannels;
    this.outChannels = outChannels;
    this.patchSize = patchSize;
    this.encoderOnly = encoderOnly;
    this.featureChannels = [config.embedDim];
    this.grid = tokenGrid(config, patchSize);
    // registration order of the reference: down_projection, up_projection, eva
    this.down_projection = this.registerModule("down_projection", new PatchEmbed(inChannels, config, rng));
    this.up_projection = encoderOnly
      ? undefined
      : this.registerModule("up_projection", new PatchDecode(config, outChannels, rng));
    this.eva = this.registerModule("eva", new Eva(config, this.grid, rng));
    this.#fallbackRng = new Generator(rng.state.seed + 0x5eed, rng.gpu);
    this.tokens = {
      embedDim: config.embedDim,
      grid: (patch) => tokenGrid(config, patch),
      encodeTokens: (x, options = {}) => this.#encodeTokens(x, options).tokens,
      decodeTokens: (tokens, grid) => this.#decode(this.#toGrid(tokens, [grid[0], grid[1], grid[2]])),
    };
  }

  #encodeTokens(x: Tensor, options: TokenEncodeOptions): { tokens: Tensor; grid: Vec3 } {
    if (x.rank !== 5 || x.shape[1] !== this.inChannels) {
      throw new RangeError(`primus: input must be [B, ${this.inChannels}, D, H, W], got ${x}`);
    }
    const grid = tokenGrid(this.config, x.shape.slice(2));
    const e = this.down_projection.forward(x); // [B, D, d, h, w]
    const [b, d] = e.shape;
    const n = grid[0] * grid[1] * grid[2];
    let tokens = permute(reshape(e, [b, d, n]), [0, 2, 1]); // [B, N, D]
    if (options.maskToken) tokens = substituteMaskToken(tokens, options.maskToken);
    const h = this.eva.forward(tokens, grid, options.rng ?? this.#fallbackRng, options.keep);
    return { tokens: h, grid };
  }

  #toGrid(tokens: Tensor, grid: Vec3): Tensor {
    const [b, n, d] = tokens.shape;
    if (tokens.rank !== 3 || n !== grid[0] * grid[1] * grid[2] || d !== this.config.embedDim) {
      throw new RangeError(
        `primus: tokens must be [B, ${grid.join("·")}, ${this.config.embedDim}] for grid ${
          grid.join("×")
        }, got ${tokens}`,
      );
    }
    return reshape(permute(tokens, [0, 2, 1]), [b, d, ...grid]);
  }

  #decode(grid: Tensor): Tensor {
    if (!this.up_projection) {
      throw new Error("primus: this network was built encoder-only; it has no decoder");
    }
    return this.up_projection.forward(grid);
  }

  /** The token grid [B, D, d, h, w] after the transformer and its final norm. */
  encode(x: Tensor, options: ForwardOptions = {}): Tensor[] {
    const { tokens, grid } = this.#encodeTokens(x, options);
    return [this.#toGrid(tokens, grid)];
  }

  /** [B, in, D, H, W] → [B, out, D, H, W]. */
  forward(x: Tensor, options: ForwardOptions = {}): Tensor {
    return this.#decode(this.encode(x, options)[0]);
  }

  /** The patch decoder on the token grid [B, D, d, h, w] (`encode`'s one feature). */
  decode(features: Tensor[]): Tensor {
    if (features.length !== 1) {
      throw new RangeError(`primus: decode() needs the token grid alone, got ${features.length}`);
    }
    return this.#decode(features[0]);
  }

  /** The reference's persistent `mask_token` buffer [1, 1, D] (zeros; only token dropping reads it). */
  referenceBuffers(): Record<string, HostTensor> {
    const d = this.config.embedDim;
    return { mask_token: { dtype: "F32", shape: [1, 1, d], data: new Float32Array(d) } };
  }

  /** Keys as nnssl's adaptation plan for Primus names them. */
  adaptationPlan(): AdaptationPlan {
    return {
      architecture: { plugin: NAME, version: VERSION, config: this.config },
      inChannels: this.inChannels,
      patchSize: this.patchSize,
      recommendedDownstreamPatchSize: [160, 160, 160] as Vec3,
      encoderKeys: ["eva"],
      stemKeys: ["down_projection"],
      inputProjectionKeys: ["down_projection.proj"],
      positionEmbeddingKeys: ["eva.pos_embed"],
    };
  }
}

/** The Primus architecture plugin (`--arch primus-s`, `-b`, `-m`, `-l`, `-tiny`). */
const plugin: ArchitecturePlugin<PrimusConfig> = definePlugin({
  kind: "architecture",
  name: NAME,
  version: VERSION,
  coreApi: "^0.2.0",
  description: "Primus 3D ViT (EVA-02 blocks, 3D RoPE, patch decoder; S/B/M/L of nnssl/OpenMind, tiny)",
  family: "vit",
  config: PrimusConfig,
  sizes: {
    s: { embedDim: 396, depth: 12, heads: 6 },
    b: { embedDim: 792, depth: 12, heads: 12 },
    m: { embedDim: 864, depth: 16, heads: 12 },
    l: { embedDim: 1056, depth: 24, heads: 16 },
    tiny: { embedDim: 48, depth: 2, heads: 2 },
  },
  create: ({ config, rng, ...shape }) => new Primus(config, shape, rng),
  patchMultiple: (config) => patchEmbedSizeOf(config),
  countParameters: (config, { inChannels, outChannels, patchSize, encoderOnly }) =>
    countPrimusParameters(config, inChannels, outChannels, patchSize, encoderOnly),
});

export default plugin;
