/**
 * VoCo (volume contrast) as nnssl pretrains it (`vocoTrainer.py`, `vocoEvaTrainer.py`,
 * `voco_transform.py`, `voco_loss.py`; facts in README.md): a region of 4×4×1 crops of the run's patch
 * (256×256×64 of 64³ crops) is cut from each volume; its 16 crops are the base crops, and 4 target crops
 * are cut at random offsets in the same region. The overlap of a target with each base crop (intersection
 * volume / crop volume; the 16 labels of a target sum to 1) is computed before augmentation; every crop is
 * then augmented on its own. The encoder embeds every crop (GAP of every stage, the 2048-d projector with
 * per-sample norm), and the loss asks ReLU(cos(target, base)) — base embeddings detached — to predict the
 * overlaps (L_pos on the overlapping bases, L_neg on the others), plus a regulariser that pushes the base
 * crops of a volume apart (L_reg, not detached).
 *
 * Data side (`sample`): `crops` f32 [G + T, 1, D, H, W] (the G base crops in grid order, then the T
 * targets) and `overlap` f32 [T, G].
 */
import {
  abs,
  add,
  addScalar,
  cast,
  clamp,
  clone,
  definePlugin,
  div,
  eq,
  l2Normalize,
  log,
  matmul,
  mul,
  mulScalar,
  noGrad,
  relu,
  reshape,
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
import { CONTRASTIVE_AUGMENTATION, pooledFeatures, Projector } from "@voxssl/simclr";
import meta from "./deno.json" with { type: "json" };

/** VoCo's configuration. */
export interface VocoConfig {
  /** Base crops per axis of the region (default nnssl's 4×4×1). */
  grid: Vec3;
  /** Target crops per volume (default 4). */
  targets: number;
  /** Width of the projector's hidden layers (default 2048). */
  hiddenDim: number;
  /** Width of the embedding (default 2048). */
  embeddingDim: number;
  /** Weight of L_pos + L_neg (default 1). */
  contrastWeight: number;
  /** Weight of the regulariser L_reg (default 1). */
  regularizerWeight: number;
  /** Per-crop augmentation: nnssl's contrastive list, or none (default "contrastive"). */
  augmentation: "contrastive" | "none";
}

const size3 = z.tuple([
  z.number().int().positive(),
  z.number().int().positive(),
  z.number().int().positive(),
]);

/** The zod schema of {@link VocoConfig}, with its defaults. */
const VocoConfig: z.ZodType<VocoConfig> = z.object({
  grid: size3.default([4, 4, 1]),
  targets: z.number().int().positive().default(4),
  hiddenDim: z.number().int().positive().default(2048),
  embeddingDim: z.number().int().positive().default(2048),
  contrastWeight: z.number().min(0).default(1),
  regularizerWeight: z.number().min(0).default(1),
  augmentation: z.enum(["contrastive", "none"]).default("contrastive"),
}).refine((c) => c.grid[0] * c.grid[1] * c.grid[2] >= 2, { message: "grid needs at least 2 base crops" });

/** Offsets of the base crops of a region (grid order: the last axis fastest), relative to the region. */
export function baseOffsets(grid: readonly number[], crop: readonly number[]): Vec3[] {
  const out: Vec3[] = [];
  for (let i = 0; i < grid[0]; i++) {
    for (let j = 0; j < grid[1]; j++) {
      for (let k = 0; k < grid[2]; k++) out.push([i * crop[0], j * crop[1], k * crop[2]]);
    }
  }
  return out;
}

/**
 * Overlap labels: for each target offset and each base offset, the intersection volume of the two crops
 * divided by the crop volume ([T, G], row-major).
 */
export function overlapLabels(
  targets: readonly Vec3[],
  bases: readonly Vec3[],
  crop: readonly number[],
): Float32Array {
  const labels = new Float32Array(targets.length * bases.length);
  const volume = crop[0] * crop[1] * crop[2];
  targets.forEach((t, i) =>
    bases.forEach((b, j) => {
      let inter = 1;
      for (let a = 0; a < 3; a++) inter *= Math.max(0, Math.min(t[a], b[a]) + crop[a] - Math.max(t[a], b[a]));
      labels[i * bases.length + j] = inter / volume;
    })
  );
  return labels;
}

/** The three terms of VoCo's loss and their weighted sum. */
export interface VocoLoss {
  /** L_pos + L_neg weighted, plus L_reg weighted. */
  loss: Tensor;
  /** Σ o·(−log(1 − |o − s| + 1e−6)) / Σ o over overlapping (target, base) pairs. */
  positive: Tensor;
  /** Σ s² / #pairs over non-overlapping pairs (0 when there is none). */
  negative: Tensor;
  /** Mean over volumes of the mean ReLU(cos) between distinct base crops. */
  regularizer: Tensor;
}

/**
 * VoCo's loss from the base embeddings [B, G, d] and target embeddings [B, T, d] of B volumes and their
 * overlap labels [B, T, G]: s = ReLU(cos(target, base)) with the base embeddings detached in L_pos and
 * L_neg (not in L_reg).
 */
export function vocoLoss(
  bases: Tensor,
  targets: Tensor,
  overlap: Tensor,
  weights: { contrast: number; regularizer: number } = { contrast: 1, regularizer: 1 },
): VocoLoss {
  const [b, g] = bases.shape;
  const nb = l2Normalize(bases, 2);
  const nt = l2Normalize(targets, 2);
  const detached = noGrad(() => clone(nb));
  const s = relu(matmul(nt, detached, { transposeB: true })); // [B, T, G]
  // (1 − |o − s|) first, then + 1e-6, as nnssl (PyTorch) evaluates it: 1 − x is exact in f32 for x in
  // [0.5, 1], so a pair with o = 1 and s = 0 keeps log(1e-6) accurate (1 + 1e-6 rounded first would not)
  const margin = addScalar(addScalar(mulScalar(abs(sub(overlap, s)), -1), 1), 1e-6);
  const positive = div(sum(mul(overlap, mulScalar(log(margin), -1))), sum(overlap));
  const isNegative = cast(eq(overlap, tensor(new Float32Array(1), [1], { gpu: overlap.gpu })), "f32");
  // a batch whose targets overlap every base crop has no negative pair: L_neg is then 0, not 0/0
  const negative = div(sum(mul(isNegative, mul(s, s))), clamp(sum(isNegative), 1, Number.MAX_VALUE));
  const upper = new Float32Array(g * g);
  for (let i = 0; i < g; i++) for (let j = i + 1; j < g; j++) upper[i * g + j] = 1;
  const pairs = tensor(upper, [1, g, g], { gpu: bases.gpu });
  const baseCos = relu(matmul(nb, nb, { transposeB: true })); // [B, G, G]
  const regularizer = mulScalar(sum(mul(baseCos, pairs)), 1 / (b * (g * (g - 1)) / 2));
  const loss = add(
    mulScalar(add(positive, negative), weights.contrast),
    mulScalar(regularizer, weights.regularizer),
  );
  return { loss, positive, negative, regularizer };
}

/** The float64 reference of {@link vocoLoss}'s terms (values only), for tests. */
export function vocoLossRef(
  bases: ArrayLike<number>,
  targets: ArrayLike<number>,
  overlap: ArrayLike<number>,
  [b, g, t, d]: [number, number, number, number],
): { positive: number; negative: number; regularizer: number } {
  const row = (x: ArrayLike<number>, i: number) => {
    const v = Array.from({ length: d }, (_, k) => x[i * d + k]);
    const n = Math.max(Math.hypot(...v), 1e-12);
    return v.map((e) => e / n);
  };
  const dot = (u: number[], v: number[]) => u.reduce((s, e, k) => s + e * v[k], 0);
  let pos = 0, posWeight = 0, neg = 0, negCount = 0, reg = 0;
  for (let s = 0; s < b; s++) {
    const B = Array.from({ length: g }, (_, j) => row(bases, s * g + j));
    for (let i = 0; i < t; i++) {
      const T = row(targets, s * t + i);
      for (let j = 0; j < g; j++) {
        const o = overlap[(s * t + i) * g + j];
        const sim = Math.max(0, dot(T, B[j]));
        pos += o * -Math.log(1 - Math.abs(o - sim) + 1e-6);
        posWeight += o;
        if (o === 0) {
          neg += sim * sim;
          negCount++;
        }
      }
    }
    let r = 0;
    for (let i = 0; i < g; i++) for (let j = i + 1; j < g; j++) r += Math.max(0, dot(B[i], B[j]));
    reg += r / ((g * (g - 1)) / 2);
  }
  return { positive: pos / posWeight, negative: negCount ? neg / negCount : 0, regularizer: reg / b };
}

/** The VoCo plugin. */
const plugin: SslMethodPlugin<VocoConfig> = definePlugin({
  kind: "ssl-method",
  name: "voco",
  version: meta.version,
  coreApi: "^0.2.0",
  description:
    "VoCo as nnssl: overlap of 4 random 64³ crops with a 4×4×1 grid of base crops, predicted by ReLU(cos), plus base separation",
  supports: ["cnn", "vit"],
  network: { encoderOnly: true },
  gpuViewAugmentation: true,
  config: VocoConfig,
  defaults: {
    cnn: {
      optimizer: { name: "sgd", lr: 1e-2, momentum: 0.99, nesterov: true, weightDecay: 3e-5 },
      schedule: { name: "poly", exponent: 0.9 },
      clipGradNorm: 0,
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
    const region = crop.map((c, a) => c * config.grid[a]) as Vec3;
    const regionStart = context.volume.randomStart(region, context.rng.fork("region"));
    const bases = baseOffsets(config.grid, crop);
    const rng = context.rng.fork("targets");
    const targets = Array.from(
      { length: config.targets },
      () => [0, 1, 2].map((a) => rng.intRange(0, region[a] - crop[a])) as Vec3,
    );
    const overlap = overlapLabels(targets, bases, crop); // before any augmentation
    const voxels = crop[0] * crop[1] * crop[2];
    const all = [...bases, ...targets];
    const crops = new Float32Array(all.length * voxels);
    all.forEach((offset, i) => {
      const view = context.volume.crop(offset.map((o, a) => regionStart[a] + o), crop);
      if (config.augmentation === "contrastive") {
        context.augment(view, CONTRASTIVE_AUGMENTATION, context.rng.fork("augment", i), {
          array: "crops",
          index: i,
        });
      }
      crops.set(view.image, i * voxels);
    });
    return {
      crops: sampleArray(crops, [all.length, 1, ...crop]),
      overlap: sampleArray(overlap, [targets.length, bases.length]),
    };
  },
  build({ network, config, rng }) {
    const projector = new Projector(
      network.featureChannels.reduce((a, b) => a + b, 0),
      config.hiddenDim,
      config.embeddingDim,
      rng,
    );
    const g = config.grid[0] * config.grid[1] * config.grid[2];
    return {
      modules: { projector },
      loss(batch, { rng }) {
        const crops = batch.get("crops"); // [B, G + T, 1, D, H, W]
        const overlap = batch.get("overlap"); // [B, T, G]
        const [b, n, c, ...crop] = crops.shape;
        const embeddings = projector.forward(
          pooledFeatures(network.encode(reshape(crops, [b * n, c, ...crop]), { rng })),
        );
        const e = reshape(embeddings, [b, n, config.embeddingDim]);
        const bases = slice(e, [0, 0, 0], [b, g, config.embeddingDim]);
        const targets = slice(e, [0, g, 0], [b, n, config.embeddingDim]);
        const terms = vocoLoss(bases, targets, overlap, {
          contrast: config.contrastWeight,
          regularizer: config.regularizerWeight,
        });
        return {
          loss: terms.loss,
          metrics: { positive: terms.positive, negative: terms.negative, regularizer: terms.regularizer },
        };
      },
    };
  },
});

export default plugin;
