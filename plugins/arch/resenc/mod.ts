/**
 * ResEnc U-Net (dynamic_network_architectures' ResidualEncoderUNet, as nnssl pretrains it): a residual
 * encoder of BasicBlockD stages and a U-Net decoder with transposed-convolution upsampling and skip
 * concatenation. Module tree and parameter names follow the reference, so `network.safetensors` loads
 * into the PyTorch class with `load_state_dict` (the export also writes the reference's alias keys).
 *
 * Facts (see plugins/arch/resenc/README.md for sources): conv → InstanceNorm(eps 1e-5, affine) →
 * LeakyReLU(0.01); the stride sits in conv1 of the first block of a stage; the skip of a block that
 * changes resolution or width is AvgPool(stride) then a bias-free 1×1 conv + InstanceNorm; the block's
 * LeakyReLU comes after the residual add (fused here with conv2's norm); the decoder concatenates
 * [upsampled, skip], has one conv block per stage and a 1×1 seg layer per stage (all built; `forward`
 * uses the last, `forwardDeepSupervision` all of them, full resolution first).
 *
 * Contract hooks: `encoderOnly` builds no decoder; `encode` returns every stage's output
 * (`featureChannels` = the stage widths); `layerHooks` see every encoder convolution (stem, blocks,
 * residual projections), pooling and norm, with the module's reference name and its stage.
 */
import {
  type AdaptationPlan,
  type ArchitecturePlugin,
  avgPool3d,
  checkpoint,
  checkpointedSegments,
  concat,
  Conv3d,
  type ConvInit,
  ConvTranspose3d,
  definePlugin,
  fillInPlace,
  type ForwardOptions,
  type Generator,
  InstanceNorm3d,
  type LayerHooks,
  Module,
  type Network,
  type NetworkShape,
  type Tensor,
  type Vec3,
  z,
} from "@voxssl/core";
import meta from "./deno.json" with { type: "json" };

const NAME = "resenc";
const VERSION = meta.version;

/** Where a layer sits, for hooks: its stage and the hooks of this call. */
interface HookContext {
  hooks: LayerHooks;
  stage: number;
}

/** ResEnc configuration: features, blocks and strides need one entry per stage. */
export interface ResEncConfig {
  /** Channels of each stage, shallow to deep (default [32, 64, 128, 256, 320, 320]). */
  features: number[];
  /** Residual blocks per encoder stage (default [1, 3, 4, 6, 6, 6]). */
  blocksPerStage: number[];
  /** Isotropic stride per stage (first stage 1; default [1, 2, 2, 2, 2, 2]). */
  strides: number[];
  /** Convolution kernel size (default 3). */
  kernel: number;
  /** Convolution blocks per decoder stage (default 1). */
  convsPerDecoderStage: number;
  /** LeakyReLU slope (default 0.01). */
  negativeSlope: number;
  /**
   * "he" (default): dynamic_network_architectures' initialize (He normal, zero bias, last norm of every
   * residual block zeroed); "torch-default": what nnssl's MAE trainer runs with (it never initializes).
   */
  init: "he" | "torch-default";
  /**
   * Activation checkpointing of encoder stages: "none" (default), "stages" (every stage) or stage indices;
   * a checkpointed stage keeps only its input for backward and recomputes its forward pass there.
   */
  activationCheckpointing: "none" | "stages" | number[];
}

/** The zod schema of {@link ResEncConfig}, with its defaults. */
const ResEncConfig: z.ZodType<ResEncConfig> = z.object({
  features: z.array(z.number().int().positive()).min(2).default([32, 64, 128, 256, 320, 320]),
  blocksPerStage: z.array(z.number().int().positive()).min(2).default([1, 3, 4, 6, 6, 6]),
  /** Isotropic stride per stage (first stage 1). */
  strides: z.array(z.number().int().positive()).min(2).default([1, 2, 2, 2, 2, 2]),
  kernel: z.number().int().positive().default(3),
  convsPerDecoderStage: z.number().int().positive().default(1),
  negativeSlope: z.number().min(0).default(0.01),
  /** "he": dynamic_network_architectures' initialize (He normal, zero bias, last norm of every
   * residual block zeroed); "torch-default": what nnssl's MAE trainer runs with (it never initializes). */
  init: z.enum(["he", "torch-default"]).default("he"),
  /** Activation checkpointing of encoder stages: "none", "stages" (all) or stage indices. */
  activationCheckpointing: z.union([z.enum(["none", "stages"]), z.array(z.number().int().min(0))]).default(
    "none",
  ),
}).refine((c) => c.features.length === c.blocksPerStage.length && c.features.length === c.strides.length, {
  message: "features, blocksPerStage and strides need one entry per stage",
});

/** conv → InstanceNorm → optional LeakyReLU (ConvDropoutNormReLU of the reference). */
class ConvNormAct extends Module {
  /** Dotted module name in the network (set once the tree is built). */
  path = "";
  constructor(
    cin: number,
    cout: number,
    kernel: number,
    stride: number,
    rng: Generator,
    readonly act: boolean,
    readonly slope: number,
    init: ConvInit,
    bias = true,
  ) {
    super();
    this.registerModule(
      "conv",
      new Conv3d(cin, cout, kernel, rng, { stride, padding: (kernel - 1) >> 1, bias, init }),
    );
    this.registerModule("norm", new InstanceNorm3d(cout));
  }
  /**
   * conv → norm → act. With `residual`, the residual is added after the norm and the LeakyReLU follows
   * (a BasicBlockD's tail, fused in one pass).
   */
  forward(x: Tensor, at?: HookContext, residual?: Tensor): Tensor {
    let y = this.child<Conv3d>("conv").forward(x);
    if (at?.hooks.conv) y = at.hooks.conv(y, { name: `${this.path}.conv`, stage: at.stage });
    const norm = this.child<InstanceNorm3d>("norm");
    const slope = this.act || residual ? this.slope : undefined;
    if (at?.hooks.norm) {
      const call = { weight: norm.weight, bias: norm.bias, eps: norm.eps, slope, residual };
      const custom = at.hooks.norm(y, call, { name: `${this.path}.norm`, stage: at.stage });
      if (custom) return custom;
    }
    return slope === undefined ? norm.forward(y) : norm.forwardAct(y, { slope, residual });
  }
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

/** A module holding one named Sequence (e.g. StackedConvBlocks.convs). */
class Holder<T extends Module> extends Module {
  readonly list: Sequence<T>;
  constructor(name: string) {
    super();
    this.list = this.registerModule(name, new Sequence<T>());
  }
}

class AvgPool extends Module {
  constructor(readonly kernel: number) {
    super();
  }
}

/** BasicBlockD: act(norm(conv2(act(norm(conv1(x))))) + skip(x)). */
class BasicBlockD extends Module {
  /** Dotted module name in the network (set once the tree is built). */
  path = "";
  readonly stride: number;
  readonly project: boolean;
  constructor(cin: number, cout: number, kernel: number, stride: number, rng: Generator, c: ResEncConfig) {
    super();
    this.stride = stride;
    this.project = cin !== cout;
    this.registerModule(
      "conv1",
      new ConvNormAct(cin, cout, kernel, stride, rng, true, c.negativeSlope, c.init),
    );
    this.registerModule("conv2", new ConvNormAct(cout, cout, kernel, 1, rng, false, c.negativeSlope, c.init));
    if (stride !== 1 || this.project) {
      const skip = this.registerModule("skip", new Sequence<Module>());
      if (stride !== 1) skip.add(new AvgPool(stride));
      if (this.project) skip.add(new ConvNormAct(cin, cout, 1, 1, rng, false, 0, c.init, false));
    }
    if (c.init === "he") {
      // init_last_bn_before_add_to_0: each residual branch starts at zero
      const norm = this.child<ConvNormAct>("conv2").child<InstanceNorm3d>("norm");
      for (const [, t] of norm.namedParameters()) fillInPlace(t, 0);
    }
  }
  forward(x: Tensor, at?: HookContext): Tensor {
    let skip = x;
    if (this.stride !== 1) {
      skip = avgPool3d(skip, this.stride);
      if (at?.hooks.pool) skip = at.hooks.pool(skip, { name: `${this.path}.skip.0`, stage: at.stage });
    }
    if (this.project) {
      const proj = this.child<Sequence<Module>>("skip").items.at(-1) as ConvNormAct;
      skip = proj.forward(skip, at);
    }
    const h = this.child<ConvNormAct>("conv1").forward(x, at);
    // conv2's norm, the residual add and the block's LeakyReLU in one fused pass
    return this.child<ConvNormAct>("conv2").forward(h, at, skip);
  }
}

class Encoder extends Module {
  readonly stem: Holder<ConvNormAct>;
  readonly stages: Sequence<Holder<BasicBlockD>>;
  /** Stages run with activation checkpointing. */
  readonly checkpointed: ReadonlySet<number>;
  constructor(inChannels: number, rng: Generator, c: ResEncConfig) {
    super();
    this.checkpointed = checkpointedSegments(
      c.activationCheckpointing,
      c.features.length,
      "stages",
      "resenc: activationCheckpointing",
    );
    this.stem = this.registerModule("stem", new Holder<ConvNormAct>("convs"));
    this.stem.list.add(
      new ConvNormAct(inChannels, c.features[0], c.kernel, 1, rng, true, c.negativeSlope, c.init),
    );
    this.stages = this.registerModule("stages", new Sequence<Holder<BasicBlockD>>());
    let cin = c.features[0];
    c.features.forEach((cout, s) => {
      const stage = new Holder<BasicBlockD>("blocks");
      for (let b = 0; b < c.blocksPerStage[s]; b++) {
        stage.list.add(
          new BasicBlockD(b === 0 ? cin : cout, cout, c.kernel, b === 0 ? c.strides[s] : 1, rng, c),
        );
      }
      this.stages.add(stage);
      cin = cout;
    });
  }
  /** Stage outputs, shallow to deep (the skips). */
  forward(x: Tensor, hooks?: LayerHooks): Tensor[] {
    let h = this.stem.list.items[0].forward(x, hooks && { hooks, stage: 0 });
    const skips: Tensor[] = [];
    if (hooks && this.checkpointed.size > 0) {
      throw new Error(
        'resenc: activationCheckpointing does not combine with layer hooks (they would run twice); set it to "none"',
      );
    }
    this.stages.items.forEach((stage, s) => {
      const run = (x: Tensor) =>
        stage.list.items.reduce((y, block) => block.forward(y, hooks && { hooks, stage: s }), x);
      h = this.checkpointed.has(s) ? checkpoint(run, [h]) : run(h);
      skips.push(h);
    });
    return skips;
  }
}

class Decoder extends Module {
  readonly stages: Sequence<Holder<ConvNormAct>>;
  readonly transpconvs: Sequence<ConvTranspose3d>;
  readonly segLayers: Sequence<Conv3d>;
  constructor(outChannels: number, rng: Generator, c: ResEncConfig) {
    super();
    this.stages = this.registerModule("stages", new Sequence<Holder<ConvNormAct>>());
    this.transpconvs = this.registerModule("transpconvs", new Sequence<ConvTranspose3d>());
    this.segLayers = this.registerModule("seg_layers", new Sequence<Conv3d>());
    const n = c.features.length;
    for (let s = 1; s < n; s++) {
      const below = c.features[n - s];
      const skip = c.features[n - s - 1];
      const stride = c.strides[n - s];
      this.transpconvs.add(new ConvTranspose3d(below, skip, stride, rng, { stride, init: c.init }));
      const stage = new Holder<ConvNormAct>("convs");
      for (let k = 0; k < c.convsPerDecoderStage; k++) {
        stage.list.add(
          new ConvNormAct(k === 0 ? 2 * skip : skip, skip, c.kernel, 1, rng, true, c.negativeSlope, c.init),
        );
      }
      this.stages.add(stage);
      this.segLayers.add(new Conv3d(skip, outChannels, 1, rng, { init: c.init }));
    }
  }
  /**
   * The full-resolution output, or with `all` every stage's seg-layer output, full resolution first
   * (dynamic_network_architectures' `seg_outputs[::-1]` under deep supervision).
   */
  forward(skips: Tensor[], all = false): Tensor[] {
    let h = skips[skips.length - 1];
    const last = this.stages.items.length - 1;
    const outputs: Tensor[] = [];
    this.stages.items.forEach((stage, s) => {
      const up = this.transpconvs.items[s].forward(h);
      h = concat([up, skips[skips.length - s - 2]], 1);
      for (const conv of stage.list.items) h = conv.forward(h);
      if (all || s === last) outputs.push(this.segLayers.items[s].forward(h));
    });
    return outputs.reverse();
  }
}

/** The ResEnc U-Net (or its encoder alone). */
export class ResEncUNet extends Module implements Network {
  /** A CNN. */
  readonly family = "cnn" as const;
  /**
   * The residual encoder (`encoder.*`).
   * @internal A submodule; its parameters are reached by name (`namedParameters`, state dicts).
   */
  readonly encoder: Encoder;
  /**
   * The U-Net decoder (`decoder.*`), absent when built encoder-only.
   * @internal A submodule; its parameters are reached by name (`namedParameters`, state dicts).
   */
  readonly decoder: Decoder | undefined;
  /** Whether it was built without a decoder. */
  readonly encoderOnly: boolean;
  /** Channels of each stage's output. */
  readonly featureChannels: readonly number[];
  /** Input channels. */
  readonly inChannels: number;
  /** Output channels of the segmentation layer (the reconstruction's channels in pretraining). */
  readonly outChannels: number;
  /** The pretraining patch `[D, H, W]`. */
  readonly patchSize: Vec3;
  /** Builds the network for `shape`, initialised from `rng`. */
  constructor(readonly config: ResEncConfig, shape: NetworkShape, rng: Generator) {
    super();
    const { inChannels, outChannels, patchSize, encoderOnly } = shape;
    this.inChannels = inChannels;
    this.outChannels = outChannels;
    this.patchSize = patchSize;
    this.encoderOnly = encoderOnly;
    this.featureChannels = [...config.features];
    const total = config.strides.reduce((a, b) => a * b, 1);
    if (patchSize.some((p) => p % total !== 0)) {
      throw new RangeError(
        `resenc: patch ${patchSize.join("×")} must be divisible by the total stride ${total}`,
      );
    }
    this.encoder = this.registerModule("encoder", new Encoder(inChannels, rng, config));
    this.decoder = encoderOnly
      ? undefined
      : this.registerModule("decoder", new Decoder(outChannels, rng, config));
    for (const [name, m] of this.namedModules()) {
      if (m instanceof ConvNormAct || m instanceof BasicBlockD) m.path = name;
    }
  }
  /** [B, in, D, H, W] → [B, out, D, H, W]. */
  forward(x: Tensor, options: ForwardOptions = {}): Tensor {
    return this.decode(this.encoder.forward(x, options.layerHooks));
  }
  /** The U-Net decoder on the stage outputs (the skips), shallow to deep. */
  decode(features: Tensor[]): Tensor {
    if (!this.decoder) throw new Error("resenc: this network was built encoder-only; it has no decoder");
    if (features.length !== this.featureChannels.length) {
      throw new RangeError(
        `resenc: decode() needs ${this.featureChannels.length} stage outputs, got ${features.length}`,
      );
    }
    return this.decoder.forward(features)[0];
  }
  /**
   * Deep supervision: every decoder stage's seg-layer output, full resolution first (`[0]` equals
   * `forward(x)`; the others at 1/2, 1/4, … of the patch).
   */
  forwardDeepSupervision(x: Tensor, options: ForwardOptions = {}): Tensor[] {
    if (!this.decoder) throw new Error("resenc: this network was built encoder-only; it has no decoder");
    return this.decoder.forward(this.encoder.forward(x, options.layerHooks), true);
  }
  /** Every stage's output, shallow to deep. */
  encode(x: Tensor, options: ForwardOptions = {}): Tensor[] {
    return this.encoder.forward(x, options.layerHooks);
  }
  /** Keys and facts for downstream use. */
  adaptationPlan(): AdaptationPlan {
    return {
      architecture: { plugin: NAME, version: VERSION, config: this.config },
      inChannels: this.inChannels,
      patchSize: this.patchSize,
      recommendedDownstreamPatchSize: [160, 160, 160] as Vec3,
      encoderKeys: ["encoder.stages"],
      stemKeys: ["encoder.stem"],
      inputProjectionKeys: ["encoder.stem.convs.0.conv", "encoder.stem.convs.0.all_modules.0"],
      positionEmbeddingKeys: [],
    };
  }
  /**
   * The reference state dict repeats tensors under alias keys: `X.conv.*` as `X.all_modules.0.*`,
   * `X.norm.*` as `X.all_modules.1.*`, and every `encoder.*` key again as `decoder.encoder.*`.
   */
  referenceAliases(name: string): string[] {
    const local = [name];
    const m = /^(.*)\.(conv|norm)\.(weight|bias)$/.exec(name);
    if (m && !name.startsWith("decoder.transpconvs") && !name.startsWith("decoder.seg_layers")) {
      local.push(`${m[1]}.all_modules.${m[2] === "conv" ? 0 : 1}.${m[3]}`);
    }
    const all = name.startsWith("encoder.") ? [...local, ...local.map((n) => `decoder.${n}`)] : local;
    return all.slice(1);
  }
}

/**
 * Parameters of a configuration, from the reference's arithmetic (no allocation); `encoderOnly` counts
 * the encoder alone.
 */
export function countResEncParameters(
  c: ResEncConfig,
  inChannels: number,
  outChannels: number,
  encoderOnly = false,
): number {
  const k3 = c.kernel ** 3;
  const cna = (ci: number, co: number, k = k3, bias = true) => k * ci * co + (bias ? co : 0) + 2 * co;
  let n = cna(inChannels, c.features[0]);
  let cin = c.features[0];
  c.features.forEach((cout, s) => {
    for (let b = 0; b < c.blocksPerStage[s]; b++) {
      const ci = b === 0 ? cin : cout;
      n += cna(ci, cout) + cna(cout, cout) + (ci !== cout ? cna(ci, cout, 1, false) : 0);
    }
    cin = cout;
  });
  if (encoderOnly) return n;
  const f = c.features, L = f.length;
  for (let s = 1; s < L; s++) {
    const below = f[L - s], skip = f[L - s - 1], st = c.strides[L - s];
    n += st ** 3 * below * skip + skip;
    for (let k = 0; k < c.convsPerDecoderStage; k++) n += cna(k === 0 ? 2 * skip : skip, skip);
    n += skip * outChannels + outChannels;
  }
  return n;
}

/** The ResEnc architecture plugin (`--arch resenc-l`, `-m`, `-s`, `-tiny`). */
const plugin: ArchitecturePlugin<ResEncConfig> = definePlugin({
  kind: "architecture",
  name: NAME,
  version: VERSION,
  coreApi: "^0.2.0",
  description: "residual-encoder U-Net (ResEnc-L of nnssl/OpenMind; M, S and tiny variants)",
  family: "cnn",
  config: ResEncConfig,
  deepSupervision: true,
  sizes: {
    l: {
      features: [32, 64, 128, 256, 320, 320],
      blocksPerStage: [1, 3, 4, 6, 6, 6],
      strides: [1, 2, 2, 2, 2, 2],
    },
    m: {
      features: [24, 48, 96, 192, 256, 256],
      blocksPerStage: [1, 2, 3, 4, 4, 4],
      strides: [1, 2, 2, 2, 2, 2],
    },
    s: {
      features: [16, 32, 64, 128, 192, 192],
      blocksPerStage: [1, 2, 2, 2, 2, 2],
      strides: [1, 2, 2, 2, 2, 2],
    },
    tiny: { features: [8, 16, 32], blocksPerStage: [1, 1, 1], strides: [1, 2, 2] },
  },
  create: ({ config, rng, ...shape }) => new ResEncUNet(config, shape, rng),
  countParameters: (config, { inChannels, outChannels, encoderOnly }) =>
    countResEncParameters(config, inChannels, outChannels, encoderOnly),
  patchMultiple: (config) => {
    const total = config.strides.reduce((a, b) => a * b, 1);
    return [total, total, total];
  },
});

export default plugin;
