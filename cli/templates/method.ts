/** Template of a new SSL-method plugin package (`voxssl plugin new <name> --kind ssl-method`). */

/** mod.ts of a method named `name`. */
export function methodModule(name: string): string {
  return `/**
 * ${name}: a masked-reconstruction SSL method (a starting point: replace the pretext with yours).
 *
 * Data side (\`sample\`, in the loader's workers): the run's standard patch and a u8 mask over cubic blocks,
 * drawn from the sample's seeded generator. GPU side: the masked blocks are zeroed in the input and the
 * network is trained to reconstruct them (MSE over the masked voxels), logging the visible-voxel error as a
 * metric.
 */
import { add, cast, definePlugin, div, expand, mul, powScalar, reshape, sampleArray, sub, sum, z } from "@voxssl/core";
import meta from "./deno.json" with { type: "json" };

const Config = z.object({
  /** Edge of a masked block, in voxels (the patch must be a multiple of it). */
  block: z.number().int().positive().default(8),
  /** Fraction of blocks masked. */
  maskRatio: z.number().gt(0).lt(1).default(0.5),
});

export default definePlugin({
  kind: "ssl-method",
  name: "${name}",
  version: meta.version,
  coreApi: "^0.2.0",
  description: "masked reconstruction of cubic blocks (template)",
  supports: ["cnn", "vit"],
  network: { outChannels: 1 },
  config: Config,
  defaults: {
    cnn: {
      optimizer: { name: "sgd", lr: 1e-2, momentum: 0.99, nesterov: true, weightDecay: 3e-5 },
      schedule: { name: "poly", exponent: 0.9 },
      clipGradNorm: 12,
      patchSize: [64, 64, 64],
      batchSize: 2,
    },
    vit: {
      optimizer: { name: "adamw", lr: 3e-4, betas: [0.9, 0.98], eps: 1e-8, weightDecay: 5e-2 },
      schedule: { name: "warmup-poly", warmup: 5, exponent: 0.9 },
      clipGradNorm: 1,
      patchSize: [64, 64, 64],
      batchSize: 2,
    },
  },
  sample(context) {
    const { block, maskRatio } = context.config;
    const patch = context.patch();
    const grid = patch.shape.map((s) => Math.ceil(s / block));
    const mask = new Uint8Array(grid[0] * grid[1] * grid[2]);
    for (let i = 0; i < mask.length; i++) mask[i] = context.rng.chance(maskRatio) ? 1 : 0;
    return {
      image: sampleArray(patch.image, [1, ...patch.shape]),
      blockMask: sampleArray(mask, grid),
    };
  },
  build: ({ network, config }) => ({
    modules: {},
    loss: (batch, { rng }) => {
      const image = batch.get("image"); // [B, 1, D, H, W] f32
      const [b, , d, h, w] = image.shape;
      const grid = cast(batch.get("blockMask"), "f32"); // [B, gd, gh, gw]
      const [gd, gh, gw] = grid.shape.slice(1);
      const k = config.block;
      if (gd * k !== d || gh * k !== h || gw * k !== w) {
        throw new Error(\`${name}: the patch [\${d}, \${h}, \${w}] must be a multiple of block \${k}\`);
      }
      const mask = reshape(expand(reshape(grid, [b, 1, gd, 1, gh, 1, gw, 1]), [b, 1, gd, k, gh, k, gw, k]), [b, 1, d, h, w]);
      const visible = add(mul(mask, -1), 1);
      const prediction = network.forward(mul(image, visible), { rng });
      const squared = powScalar(sub(prediction, image), 2);
      const masked = div(sum(mul(squared, mask)), add(sum(mask), 1e-6));
      const seen = div(sum(mul(squared, visible)), add(sum(visible), 1e-6));
      return { loss: masked, metrics: { visibleError: seen } };
    },
  }),
});
`;
}

/** mod_test.ts of a method named `name`. */
export function methodTest(name: string): string {
  return `import {
  type AdaptationPlan,
  Generator,
  initGpu,
  Module,
  mul,
  type Network,
  scope,
  type Tensor,
  tensor,
  validatePlugin,
  VERSION,
} from "@voxssl/core";
import plugin from "./mod.ts";

/** The smallest network: one learnable scale. */
class Scale extends Module implements Network {
  readonly family = "cnn" as const;
  readonly encoderOnly = false;
  readonly featureChannels = [1];
  constructor() {
    super();
    this.registerParameter("w", tensor([1], [1]));
  }
  forward(x: Tensor): Tensor {
    return mul(x, this.p("w"));
  }
  encode(x: Tensor): Tensor[] {
    return [x];
  }
  adaptationPlan(): AdaptationPlan {
    throw new Error("not needed");
  }
}

Deno.test("${name} is a valid plugin for this voxssl core", () => {
  validatePlugin(plugin, VERSION, "${name}");
});

Deno.test({
  name: "${name}: with an identity network the loss is the mean square of the masked voxels",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const gpu = await initGpu();
    const network = scope(() => new Scale());
    const config = plugin.config.parse({ block: 2, maskRatio: 0.5 });
    const method = plugin.build({
      network,
      config,
      rng: new Generator(0, gpu),
      patchSize: [4, 4, 4],
      createNetwork: () => network,
    });
    const image = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i));
    const blocks = Uint8Array.from([1, 0, 0, 1, 0, 1, 1, 0]);
    const tensors = {
      image: tensor(image, [1, 1, 4, 4, 4], { gpu }),
      blockMask: tensor(blocks, [1, 2, 2, 2], { gpu, dtype: "u8" }),
    };
    const batch = { tensors, size: 1, sources: ["test"], get: (n: string) => tensors[n as keyof typeof tensors] };
    const loss = await scope(() => method.loss(batch, { step: 0, epoch: 0, training: true, rng: new Generator(1, gpu) }).loss).item();
    let sum = 0, count = 0;
    for (let i = 0; i < 64; i++) {
      const [d, h, w] = [i >> 4, (i >> 2) & 3, i & 3];
      if (blocks[(d >> 1) * 4 + (h >> 1) * 2 + (w >> 1)]) (sum += image[i] ** 2, count++); // prediction 0 there
    }
    if (Math.abs(loss - sum / count) > 1e-5) throw new Error(\`loss \${loss}, expected \${sum / count}\`);
  },
});
`;
}
