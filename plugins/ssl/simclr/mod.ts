/**
 * SimCLR as nnssl pretrains it (`simCLRTrainer.py`, `simCLREvaTrainer.py`; ../../../docs facts in
 * README.md): from each volume a random region (192×192×64), in it `pairsPerImage` reference crops of the
 * run's patch (64³) at random offsets, each with a partner crop whose offset differs by at most half the
 * crop per axis (so the two overlap by at least 50% on every axis), every crop augmented on its own
 * (noise, blur, brightness, contrast, low resolution, gamma, inverted gamma, mirroring, quarter turns).
 * All crops go through the encoder alone; each stage's output is averaged over space and the averages
 * concatenated (1120 values for ResEnc-L, 864 for Primus-M), then a 3-layer projector with per-sample
 * normalisation (2048-2048-2048) gives the embedding. The loss is NT-Xent with cosine similarity at
 * temperature 0.5 over the 2N = B·2·pairs crops of the batch: each crop's positive is its partner, every
 * other crop (other crops of the same volume included) is a negative.
 *
 * Data side (`sample`): the crops, as one f32 array `views` [2·pairs, 1, D, H, W] ordered reference,
 * partner, reference, partner, …, and their starts in the volume (`starts`, i32 [2·pairs, 3]).
 */
import {
  type AugmentationInput,
  concat,
  definePlugin,
  globalAvgPool,
  l2Normalize,
  layerNorm,
  Linear,
  logSumExp,
  matmul,
  mean,
  Module,
  mul,
  mulScalar,
  relu,
  reshape,
  type Rng,
  sampleArray,
  slice,
  type SslMethodPlugin,
  sub,
  sum,
  type Tensor,
  tensor,
  type Vec3,
  z,
} from "@voxssl/core";
import meta from "./deno.json" with { type: "json" };

const size3 = z.tuple([
  z.number().int().positive(),
  z.number().int().positive(),
  z.number().int().positive(),
]);

/** SimCLR's configuration. */
export interface SimclrConfig {
  /** Region the crops of one volume come from (default nnssl's 192×192×64). */
  region: Vec3;
  /** Reference crops per volume, each with its overlapping partner (default 2). */
  pairsPerImage: number;
  /** Largest partner shift per axis (default: half the crop, i.e. at least 50% overlap). */
  maxShift?: Vec3;
  /** NT-Xent temperature (default 0.5). */
  temperature: number;
  /** Width of the projector's hidden layers (default 2048). */
  hiddenDim: number;
  /** Width of the embedding (default 2048). */
  embeddingDim: number;
  /** Per-crop augmentation: nnssl's contrastive list, or none (default "contrastive"). */
  augmentation: "contrastive" | "none";
}

/** The zod schema of {@link SimclrConfig}, with its defaults. */
const SimclrConfig: z.ZodType<SimclrConfig> = z.object({
  /** Region the crops of one volume come from (nnssl: 192×192×64, the last axis not shifted). */
  region: size3.default([192, 192, 64]),
  /** Reference crops per volume, each with its overlapping partner (nnssl: 2). */
  pairsPerImage: z.number().int().positive().default(2),
  /** Largest partner shift per axis (default: half the crop, i.e. at least 50% overlap on every axis). */
  maxShift: size3.optional(),
  /** NT-Xent temperature. */
  temperature: z.number().positive().default(0.5),
  /** Projector widths: hidden layers and the embedding (nnssl: 2048 and 2048). */
  hiddenDim: z.number().int().positive().default(2048),
  embeddingDim: z.number().int().positive().default(2048),
  /** Per-crop augmentation: nnssl's contrastive list ("contrastive") or none. */
  augmentation: z.enum(["contrastive", "none"]).default("contrastive"),
});

/**
 * The per-crop augmentation of nnssl's contrastive methods (SimCLR, VoCo): Gaussian noise p 0.1, blur p
 * 0.2, brightness p 0.15, contrast p 0.15, low resolution p 0.1, inverted gamma p 0.1, gamma p 0.3,
 * mirroring p 0.5 per axis, and 1–3 quarter turns in the first two axes (nnssl's X–Y plane) p 0.3.
 */
export const CONTRASTIVE_AUGMENTATION: AugmentationInput = {
  preset: "nnunet",
  rotation: { p: 0 },
  scale: { p: 0 },
  lowres: { p: 0.1 },
  rot90: { p: 0.3, axes: [0, 1], turns: [1, 3] },
};

/** Where one reference crop and its partner start, relative to the region. */
export interface CropPair {
  /** The reference crop's offset. */
  reference: Vec3;
  /** Its partner's offset (within `maxShift` of the reference on every axis). */
  partner: Vec3;
}

/** The range [lo, hi] of a crop's offset in a region per axis (a crop larger than the region is centred). */
export function offsetRange(region: readonly number[], crop: readonly number[]): { lo: Vec3; hi: Vec3 } {
  const lo = [0, 1, 2].map((a) => Math.min(0, -Math.ceil((crop[a] - region[a]) / 2))) as Vec3;
  const hi = [0, 1, 2].map((a) => Math.max(lo[a], region[a] - crop[a])) as Vec3;
  return { lo, hi };
}

/**
 * Draws `pairs` reference offsets uniformly in the region and, for each, a partner offset shifted by at
 * most `maxShift` per axis (uniform in [−s, s], then clipped to the region), as nnssl's SimCLR transform.
 */
export function drawCropPairs(
  region: readonly number[],
  crop: readonly number[],
  pairs: number,
  maxShift: readonly number[],
  rng: Rng,
): CropPair[] {
  const { lo, hi } = offsetRange(region, crop);
  return Array.from({ length: pairs }, () => {
    const reference = [0, 1, 2].map((a) => rng.intRange(lo[a], hi[a])) as Vec3;
    const partner = reference.map((r, a) =>
      Math.min(hi[a], Math.max(lo[a], r + rng.intRange(-maxShift[a], maxShift[a])))
    ) as Vec3;
    return { reference, partner };
  });
}

/**
 * NT-Xent (normalised temperature-scaled cross entropy) of embeddings `z` [M, d], M even, whose rows 2k
 * and 2k+1 are positives: rows are L2-normalised, s_ij = z_i·z_j / τ, and the loss is the mean over rows
 * of −log(exp(s_i,p(i)) / Σ_{j≠i} exp(s_ij)). Also returns the mean cosine of the positive pairs.
 */
export function ntXent(embeddings: Tensor, temperature: number): { loss: Tensor; positiveCosine: Tensor } {
  const [m, d] = embeddings.shape;
  if (embeddings.rank !== 2 || m % 2 !== 0 || m < 2) {
    throw new RangeError(
      `ntXent(): embeddings must be [M, d] with M even (pairs of rows), got [${embeddings.shape}]`,
    );
  }
  const n = l2Normalize(embeddings, 1);
  const similarity = mulScalar(matmul(n, n, { transposeB: true }), 1 / temperature); // [M, M]
  const diagonal = new Float32Array(m * m);
  for (let i = 0; i < m; i++) diagonal[i * m + i] = -1e9; // a row is never its own negative
  const logits = sub(similarity, mulScalar(tensor(diagonal, [m, m], { gpu: embeddings.gpu }), -1));
  const pairs = reshape(n, [m / 2, 2, d]);
  const swapped = reshape(
    concat([slice(pairs, [0, 1, 0], [m / 2, 2, d]), slice(pairs, [0, 0, 0], [m / 2, 1, d])], 1),
    [m, d],
  );
  const cosine = sum(mul(n, swapped), 1); // [M]
  const loss = mean(sub(logSumExp(logits, 1), mulScalar(cosine, 1 / temperature)));
  return { loss, positiveCosine: mean(cosine) };
}

/** The float64 reference of {@link ntXent}'s loss, for tests: `z` holds M rows of d values. */
export function ntXentRef(z: ArrayLike<number>, m: number, d: number, temperature: number): number {
  const rows = Array.from({ length: m }, (_, i) => {
    const row = Array.from({ length: d }, (_, k) => z[i * d + k]);
    const norm = Math.max(Math.hypot(...row), 1e-12);
    return row.map((v) => v / norm);
  });
  const dot = (a: number[], b: number[]) => a.reduce((s, v, k) => s + v * b[k], 0);
  let total = 0;
  for (let i = 0; i < m; i++) {
    const logits = rows.map((r, j) => (j === i ? -Infinity : dot(rows[i], r) / temperature));
    const top = Math.max(...logits);
    const lse = top + Math.log(logits.reduce((s, v) => s + Math.exp(v - top), 0));
    total += lse - logits[i ^ 1];
  }
  return total / m;
}

/** Linear → per-sample norm → ReLU, twice, then Linear (nnssl's VoCo/SimCLR projector). */
export class Projector extends Module {
  /** Builds the projector from `inFeatures` to `embeddingDim`. */
  constructor(
    inFeatures: number,
    hiddenDim: number,
    embeddingDim: number,
    rng: ConstructorParameters<typeof Linear>[2],
  ) {
    super();
    this.registerModule("fc1", new Linear(inFeatures, hiddenDim, rng, { init: "torch-default" }));
    this.registerModule("fc2", new Linear(hiddenDim, hiddenDim, rng, { init: "torch-default" }));
    this.registerModule("fc3", new Linear(hiddenDim, embeddingDim, rng, { init: "torch-default" }));
  }
  /** [N, in] → [N, embeddingDim]; the norm (nnssl's InstanceNorm1d on [N, C]) normalises each sample over its features. */
  forward(x: Tensor): Tensor {
    const h1 = relu(layerNorm(this.child<Linear>("fc1").forward(x)));
    const h2 = relu(layerNorm(this.child<Linear>("fc2").forward(h1)));
    return this.child<Linear>("fc3").forward(h2);
  }
}

/** Global average of each encoder feature, concatenated: [N, Σ channels]. */
export function pooledFeatures(features: Tensor[]): Tensor {
  const pooled = features.map((f) => globalAvgPool(f));
  return pooled.length === 1 ? pooled[0] : concat(pooled, 1);
}

/** The SimCLR plugin. */
const plugin: SslMethodPlugin<SimclrConfig> = definePlugin({
  kind: "ssl-method",
  name: "simclr",
  version: meta.version,
  coreApi: "^0.2.0",
  description:
    "SimCLR as nnssl: overlapping 64³ crop pairs from a 192×192×64 region, GAP of every stage, 2048-d projector, NT-Xent τ 0.5",
  supports: ["cnn", "vit"],
  network: { encoderOnly: true },
  gpuViewAugmentation: true,
  config: SimclrConfig,
  defaults: {
    cnn: {
      optimizer: { name: "sgd", lr: 1e-2, momentum: 0.99, nesterov: true, weightDecay: 3e-5 },
      schedule: { name: "poly", exponent: 0.9 },
      clipGradNorm: 0.1,
      patchSize: [64, 64, 64],
      batchSize: 2,
    },
    vit: {
      optimizer: { name: "adamw", lr: 3e-4, betas: [0.9, 0.98], eps: 1e-8, weightDecay: 5e-2 },
      schedule: { name: "warmup-poly", warmup: 50, exponent: 0.9 },
      clipGradNorm: 1,
      patchSize: [64, 64, 64],
      batchSize: 2,
    },
  },
  sample(context) {
    const { config } = context;
    const crop = context.patchSize;
    const shift = config.maxShift ?? (crop.map((c) => Math.floor(c / 2)) as Vec3);
    const regionStart = context.volume.randomStart(config.region, context.rng.fork("region"));
    const pairs = drawCropPairs(config.region, crop, config.pairsPerImage, shift, context.rng.fork("pairs"));
    const voxels = crop[0] * crop[1] * crop[2];
    const views = new Float32Array(2 * pairs.length * voxels);
    const starts = new Int32Array(2 * pairs.length * 3);
    pairs.forEach((pair, k) => {
      [pair.reference, pair.partner].forEach((offset, v) => {
        const i = 2 * k + v;
        const start = offset.map((o, a) => regionStart[a] + o) as Vec3;
        const view = context.volume.crop(start, crop);
        if (config.augmentation === "contrastive") {
          context.augment(view, CONTRASTIVE_AUGMENTATION, context.rng.fork("augment", i), {
            array: "views",
            index: i,
          });
        }
        views.set(view.image, i * voxels);
        starts.set(start, i * 3);
      });
    });
    return {
      views: sampleArray(views, [2 * pairs.length, 1, ...crop]),
      starts: sampleArray(starts, [2 * pairs.length, 3]),
    };
  },
  build({ network, config, rng }) {
    const projector = new Projector(
      network.featureChannels.reduce((a, b) => a + b, 0),
      config.hiddenDim,
      config.embeddingDim,
      rng,
    );
    return {
      modules: { projector },
      loss(batch, { rng }) {
        const views = batch.get("views"); // [B, 2·pairs, 1, D, H, W]
        const [b, v, c, ...crop] = views.shape;
        const x = reshape(views, [b * v, c, ...crop]);
        const embeddings = projector.forward(pooledFeatures(network.encode(x, { rng })));
        const { loss, positiveCosine } = ntXent(embeddings, config.temperature);
        return { loss, metrics: { positiveCosine } };
      },
    };
  },
});

export default plugin;
