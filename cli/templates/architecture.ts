/** Template of a new architecture plugin package (`voxssl plugin new <name> --kind architecture`). */

/** mod.ts of an architecture named `name`. */
export function architectureModule(name: string): string {
  return `/**
 * ${name}: a small CNN encoder-decoder (a starting point: replace it with yours). Each stage is a 3³
 * convolution (stride 2 from the second stage on), instance norm and LeakyReLU; the decoder upsamples with
 * 2³ transposed convolutions, adds the skip and ends in a 1×1 head.
 */
import {
  type AdaptationPlan,
  add,
  Conv3d,
  ConvTranspose3d,
  definePlugin,
  type ForwardOptions,
  type Generator,
  InstanceNorm3d,
  Module,
  type Network,
  type NetworkShape,
  type Tensor,
  z,
} from "@voxssl/core";
import meta from "./deno.json" with { type: "json" };

const Config = z.object({
  /** Channels per stage (each stage after the first halves the resolution). */
  features: z.array(z.number().int().positive()).min(1).default([8, 16, 32]),
});

/** The configuration. */
export type Config = z.output<typeof Config>;

class Stage extends Module {
  constructor(cin: number, cout: number, stride: number, rng: Generator) {
    super();
    this.registerModule("conv", new Conv3d(cin, cout, 3, rng, { stride, padding: 1 }));
    this.registerModule("norm", new InstanceNorm3d(cout));
  }
  forward(x: Tensor): Tensor {
    return this.child<InstanceNorm3d>("norm").forwardAct(this.child<Conv3d>("conv").forward(x), { slope: 0.01 });
  }
}

class List extends Module {
  readonly items: Module[] = [];
  add<T extends Module>(m: T): T {
    this.registerModule(String(this.items.length), m);
    this.items.push(m);
    return m;
  }
}

/** The network. */
export class Net extends Module implements Network {
  readonly family = "cnn" as const;
  readonly encoderOnly: boolean;
  readonly featureChannels: readonly number[];
  readonly #encoder: List;
  readonly #up: List | undefined;
  constructor(readonly config: Config, readonly shape: NetworkShape, rng: Generator) {
    super();
    const f = config.features;
    const factor = 2 ** (f.length - 1);
    if (shape.patchSize.some((p) => p % factor !== 0)) {
      throw new RangeError(\`${name}: the patch \${shape.patchSize.join("×")} must be a multiple of \${factor}\`);
    }
    this.encoderOnly = shape.encoderOnly;
    this.featureChannels = [...f];
    this.#encoder = this.registerModule("encoder", new List());
    f.forEach((c, i) => this.#encoder.add(new Stage(i === 0 ? shape.inChannels : f[i - 1], c, i === 0 ? 1 : 2, rng)));
    if (!shape.encoderOnly) {
      this.#up = this.registerModule("decoder", new List());
      for (let i = f.length - 1; i > 0; i--) this.#up.add(new ConvTranspose3d(f[i], f[i - 1], 2, rng, { stride: 2 }));
      this.registerModule("head", new Conv3d(f[0], shape.outChannels, 1, rng));
    }
  }
  /** Every stage's output, shallow to deep. */
  encode(x: Tensor, _options?: ForwardOptions): Tensor[] {
    const out: Tensor[] = [];
    let h = x;
    for (const stage of this.#encoder.items as Stage[]) out.push(h = stage.forward(h));
    return out;
  }
  /** [B, in, D, H, W] → [B, out, D, H, W]. */
  forward(x: Tensor, options?: ForwardOptions): Tensor {
    if (!this.#up) throw new Error("${name}: built encoder-only; it has no forward()");
    const skips = this.encode(x, options);
    let h = skips[skips.length - 1];
    (this.#up.items as ConvTranspose3d[]).forEach((up, i) => (h = add(up.forward(h), skips[skips.length - 2 - i])));
    return this.child<Conv3d>("head").forward(h);
  }
  /** Keys and facts for downstream use. */
  adaptationPlan(): AdaptationPlan {
    return {
      architecture: { plugin: "${name}", version: meta.version, config: this.config },
      inChannels: this.shape.inChannels,
      patchSize: this.shape.patchSize,
      recommendedDownstreamPatchSize: this.shape.patchSize,
      encoderKeys: ["encoder"],
      stemKeys: ["encoder.0"],
      inputProjectionKeys: ["encoder.0.conv"],
      positionEmbeddingKeys: [],
    };
  }
}

/** Parameters of a configuration, without building it. */
export function countParameters(c: Config, shape: NetworkShape): number {
  const f = c.features;
  let n = 0;
  f.forEach((cout, i) => (n += 27 * (i === 0 ? shape.inChannels : f[i - 1]) * cout + cout + 2 * cout));
  if (shape.encoderOnly) return n;
  for (let i = f.length - 1; i > 0; i--) n += 8 * f[i] * f[i - 1] + f[i - 1];
  return n + f[0] * shape.outChannels + shape.outChannels;
}

export default definePlugin({
  kind: "architecture",
  name: "${name}",
  version: meta.version,
  coreApi: "^0.2.0",
  description: "small CNN encoder-decoder (template)",
  family: "cnn",
  config: Config,
  sizes: { tiny: { features: [4, 8] }, s: { features: [16, 32, 64] } },
  create: ({ config, rng, ...shape }) => new Net(config, shape, rng),
  countParameters: (config, shape) => countParameters(config, shape),
});
`;
}

/** mod_test.ts of an architecture named `name`. */
export function architectureTest(name: string): string {
  return `import { Generator, initGpu, scope, tensor, validatePlugin, VERSION } from "@voxssl/core";
import plugin, { countParameters } from "./mod.ts";

Deno.test("${name} is a valid plugin for this voxssl core", () => {
  validatePlugin(plugin, VERSION, "${name}");
});

Deno.test({
  name: "${name}: shapes of forward and encode, and the parameter count without building",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const gpu = await initGpu();
    const config = plugin.config.parse({});
    const shape = { inChannels: 2, outChannels: 3, patchSize: [8, 8, 12] as [number, number, number], encoderOnly: false };
    const net = scope(() => plugin.create({ config, rng: new Generator(0, gpu), ...shape }));
    if (net.parameterCount() !== countParameters(config, shape)) throw new Error("count differs");
    const x = tensor(new Float32Array(2 * 8 * 8 * 12).map((_, i) => Math.cos(i)), [1, 2, 8, 8, 12], { gpu });
    const y = scope(() => net.forward(x));
    if (y.shape.join() !== "1,3,8,8,12") throw new Error(\`forward gave [\${y.shape}]\`);
    const features = scope(() => net.encode(x));
    const channels = features.map((f) => f.shape[1]);
    if (channels.join() !== net.featureChannels.join()) throw new Error(\`features [\${channels}]\`);
  },
});
`;
}
