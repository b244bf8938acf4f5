/**
 * Models Genesis as nnssl pretrains it (`ModelGenesisTrainer.py`, `ModelsGenesisEvaTrainer.py`,
 * `ssl_data/dataloading/model_genesis_transform.py`; facts in README.md): per sample, on the CPU in the
 * loader's workers, the run's plain random patch is flipped (input and target alike), locally shuffled,
 * mapped through a random Bézier intensity curve and in- or out-painted, with the original Models Genesis
 * probabilities; the network (with its decoder, one output channel) reconstructs the clean, flipped patch,
 * and the loss is the MSE over the whole volume.
 *
 * The transforms assume intensities in [0, 1]; nnssl applies them to z-scored patches (the Bézier curve
 * then clamps most intensities, and painting noise is U[0, 1)). `range: "nnssl"` (the default) keeps that;
 * `range: "minmax"` rescales each patch to [0, 1] first, input and target alike.
 *
 * Data side (`sample`): `image` (the transformed patch) and `target` (the clean patch), f32 [1, D, H, W]
 * each; with `excludeDefaced` also the deface mask (u8 [1, D, H, W], flipped alike), left out of the loss
 * as nnssl's `_ANON` trainers do.
 *
 * The transforms are exported as pure functions of a `[D, H, W]` array and a seeded `Rng`.
 */
import {
  add,
  cast,
  definePlugin,
  mseLoss,
  mul,
  sampleArray,
  type SampleOutput,
  type SslMethodPlugin,
  type Tensor,
  z,
} from "@voxssl/core";
import meta from "./deno.json" with { type: "json" };
import { genesisPair, NNSSL_GENESIS } from "./transforms/pipeline.ts";
import { minMaxRescale, type RangeMode } from "./transforms/range.ts";

export * from "./transforms/flip.ts";
export * from "./transforms/intensity.ts";
export * from "./transforms/local_shuffle.ts";
export * from "./transforms/painting.ts";
export * from "./transforms/pipeline.ts";
export * from "./transforms/range.ts";

/** Models Genesis' configuration. */
export interface ModelsGenesisConfig {
  /** The transforms' input range: nnssl's z-scored patch ("nnssl", default) or per-patch min–max to [0, 1]. */
  range: RangeMode;
  /** Probability of each further flip, at most 3 (default 0.4). */
  flipRate: number;
  /** Probability of the local pixel shuffle (default 0.5). */
  localShuffleRate: number;
  /** Windows of the local pixel shuffle (default 10 000). */
  shuffleWindows: number;
  /** Probability of the non-linear intensity transform (default 0.9). */
  nonlinearRate: number;
  /** Probability of painting (default 0.9). */
  paintRate: number;
  /** Probability that painting is in-painting rather than out-painting (default 0.2). */
  inpaintRate: number;
  /** Leave voxels inside the deface mask out of the loss (nnssl's `_ANON` trainers; default false). */
  excludeDefaced: boolean;
}

const probability = (p: number) => z.number().min(0).max(1).default(p);

/** The zod schema of {@link ModelsGenesisConfig}, with its defaults. */
const ModelsGenesisConfig: z.ZodType<ModelsGenesisConfig> = z.object({
  /** "nnssl": the transforms see the z-scored patch, as nnssl; "minmax": each patch rescaled to [0, 1]. */
  range: z.enum(["nnssl", "minmax"]).default("nnssl"),
  /** nnssl's (the original Models Genesis') probabilities and window count. */
  flipRate: probability(NNSSL_GENESIS.flipRate),
  localShuffleRate: probability(NNSSL_GENESIS.localShuffleRate),
  shuffleWindows: z.number().int().min(0).default(NNSSL_GENESIS.shuffleWindows),
  nonlinearRate: probability(NNSSL_GENESIS.nonlinearRate),
  paintRate: probability(NNSSL_GENESIS.paintRate),
  inpaintRate: probability(NNSSL_GENESIS.inpaintRate),
  /** Leave voxels inside the deface mask out of the loss (needs a "deface" mask in the data). */
  excludeDefaced: z.boolean().default(false),
});

/**
 * The Models Genesis loss: the mean squared error of the reconstruction against the clean target over the
 * whole volume (nnssl's `torch.nn.MSELoss()`), or, with `keep` (1 = counted, one value per voxel), the mean
 * over the kept voxels (nnssl's `LossMaskMSELoss` for `_ANON`).
 */
export function genesisLoss(prediction: Tensor, target: Tensor, keep?: Tensor): Tensor {
  return mseLoss(prediction, target, keep ? { mask: keep } : {});
}

/** The Models Genesis method plugin (`--method models-genesis`). */
const plugin: SslMethodPlugin<ModelsGenesisConfig> = definePlugin({
  kind: "ssl-method",
  name: "models-genesis",
  version: meta.version,
  coreApi: "^0.2.0",
  description:
    "Models Genesis as nnssl: flip, local shuffle, Bézier intensity, in/out-painting on the CPU; whole-volume MSE to the clean patch",
  supports: ["cnn", "vit"],
  network: { outChannels: 1 },
  config: ModelsGenesisConfig,
  defaults: {
    cnn: {
      optimizer: { name: "sgd", lr: 1e-2, momentum: 0.99, nesterov: true, weightDecay: 3e-5 },
      schedule: { name: "poly", exponent: 0.9 },
      clipGradNorm: 12,
      patchSize: [160, 160, 160],
      batchSize: 2,
      augmentation: "none",
    },
    vit: {
      optimizer: { name: "adamw", lr: 3e-4, betas: [0.9, 0.98], eps: 1e-8, weightDecay: 5e-2 },
      schedule: { name: "warmup-poly", warmup: 50, exponent: 0.9 },
      clipGradNorm: 1,
      patchSize: [160, 160, 160],
      batchSize: 2,
      augmentation: "none",
    },
  },
  masks: (config) => (config.excludeDefaced ? ["deface"] : []),
  sample(context) {
    const { config } = context;
    const patch = context.patch();
    const shape = patch.shape;
    if (config.range === "minmax") minMaxRescale(patch.image);
    const deface = patch.masks.deface;
    // validation batches are transformed too (nnssl's validation transforms are the training ones)
    const pair = genesisPair(patch.image, shape, context.rng, config, deface ? [deface] : []);
    const out: SampleOutput = {
      image: sampleArray(pair.input, [1, ...shape]),
      target: sampleArray(pair.target, [1, ...shape]),
    };
    if (deface) out.deface = sampleArray(deface, [1, ...shape]);
    return out;
  },
  build({ network, config }) {
    return {
      modules: {},
      loss(batch, { rng }) {
        const prediction = network.forward(batch.get("image"), { rng });
        const keep = config.excludeDefaced
          ? add(mul(cast(batch.get("deface"), "f32"), -1), 1) // 1 − deface
          : undefined;
        return {
          loss: genesisLoss(prediction, batch.get("target"), keep),
          reconstruction: () => ({
            input: batch.get("target"),
            corrupted: batch.get("image"),
            prediction,
            target: batch.get("target"),
          }),
        };
      },
    };
  },
});

export default plugin;
