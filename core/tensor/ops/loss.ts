/**
 * Losses for the SSL methods, each one fused op with its own backward (kernels/loss.ts): masked MSE and
 * L1 (MAE, SimMIM, SparK, Models Genesis), voxel-wise cross-entropy fused with log-softmax and soft Dice
 * (VolumeFusion, fine-tuning), cosine similarity (VoCo), and the pieces of NT-Xent (SimCLR): L2
 * normalization and log-sum-exp along a dim (the similarity matrix is `matmul(z, z, { transposeB })`).
 *
 * Masks are weights: the masked mean is Σ m·e / Σ m. A mask is shaped like the prediction, or per
 * voxel ([N, ...spatial] or [N, 1, ...spatial]) and then applies to every channel (Σ m counts each
 * channel). An all-zero mask gives a loss of 0 with zero gradients (not NaN). Masks and labels get no
 * gradient.
 */
import {
  type ClassShape,
  type DiceTarget,
  type DimShape,
  type LossType,
  type MaskArg,
  perColumn,
  runCosineSimilarity,
  runCosineSimilarityGrad,
  runCrossEntropy,
  runCrossEntropyGrad,
  runL2Normalize,
  runL2NormalizeGrad,
  runLogSumExp,
  runLogSumExpGrad,
  runMaskedError,
  runMaskedErrorGrad,
  runSoftDice,
  runSoftDiceGrad,
  SAME,
} from "../../../kernels/mod.ts";
import { record } from "../autograd.ts";
import { isFloat } from "../dtype.ts";
import { normalizeAxis, numel, reducedShape, sameShape, type Shape } from "../shape.ts";
import type { Tensor } from "../tensor.ts";
import { autocastF32 } from "./autocast_op.ts";
import { emptyOn } from "./create.ts";
import { checkDevice, checkFloatTensor, checkSameDtype, poolScratch, unpackedDtype } from "./internal.ts";
import { opFamily } from "../../gpu/op_family.ts";

/** A mask over `pred` [N, C, ...spatial]: same shape, or one value per voxel for every channel. */
function maskArg(op: string, pred: Tensor, mask: Tensor | undefined): MaskArg | undefined {
  if (!mask) return undefined;
  checkDevice(op, pred, [mask]);
  const type = unpackedDtype(op, mask);
  if (sameShape(mask.shape, pred.shape)) return { range: mask.binding, type, map: SAME };
  if (pred.rank >= 2) {
    const [n, c] = pred.shape;
    const spatial = pred.shape.slice(2);
    if (sameShape(mask.shape, [n, 1, ...spatial]) || sameShape(mask.shape, [n, ...spatial])) {
      return { range: mask.binding, type, map: perColumn(c, numel(spatial)) };
    }
  }
  throw new RangeError(
    `${op}(): mask [${mask.shape}] must have the prediction's shape [${pred.shape}] or one value per voxel`,
  );
}

/** Options of the masked regression losses. */
export interface MaskedLossOptions {
  /** Weights (0/1 for a voxel mask), see the module doc for the shapes accepted. */
  mask?: Tensor;
  /** "mean" over the (masked) elements (default) or "sum". */
  reduction?: "mean" | "sum";
}

function maskedError(
  op: string,
  kind: "mse" | "l1",
  input: Tensor,
  inputTarget: Tensor,
  o: MaskedLossOptions,
): Tensor {
  const [pred, target] = autocastF32([input, inputTarget]); // autocast: losses in f32
  checkFloatTensor(op, "pred", pred);
  checkDevice(op, pred, [target]);
  checkSameDtype(op, "target", pred, target);
  if (!sameShape(pred.shape, target.shape)) {
    throw new RangeError(`${op}(): pred [${pred.shape}] and target [${target.shape}] differ in shape`);
  }
  const mask = maskArg(op, pred, o.mask);
  const type = pred.dtype as LossType;
  const mean = (o.reduction ?? "mean") === "mean";
  const out = emptyOn(pred, []);
  const den = emptyOn(pred, [1], "f32");
  runMaskedError(
    pred.gpu,
    type,
    kind,
    pred.size,
    pred.binding,
    target.binding,
    mask,
    mean,
    out.binding,
    den.binding,
    poolScratch(pred.gpu),
  );
  const saved = [pred, target, den, ...(o.mask ? [o.mask] : [])];
  const result = record(op, [pred, target], out, saved, (g) => {
    const dp = pred.requiresGrad ? emptyOn(pred, pred.shape) : undefined;
    const dt = target.requiresGrad ? emptyOn(target, target.shape) : undefined;
    runMaskedErrorGrad(
      pred.gpu,
      type,
      kind,
      pred.size,
      pred.binding,
      target.binding,
      mask,
      g.binding,
      den.binding,
      dp?.binding,
      dt?.binding,
    );
    return [dp, dt];
  });
  den.dispose();
  return result;
}

/**
 * Mean squared error Σ m·(pred − target)² / Σ m (no mask: the plain mean), a scalar tensor.
 * @example
 * const loss = mseLoss(reconstruction, image, { mask: masked }); // MAE: masked voxels only
 */
export function mseLoss(pred: Tensor, target: Tensor, options: MaskedLossOptions = {}): Tensor {
  using _family = opFamily("loss");
  return maskedError("mseLoss", "mse", pred, target, options);
}

/** Mean absolute error Σ m·|pred − target| / Σ m (gradient sign(pred − target), 0 at ties). */
export function l1Loss(pred: Tensor, target: Tensor, options: MaskedLossOptions = {}): Tensor {
  using _family = opFamily("loss");
  return maskedError("l1Loss", "l1", pred, target, options);
}

function checkLabels(op: string, labels: Tensor, shape: Shape): "i32" | "u32" {
  if (labels.dtype !== "i32" && labels.dtype !== "u32") {
    throw new TypeError(`${op}(): labels must be i32 or u32, got ${labels}`);
  }
  if (!sameShape(labels.shape, shape)) {
    throw new RangeError(`${op}(): labels have shape [${labels.shape}], expected [${shape}]`);
  }
  return labels.dtype;
}

function classShape(op: string, x: Tensor): ClassShape {
  if (x.rank < 2) throw new RangeError(`${op}(): input must be [N, C, ...spatial], got [${x.shape}]`);
  return { n: x.shape[0], c: x.shape[1], s: numel(x.shape.slice(2)) };
}

/** Options of {@link crossEntropy}. */
export interface CrossEntropyOptions {
  /** Voxels with this label count for nothing (default −100, as PyTorch). */
  ignoreIndex?: number;
  /** Per-voxel weights [N, ...spatial] (or [N, 1, ...spatial]). */
  mask?: Tensor;
}

/**
 * Cross-entropy of logits [N, C, ...spatial] (or [N, C]) against integer labels [N, ...spatial], fused
 * with the log-softmax over C: mean over the counted voxels of lse(x) − x[label], where a voxel counts
 * with weight mask·(label ≠ ignoreIndex) (PyTorch's `reduction="mean"`). No counted voxel: loss 0.
 * A label outside [0, C) that is not ignoreIndex makes the loss NaN (the GPU cannot throw).
 */
export function crossEntropy(input: Tensor, labels: Tensor, options: CrossEntropyOptions = {}): Tensor {
  using _family = opFamily("loss");
  const op = "crossEntropy";
  const [logits] = autocastF32([input]);
  checkFloatTensor(op, "logits", logits);
  checkDevice(op, logits, [labels, options.mask]);
  const s = classShape(op, logits);
  const labelType = checkLabels(op, labels, [logits.shape[0], ...logits.shape.slice(2)]);
  let mask: MaskArg | undefined;
  if (options.mask) {
    const m = options.mask;
    const voxels = [s.n, ...logits.shape.slice(2)];
    if (!sameShape(m.shape, voxels) && !sameShape(m.shape, [s.n, 1, ...logits.shape.slice(2)])) {
      throw new RangeError(`${op}(): mask [${m.shape}] must be per voxel, [${voxels}]`);
    }
    mask = { range: m.binding, type: unpackedDtype(op, m), map: SAME };
  }
  const ignore = options.ignoreIndex ?? -100;
  const type = logits.dtype as LossType;
  const gpu = logits.gpu;
  const voxel = emptyOn(logits, [s.n * s.s, 2], "f32");
  const out = emptyOn(logits, []);
  const den = emptyOn(logits, [1], "f32");
  runCrossEntropy(
    gpu,
    type,
    s,
    logits.binding,
    labels.binding,
    labelType,
    mask,
    ignore,
    voxel.binding,
    out.binding,
    den.binding,
    poolScratch(gpu),
  );
  const saved = [logits, labels, voxel, den, ...(options.mask ? [options.mask] : [])];
  const result = record(op, [logits], out, saved, (g) => {
    const dx = emptyOn(logits, logits.shape);
    runCrossEntropyGrad(
      gpu,
      type,
      s,
      logits.binding,
      labels.binding,
      labelType,
      mask,
      ignore,
      voxel.binding,
      g.binding,
      den.binding,
      dx.binding,
    );
    return [dx];
  });
  voxel.dispose();
  den.dispose();
  return result;
}

/** Options of {@link softDiceLoss}. */
export interface SoftDiceOptions {
  /** Added to numerator and denominator; default 1e-5 (nnU-Net v2's training setting). */
  smooth?: number;
  /** One Dice per class over the whole batch instead of one per sample and class (default false). */
  batchDice?: boolean;
  /** Include class 0 (default false, nnU-Net's do_bg = False). */
  includeBackground?: boolean;
  /** Per-voxel weights [N, ...spatial] / [N, 1, ...spatial] or shaped like probs. */
  mask?: Tensor;
}

/**
 * Soft Dice loss of probabilities [N, C, ...spatial] (apply softmax over C first) against integer
 * labels [N, ...spatial] (one-hot implied) or a dense target shaped like probs. As nnU-Net's
 * SoftDiceLoss: for each sample and class (each class with `batchDice`), I = Σ p·y·m,
 * U = Σ (p + y)·m (= 2tp + fp + fn), dc = (2I + smooth) / max(U + smooth, 1e-8), and the loss is
 * −mean(dc) over classes (class 0 excluded unless `includeBackground`) and samples — negative, in
 * [−1, 0], like nnU-Net's (add 1 for the usual 1 − Dice). The target gets no gradient.
 */
export function softDiceLoss(input: Tensor, inputTarget: Tensor, options: SoftDiceOptions = {}): Tensor {
  using _family = opFamily("loss");
  const op = "softDiceLoss";
  const [probs, target] = autocastF32([input, inputTarget]);
  checkFloatTensor(op, "probs", probs);
  checkDevice(op, probs, [target, options.mask]);
  const s = classShape(op, probs);
  let t: DiceTarget;
  if (isFloat(target.dtype)) {
    if (!sameShape(target.shape, probs.shape)) {
      throw new RangeError(
        `${op}(): a dense target must have the shape of probs [${probs.shape}], got [${target.shape}]`,
      );
    }
    t = { range: target.binding, type: target.dtype as "f32" | "f16", labels: false };
  } else {
    const labelType = checkLabels(op, target, [s.n, ...probs.shape.slice(2)]);
    t = { range: target.binding, type: labelType, labels: true };
  }
  const mask = maskArg(op, probs, options.mask);
  const smooth = options.smooth ?? 1e-5;
  const type = probs.dtype as LossType;
  const gpu = probs.gpu;
  const sums = emptyOn(probs, [s.n * s.c, 2], "f32");
  const coef = emptyOn(probs, [s.n * s.c, 2], "f32");
  const out = emptyOn(probs, []);
  runSoftDice(
    gpu,
    type,
    s,
    probs.binding,
    t,
    mask,
    {
      smooth,
      batchDice: options.batchDice ?? false,
      includeBackground: options.includeBackground ?? false,
    },
    sums.binding,
    out.binding,
    coef.binding,
    poolScratch(gpu),
  );
  sums.dispose();
  const saved = [target, coef, ...(options.mask ? [options.mask] : [])];
  const result = record(op, [probs], out, saved, (g) => {
    const dx = emptyOn(probs, probs.shape);
    runSoftDiceGrad(gpu, type, s, t, mask, coef.binding, g.binding, dx.binding);
    return [dx];
  });
  coef.dispose();
  return result;
}

function dimShape(x: Tensor, dim: number): { s: DimShape; axis: number } {
  const axis = normalizeAxis(dim, x.rank);
  return {
    axis,
    s: {
      outer: numel(x.shape.slice(0, axis)),
      r: x.rank === 0 ? 1 : x.shape[axis],
      inner: numel(x.shape.slice(axis + 1)),
    },
  };
}

/**
 * Cosine similarity of `a` and `b` along `dim`: a·b / (max(‖a‖, eps)·max(‖b‖, eps)), the dim removed
 * (PyTorch's `F.cosine_similarity`; identical to it whenever the norms exceed eps).
 */
export function cosineSimilarity(inputA: Tensor, inputB: Tensor, dim = -1, eps = 1e-8): Tensor {
  using _family = opFamily("loss");
  const op = "cosineSimilarity";
  const [a, b] = autocastF32([inputA, inputB]);
  checkFloatTensor(op, "a", a);
  checkDevice(op, a, [b]);
  checkSameDtype(op, "b", a, b);
  if (!sameShape(a.shape, b.shape)) {
    throw new RangeError(`${op}(): shapes [${a.shape}] and [${b.shape}] differ`);
  }
  const { s, axis } = dimShape(a, dim);
  const type = a.dtype as LossType;
  const stats = emptyOn(a, [s.outer * s.inner, 4], "f32");
  const out = emptyOn(a, reducedShape(a.shape, [axis], false));
  runCosineSimilarity(
    a.gpu,
    type,
    s,
    a.binding,
    b.binding,
    eps,
    stats.binding,
    out.binding,
    poolScratch(a.gpu),
  );
  const result = record(op, [a, b], out, [a, b, stats], (g) => {
    const da = a.requiresGrad ? emptyOn(a, a.shape) : undefined;
    const db = b.requiresGrad ? emptyOn(b, b.shape) : undefined;
    runCosineSimilarityGrad(
      a.gpu,
      type,
      s,
      a.binding,
      b.binding,
      eps,
      stats.binding,
      g.binding,
      da?.binding,
      db?.binding,
    );
    return [da, db];
  });
  stats.dispose();
  return result;
}

/** x / max(‖x‖₂, eps) along `dim` (PyTorch's `F.normalize`), e.g. the projections of NT-Xent. */
export function l2Normalize(input: Tensor, dim = -1, eps = 1e-12): Tensor {
  using _family = opFamily("loss");
  const op = "l2Normalize";
  const [x] = autocastF32([input]);
  checkFloatTensor(op, "the input", x);
  const { s } = dimShape(x, dim);
  const type = x.dtype as LossType;
  const scratch = poolScratch(x.gpu);
  const norms = emptyOn(x, [s.outer * s.inner], "f32");
  const y = emptyOn(x, x.shape);
  runL2Normalize(x.gpu, type, s, x.binding, eps, norms.binding, y.binding, scratch);
  const result = record(op, [x], y, [y, norms], (g) => {
    const dots = emptyOn(x, [s.outer * s.inner], "f32");
    const dx = emptyOn(x, x.shape);
    runL2NormalizeGrad(
      x.gpu,
      type,
      s,
      y.binding,
      norms.binding,
      g.binding,
      eps,
      dots.binding,
      dx.binding,
      scratch,
    );
    return [dx];
  });
  norms.dispose();
  return result;
}

/** log Σ exp(x) along `dim`, computed with a running maximum (never overflows). */
export function logSumExp(input: Tensor, dim = -1, keepDims = false): Tensor {
  using _family = opFamily("loss");
  const op = "logSumExp";
  const [x] = autocastF32([input]);
  checkFloatTensor(op, "the input", x);
  const { s, axis } = dimShape(x, dim);
  if (s.r === 0) throw new RangeError(`${op}(): dim ${dim} of [${x.shape}] is empty`);
  const type = x.dtype as LossType;
  const out = emptyOn(x, reducedShape(x.shape, [axis], keepDims));
  runLogSumExp(x.gpu, type, s, x.binding, out.binding, poolScratch(x.gpu));
  return record(op, [x], out, [x, out], (g) => {
    const dx = emptyOn(x, x.shape);
    runLogSumExpGrad(x.gpu, type, s, x.binding, out.binding, g.binding, dx.binding);
    return [dx];
  });
}
