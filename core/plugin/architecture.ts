/**
 * The architecture contract: what an architecture plugin builds (a {@link Network}) and the hooks a
 * network offers SSL methods — per-stage encoder features, an encoder-only build, layer hooks on a CNN's
 * convolutions, poolings and norms (sparse convolution, as SparK does it), and token hooks on a ViT
 * (mask-token substitution, token dropping, decoding a token sequence).
 *
 * @module
 */
import type { HostTensor, Module } from "../nn/mod.ts";
import type { Generator, Tensor } from "../tensor/mod.ts";
import type { PluginBase } from "./plugin_base.ts";

/** Architecture families; methods declare which they support. */
export type ArchitectureFamily = "cnn" | "vit";

/** A 3D size (depth, height, width). */
export type Vec3 = [number, number, number];

/** Keys and facts downstream fine-tuning needs (nnssl's adaptation plan). */
export interface AdaptationPlan {
  /** The architecture plugin, its version and resolved config. */
  architecture: { plugin: string; version: string; config: unknown };
  /** Input channels of pretraining. */
  inChannels: number;
  /** Pretraining patch size. */
  patchSize: Vec3;
  /** Downstream default patch size. */
  recommendedDownstreamPatchSize: Vec3;
  /** Parameter-name prefixes of the encoder (loaded downstream). */
  encoderKeys: string[];
  /** Prefixes of the stem (repeated for more input channels). */
  stemKeys: string[];
  /** Prefixes of the input projection. */
  inputProjectionKeys: string[];
  /** Prefixes of the position embedding (interpolated for other patch sizes). */
  positionEmbeddingKeys: string[];
}

/** Where a layer hook is called: the layer's module name and its encoder stage. */
export interface LayerSite {
  /** Dotted module name, e.g. "encoder.stages.2.blocks.0.conv1.conv". */
  name: string;
  /** Encoder stage (0 = stem and first stage at full resolution, …). */
  stage: number;
}

/** How a norm is applied at a site: its affine parameters and the fused activation and residual. */
export interface NormCall {
  /** Instance-norm weight [C] (undefined: no affine). */
  weight?: Tensor;
  /** Instance-norm bias [C]. */
  bias?: Tensor;
  /** The norm's epsilon. */
  eps: number;
  /** LeakyReLU slope applied after the norm (undefined: no activation). */
  slope?: number;
  /** Tensor added after the norm, before the activation (a residual path). */
  residual?: Tensor;
}

/**
 * Hooks into a CNN encoder's layers, called on every forward/encode that passes them. Each returns the
 * tensor to use instead (or the one it got). SparK's sparse convolution multiplies every convolution and
 * pooling output by its mask and replaces each norm with one over the visible voxels only.
 */
export interface LayerHooks {
  /** After each encoder convolution (including the stem and residual projections). */
  conv?(output: Tensor, site: LayerSite): Tensor;
  /** After each encoder pooling (residual paths). */
  pool?(output: Tensor, site: LayerSite): Tensor;
  /**
   * Instead of each encoder norm (+ activation, + residual): return the result, or undefined to let the
   * network apply its own.
   */
  norm?(input: Tensor, call: NormCall, site: LayerSite): Tensor | undefined;
}

/** Mask-token substitution: tokens where `mask` is 1 are replaced by `token`, before the position embedding. */
export interface MaskTokenInput {
  /** [B, N] (f32 or u8; 1 = replace) over the token grid, flattened like the network's tokens. */
  mask: Tensor;
  /** The token [C] (a learnable parameter of the method). */
  token: Tensor;
}

/** Per-call options of {@link Network.forward} and {@link Network.encode}. */
export interface ForwardOptions {
  /**
   * Randomness for stochastic layers in training mode (drop path). Methods pass their step's
   * `StepContext.rng`, so that a resumed run draws the same masks as an uninterrupted one; without it a
   * network falls back to a generator of its own.
   */
  rng?: Generator;
  /** CNN encoders: hooks into every convolution, pooling and norm of the encoder. */
  layerHooks?: LayerHooks;
  /** ViTs: mask-token substitution before the position embedding (SimMIM). */
  maskToken?: MaskTokenInput;
}

/** Options of {@link TokenHooks.encodeTokens}. */
export interface TokenEncodeOptions extends ForwardOptions {
  /**
   * Tokens to keep, i32 [B, K] indices into the flattened token grid: the encoder runs on these K tokens
   * only (gathered after the position embedding; the rotary table is gathered with the same indices).
   */
  keep?: Tensor;
}

/** A ViT's token-level entry points, for methods that work on token sequences (MAE's token dropping). */
export interface TokenHooks {
  /** Token width. */
  readonly embedDim: number;
  /** The token grid of a patch (patch ÷ patch embedding). */
  grid(patch: readonly number[]): Vec3;
  /** Patch embedding, position embedding, blocks, final norm: [B, K or N, C] tokens. */
  encodeTokens(x: Tensor, options?: TokenEncodeOptions): Tensor;
  /** The network's patch decoder on a full token sequence [B, N, C] of `grid`: [B, out, D, H, W]. */
  decodeTokens(tokens: Tensor, grid: readonly number[]): Tensor;
}

/** A network built by an architecture plugin. Parameter names follow the reference implementation. */
export interface Network extends Module {
  /** Its family. */
  readonly family: ArchitectureFamily;
  /** Built without a decoder (`ArchitectureRequest.encoderOnly`): `forward` throws, `encode` works. */
  readonly encoderOnly: boolean;
  /** Channels of each `encode()` feature (CNN: one per stage; ViT: [token width]). */
  readonly featureChannels: readonly number[];
  /** [B, inChannels, D, H, W] → [B, outChannels, D, H, W]. */
  forward(x: Tensor, options?: ForwardOptions): Tensor;
  /** Encoder features: CNN, one per stage (shallow to deep); ViT, the token grid [B, C, d, h, w]. */
  encode(x: Tensor, options?: ForwardOptions): Tensor[];
  /**
   * The decoder on encoder features shaped as `encode` returns them (possibly changed by the method, e.g.
   * SparK's densified stages): `forward(x)` is `decode(encode(x))`. Throws when built encoder-only.
   */
  decode?(features: Tensor[]): Tensor;
  /**
   * Deep supervision (nnU-Net): the segmentation output of every decoder resolution, full resolution
   * first (`[0]` is `forward(x)`), each through its own 1×1×1 head. Only networks with a multi-scale
   * decoder have it (their plugin declares `deepSupervision`); inference uses `forward` alone.
   */
  forwardDeepSupervision?(x: Tensor, options?: ForwardOptions): Tensor[];
  /** ViTs: token-level entry points. */
  readonly tokens?: TokenHooks;
  /** The adaptation plan for downstream use. */
  adaptationPlan(): AdaptationPlan;
  /**
   * Extra keys under which the reference implementation's state dict repeats a parameter (PyTorch
   * lists a module registered twice under both paths); exports write them so `load_state_dict` is
   * strict-clean, imports skip them.
   */
  referenceAliases?(name: string): string[];
  /**
   * Persistent non-parameter tensors of the reference state dict (PyTorch buffers such as Primus's
   * all-zero `mask_token`), by name with their values: exports write them so `load_state_dict` is
   * strict-clean, imports skip them.
   */
  referenceBuffers?(): Record<string, HostTensor>;
}

/** The input/output geometry a network is built for. */
export interface NetworkShape {
  /** Input channels. */
  inChannels: number;
  /** Output channels of the decoder head (ignored when `encoderOnly`). */
  outChannels: number;
  /** The run's patch (sizes patch-dependent parameters such as a ViT's position embedding). */
  patchSize: Vec3;
  /** Build the encoder alone (contrastive methods: no unused decoder to store and weight-decay). */
  encoderOnly: boolean;
}

/** What an architecture plugin is asked to build. */
export interface ArchitectureRequest<C> extends NetworkShape {
  /** The resolved config. */
  config: C;
  /** Seeded generator for parameter initialisation. */
  rng: Generator;
}

/** An architecture plugin. */
export interface ArchitecturePlugin<C = unknown> extends PluginBase<C> {
  /** Selects this contract. */
  kind: "architecture";
  /** The family methods match against. */
  family: ArchitectureFamily;
  /** Named size presets: `--arch resenc-l` is plugin "resenc" with sizes.l merged into the config. */
  sizes?: Record<string, Partial<C>>;
  /** Builds a network. */
  create(request: ArchitectureRequest<C>): Network;
  /**
   * Its networks implement {@link Network.forwardDeepSupervision} (a multi-scale decoder), so fine-tuning
   * can train with deep supervision; absent or false: they cannot.
   */
  deepSupervision?: boolean;
  /** Parameter count computed from the config without allocating (for tests and `--dry-run`). */
  countParameters?(config: C, shape: NetworkShape): number;
  /**
   * What each patch side must be a multiple of (a CNN's total stride, a ViT's patch embedding), so a
   * patch that does not fit is refused before the run builds anything.
   */
  patchMultiple?(config: C): Vec3;
}
