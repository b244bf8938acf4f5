/**
 * Normalization ops: instance, group and layer norm (last dims, and channels-first over C at each voxel,
 * as Primus's LayerNorm3d), the fused ResEnc hot path norm + affine (+ residual) + LeakyReLU, and the
 * masked (sparse) instance norm of SparK, whose statistics cover the visible voxels only.
 *
 * Statistics are numerically stable (Welford per invocation, Chan merges of partial moments; never
 * E[x²] − E[x]² of raw sums) with the biased variance, as PyTorch. Each op saves x, its (mean, rstd) per
 * statistic and, when an activation is fused, its output y. Instance and group norms (fused and masked)
 * take 2 launches forward (partial moments; apply, which merges them) and 3 backward (partial sums;
 * affine gradients; dx, which merges its coefficients): see kernels/norm.ts. The unfused compositions (`instanceNorm` → `add` → `leakyRelu`)
 * are the oracle of the fused ops in the tests.
 */
import {
  type AffineIndex,
  mergePartials,
  type NormGeometry,
  type NormMask,
  type NormTypes,
  perColumn,
  runChannelPartialSums,
  runChannelSums,
  runNormApply,
  runNormApplyMerged,
  runNormGradPartials,
  runNormGradSums,
  runNormInputGrad,
  runNormInputGradMerged,
  runNormPartials,
  runNormStats,
  statCount,
  statSize,
  statWidth,
} from "../../../kernels/mod.ts";
import { noGrad, record } from "../autograd.ts";
import { numel } from "../shape.ts";
import type { Tensor } from "../tensor.ts";
import { autocastCommon } from "./autocast_op.ts";
import { emptyOn } from "./create.ts";
import { cast } from "./elementwise.ts";
import { checkDevice, checkFloatTensor, checkSameDtype, checkShapeIs, poolScratch } from "./internal.ts";
import { opFamily } from "../../gpu/op_family.ts";

type FloatType = "f32" | "f16";

/** How the backward pass reduces: per-channel segments (group norms), last dims, or channels-first. */
type GradPlan =
  | { kind: "segments"; n: number; c: number; s: number; groups: number }
  | { kind: "lastDims"; rows: number; d: number }
  | { kind: "channelsFirst"; n: number; c: number; s: number };

interface NormCall {
  op: string;
  x: Tensor;
  weight?: Tensor;
  bias?: Tensor;
  residual?: Tensor;
  slope?: number;
  eps: number;
  geo: NormGeometry;
  affine: AffineIndex;
  plan: GradPlan;
  /** Masked norm: an f32 mask tensor and how element g of x reads it. */
  mask?: { tensor: Tensor; map: NormMask["map"] };
}

function floatType(t: Tensor): FloatType {
  return t.dtype as FloatType;
}

function checkEps(op: string, eps: number): void {
  if (!(eps >= 0) || !Number.isFinite(eps)) throw new RangeError(`${op}(): eps must be >= 0, got ${eps}`);
}

function checkParams(op: string, x: Tensor, shape: readonly number[], weight?: Tensor, bias?: Tensor): void {
  checkFloatTensor(op, "the input", x);
  checkDevice(op, x, [weight, bias]);
  if (weight) {
    checkFloatTensor(op, "weight", weight);
    checkShapeIs(op, "weight", weight, shape);
  }
  if (bias) {
    checkFloatTensor(op, "bias", bias);
    checkShapeIs(op, "bias", bias, shape);
  }
}

/** Forward + backward shared by every normalization op. */
function normalize(call: NormCall): Tensor {
  const { x, weight, bias, residual, slope, geo, affine, plan } = call;
  const mask: NormMask | undefined = call.mask && { range: call.mask.tensor.binding, map: call.mask.map };
  const types: NormTypes = {
    x: floatType(x),
    weight: weight && floatType(weight),
    bias: bias && floatType(bias),
  };
  const gpu = x.gpu;
  const y = emptyOn(x, x.shape);
  if (x.size === 0) return y;
  const stats = emptyOn(x, [statCount(geo), statWidth(mask !== undefined)], "f32");
  const scratch = poolScratch(gpu);
  const applyArgs = {
    x: x.binding,
    stats: stats.binding,
    weight: weight?.binding,
    bias: bias?.binding,
    residual: residual?.binding,
    mask,
    y: y.binding,
  };
  if (geo.kind === "rows") {
    // 2 passes: partial moments, then the apply pass merges them (and writes the statistics)
    const partials = runNormPartials(gpu, types.x, geo, x.binding, scratch, mask);
    runNormApplyMerged(gpu, types, geo, affine, { ...applyArgs, partials }, call.eps, slope);
    scratch.release(partials.part);
  } else {
    runNormStats(gpu, types.x, geo, x.binding, stats.binding, call.eps, scratch, mask);
    runNormApply(gpu, types, geo, affine, applyArgs, slope);
  }
  const inputs = [x, weight, bias, residual].filter((t): t is Tensor => t !== undefined);
  const saved = [
    x,
    stats,
    ...(weight ? [weight] : []),
    ...(slope !== undefined ? [y] : []),
    ...(call.mask ? [call.mask.tensor] : []),
  ];
  const out = record(call.op, inputs, y, saved, (g) => {
    const dx = emptyOn(x, x.shape);
    const dres = residual ? emptyOn(x, x.shape) : undefined;
    const gradArgs = {
      x: x.binding,
      stats: stats.binding,
      gy: g.binding,
      y: slope !== undefined ? y.binding : undefined,
      weight: weight?.binding,
      mask,
    };
    const wantW = weight?.requiresGrad ?? false;
    const wantB = bias?.requiresGrad ?? false;
    const dW = wantW ? emptyOn(weight!, weight!.shape) : undefined;
    const dB = wantB ? emptyOn(bias!, bias!.shape) : undefined;
    const m = statSize(geo);
    if (plan.kind === "segments" && geo.kind === "rows") {
      // 3 passes: partial sums (gz, gz·x̂) per (n, c) (writing gz, the residual's gradient, which dx then
      // reads instead of gy and y), the affine gradients from them, and dx, which merges its statistic's
      // coefficients from them itself
      const segments = { kind: "rows", rows: plan.n * plan.c, len: plan.s } as const;
      const sumArgs = dres ? { ...gradArgs, gzOut: dres.binding } : gradArgs;
      let partials = runNormGradPartials(gpu, types, geo, segments, affine, sumArgs, scratch, slope);
      if ((dW || dB) && partials.part.size > gpu.limits.maxStorageBufferBindingSize) {
        // the affine pass binds the sums whole: merge them to one per (n, c) first (tiny bindings only)
        partials = mergePartials(gpu, scratch, partials, plan.n * plan.c, "sum", "norm_grad_sums", 1);
      }
      runChannelPartialSums(gpu, types, plan.n, plan.c, partials, dW?.binding, dB?.binding);
      runNormInputGradMerged(
        gpu,
        types,
        geo,
        affine,
        { cpg: plan.c / plan.groups, channels: plan.c },
        { ...(dres ? { ...gradArgs, gy: dres.binding, y: undefined } : gradArgs), partials, dx: dx.binding },
        mask ? 1 : 1 / m,
        dres ? undefined : slope,
      );
      scratch.release(partials.part);
    } else {
      if (mask || plan.kind === "segments") {
        throw new Error(`${call.op}(): a group or masked norm needs per-channel segments of rows`);
      }
      const coef = emptyOn(x, [statCount(geo), 2], "f32");
      runNormGradSums(gpu, types, geo, geo, affine, gradArgs, true, coef.binding, 1 / m, scratch, slope);
      if (dW || dB) {
        const [units, perUnit, segments]: [number, number, NormGeometry] = plan.kind === "lastDims"
          ? [1, plan.d, { kind: "columns", outer: 1, r: plan.rows, inner: plan.d }]
          : [plan.n, plan.c, { kind: "rows", rows: plan.n * plan.c, len: plan.s }];
        const ab = emptyOn(x, [units * perUnit, 2], "f32");
        runNormGradSums(gpu, types, geo, segments, affine, gradArgs, false, ab.binding, 1, scratch, slope);
        runChannelSums(gpu, types, units, perUnit, ab.binding, dW?.binding, dB?.binding);
        ab.dispose();
      }
      runNormInputGrad(gpu, types, geo, affine, { ...gradArgs, coef: coef.binding, dx: dx.binding }, slope);
      coef.dispose();
    }
    // one gradient per input, in the order of `inputs` (a tensor passed twice gets both)
    const all: [Tensor | undefined, Tensor | undefined][] = [[x, dx], [weight, dW], [bias, dB], [
      residual,
      dres,
    ]];
    return all.filter(([t]) => t !== undefined).map(([, grad]) => grad);
  });
  stats.dispose(); // the graph holds its own reference
  return out;
}

/** Options of the fused norm + activation ops. */
export interface NormActOptions {
  /** Negative slope of the LeakyReLU (≥ 0; 0 gives ReLU). Default 0.01, as ResEnc. */
  slope?: number;
  /** Added after the affine transform, before the activation (ResEnc BasicBlock: act(norm(conv) + skip)). */
  residual?: Tensor;
  /** Default 1e-5. */
  eps?: number;
}

function groupNormCall(
  op: string,
  input: Tensor,
  groups: number,
  weight: Tensor | undefined,
  bias: Tensor | undefined,
  eps: number,
  act?: NormActOptions,
): Tensor {
  // autocast: an f16 x keeps its dtype (f32 weight, bias and statistics); a residual of the other float
  // dtype is reconciled with x (core/tensor/autocast.ts, rule 3)
  const [x, residual] = autocastCommon([input, act?.residual]);
  if (x.rank < 2) throw new RangeError(`${op}(): input must be [N, C, ...spatial], got [${x.shape}]`);
  const [n, c] = x.shape;
  checkParams(op, x, [c], weight, bias);
  checkEps(op, eps);
  if (!Number.isInteger(groups) || groups < 1 || c % groups !== 0) {
    throw new RangeError(`${op}(): ${c} channels cannot be split into ${groups} groups`);
  }
  if (residual) {
    checkDevice(op, x, [residual]);
    checkSameDtype(op, "residual", x, residual);
    checkShapeIs(op, "residual", residual, x.shape);
  }
  let slope: number | undefined;
  if (act) {
    slope = act.slope ?? 0.01;
    if (!(slope >= 0) || !Number.isFinite(slope)) {
      throw new RangeError(
        `${op}(): slope must be >= 0 (the backward reads the activation from y), got ${slope}`,
      );
    }
  }
  const s = numel(x.shape.slice(2));
  return normalize({
    op,
    x,
    weight,
    bias,
    residual,
    slope,
    eps,
    geo: { kind: "rows", rows: n * groups, len: (c / groups) * s },
    affine: { adiv: Math.max(s, 1), amod: Math.max(c, 1) },
    plan: { kind: "segments", n, c, s, groups },
  });
}

/**
 * Group normalization of `x` [N, C, ...spatial]: each sample's channels are split into `groups` groups,
 * each normalized over its channels and voxels (biased variance), then `weight`/`bias` [C] per channel.
 * @param eps added to the variance; default 1e-5 (PyTorch's GroupNorm)
 */
export function groupNorm(x: Tensor, groups: number, weight?: Tensor, bias?: Tensor, eps = 1e-5): Tensor {
  using _family = opFamily("norm");
  return groupNormCall("groupNorm", x, groups, weight, bias, eps);
}

/**
 * Instance normalization of `x` [N, C, ...spatial] (NCDHW and any other spatial rank): every (n, c) is
 * normalized over its voxels with the biased variance, like PyTorch's InstanceNorm3d (training mode, no
 * running statistics), then `weight`/`bias` [C] per channel.
 * @param eps added to the variance; default 1e-5
 */
export function instanceNorm(x: Tensor, weight?: Tensor, bias?: Tensor, eps = 1e-5): Tensor {
  using _family = opFamily("norm");
  const c = x.rank >= 2 ? x.shape[1] : 1;
  return groupNormCall("instanceNorm", x, c, weight, bias, eps);
}

/**
 * The ResEnc hot path in one op: `leakyRelu(instanceNorm(x)·weight + bias (+ residual), slope)`,
 * one pointwise pass forward after the statistics and one backward. Equal to the unfused composition.
 * @example
 * const y = instanceNormAct(conv, w, b, { slope: 0.01, residual: skip });
 */
export function instanceNormAct(
  x: Tensor,
  weight: Tensor | undefined,
  bias: Tensor | undefined,
  options: NormActOptions = {},
): Tensor {
  using _family = opFamily("norm");
  const c = x.rank >= 2 ? x.shape[1] : 1;
  return groupNormCall("instanceNormAct", x, c, weight, bias, options.eps ?? 1e-5, options);
}

/** {@link groupNorm} fused with the residual add and LeakyReLU, as {@link instanceNormAct}. */
export function groupNormAct(
  x: Tensor,
  groups: number,
  weight: Tensor | undefined,
  bias: Tensor | undefined,
  options: NormActOptions = {},
): Tensor {
  using _family = opFamily("norm");
  return groupNormCall("groupNormAct", x, groups, weight, bias, options.eps ?? 1e-5, options);
}

/** Options of {@link maskedInstanceNorm}. */
export interface MaskedNormOptions {
  /** Added to the variance; default 1e-5. */
  eps?: number;
  /** LeakyReLU slope (≥ 0) applied last; undefined: no activation. */
  slope?: number;
  /** Added after the affine transform, before the activation (shaped like x). */
  residual?: Tensor;
}

/**
 * Instance normalization over the visible voxels only (SparK's sparse norm): `mask` [N, 1, ...spatial]
 * (f32, f16 or an integer mask such as u8; non-zero = visible, broadcast over the channels) selects,
 * for every (n, c), the voxels whose mean and biased variance are taken. At visible voxels
 * y = act((x − μ)/√(σ² + eps)·weight + bias + residual); at masked voxels y is exactly 0 (masked values
 * of x and of the residual are never read into y). Gradients reach x, weight, bias and residual at the
 * visible voxels only (0 at masked voxels); the mask gets none. A sample with no visible voxel gives
 * y = 0 and zero gradients (no NaN).
 * @example
 * const y = maskedInstanceNorm(conv, visible, w, b, { slope: 0.01, residual: skip });
 */
export function maskedInstanceNorm(
  input: Tensor,
  mask: Tensor,
  weight?: Tensor,
  bias?: Tensor,
  options: MaskedNormOptions = {},
): Tensor {
  using _family = opFamily("norm");
  const op = "maskedInstanceNorm";
  const [x, residual] = autocastCommon([input, options.residual]);
  if (x.rank < 2) throw new RangeError(`${op}(): input must be [N, C, ...spatial], got [${x.shape}]`);
  const [n, c] = x.shape;
  checkParams(op, x, [c], weight, bias);
  const eps = options.eps ?? 1e-5;
  checkEps(op, eps);
  checkDevice(op, x, [mask]);
  checkShapeIs(op, "mask", mask, [n, 1, ...x.shape.slice(2)]);
  const { slope } = options;
  if (residual) {
    checkDevice(op, x, [residual]);
    checkSameDtype(op, "residual", x, residual);
    checkShapeIs(op, "residual", residual, x.shape);
  }
  if (slope !== undefined && (!(slope >= 0) || !Number.isFinite(slope))) {
    throw new RangeError(
      `${op}(): slope must be >= 0 (the backward reads the activation from y), got ${slope}`,
    );
  }
  const m = mask.dtype === "f32" ? mask : noGrad(() => cast(mask, "f32"));
  const s = numel(x.shape.slice(2));
  try {
    return normalize({
      op,
      x,
      weight,
      bias,
      residual,
      slope,
      eps,
      geo: { kind: "rows", rows: n * c, len: s },
      affine: { adiv: Math.max(s, 1), amod: Math.max(c, 1) },
      plan: { kind: "segments", n, c, s, groups: c },
      mask: { tensor: m, map: perColumn(c, s) },
    });
  } finally {
    if (m !== mask) m.dispose(); // the graph holds its own reference
  }
}

/**
 * Layer normalization over the trailing dims `normalizedShape` (a size or a list; default the last dim),
 * like PyTorch's LayerNorm: biased variance, `weight`/`bias` shaped `normalizedShape`.
 * @param eps default 1e-5
 */
export function layerNorm(
  x: Tensor,
  normalizedShape?: number | readonly number[],
  weight?: Tensor,
  bias?: Tensor,
  eps = 1e-5,
): Tensor {
  using _family = opFamily("norm");
  const op = "layerNorm";
  const shape = normalizedShape === undefined
    ? x.shape.slice(-1)
    : typeof normalizedShape === "number"
    ? [normalizedShape]
    : [...normalizedShape];
  const tail = x.shape.slice(x.rank - shape.length);
  if (shape.length === 0 || shape.length > x.rank || tail.some((d, i) => d !== shape[i])) {
    throw new RangeError(`${op}(): normalizedShape [${shape}] is not the trailing shape of [${x.shape}]`);
  }
  checkParams(op, x, shape, weight, bias);
  checkEps(op, eps);
  const d = numel(shape);
  const rows = d === 0 ? 0 : x.size / d;
  return normalize({
    op,
    x,
    weight,
    bias,
    eps,
    geo: { kind: "rows", rows, len: d },
    affine: { adiv: 1, amod: Math.max(d, 1) },
    plan: { kind: "lastDims", rows, d },
  });
}

/**
 * Channels-first layer normalization of `x` [N, C, ...spatial]: at every voxel, normalize over the C
 * channels (biased variance), then `weight`/`bias` [C] — the LayerNorm2d/3d of ConvNeXt and of Primus's
 * decoder (whose eps default is 1e-6).
 * @param eps default 1e-6
 */
export function layerNormChannelsFirst(x: Tensor, weight?: Tensor, bias?: Tensor, eps = 1e-6): Tensor {
  using _family = opFamily("norm");
  const op = "layerNormChannelsFirst";
  if (x.rank < 2) throw new RangeError(`${op}(): input must be [N, C, ...spatial], got [${x.shape}]`);
  const [n, c] = x.shape;
  checkParams(op, x, [c], weight, bias);
  checkEps(op, eps);
  const s = numel(x.shape.slice(2));
  return normalize({
    op,
    x,
    weight,
    bias,
    eps,
    geo: { kind: "columns", outer: n, r: c, inner: s },
    affine: { adiv: Math.max(s, 1), amod: Math.max(c, 1) },
    plan: { kind: "channelsFirst", n, c, s },
  });
}
