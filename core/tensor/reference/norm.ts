/**
 * Float64 CPU reference of the normalization ops (core/tensor/ops/norm.ts): two-pass mean and biased
 * variance over each normalized set, written for clarity.
 */
import { numel } from "../shape.ts";
import type { RefTensor } from "./ops.ts";

/** Normalizes the index sets `sets` of `x` (in place into a copy), with affine index `affineOf(i)`. */
function normalizeSets(
  x: RefTensor,
  sets: number[][],
  eps: number,
  weight: RefTensor | undefined,
  bias: RefTensor | undefined,
  affineOf: (i: number) => number,
): RefTensor {
  const out = new Float64Array(x.data.length);
  for (const set of sets) {
    let mean = 0;
    for (const i of set) mean += x.data[i];
    mean /= set.length;
    let variance = 0;
    for (const i of set) variance += (x.data[i] - mean) ** 2;
    variance /= set.length; // biased, as PyTorch's normalization layers
    const rstd = 1 / Math.sqrt(variance + eps);
    for (const i of set) {
      const a = affineOf(i);
      out[i] = (x.data[i] - mean) * rstd * (weight ? weight.data[a] : 1) + (bias ? bias.data[a] : 0);
    }
  }
  return { shape: [...x.shape], data: out };
}

/** Reference group norm of [N, C, ...spatial]. */
export function groupNormRef(
  x: RefTensor,
  groups: number,
  weight?: RefTensor,
  bias?: RefTensor,
  eps = 1e-5,
): RefTensor {
  const [n, c] = x.shape;
  const s = numel(x.shape.slice(2));
  const cpg = c / groups;
  const sets: number[][] = [];
  for (let i = 0; i < n; i++) {
    for (let g = 0; g < groups; g++) {
      const set: number[] = [];
      for (let ch = g * cpg; ch < (g + 1) * cpg; ch++) {
        for (let v = 0; v < s; v++) set.push((i * c + ch) * s + v);
      }
      sets.push(set);
    }
  }
  return normalizeSets(x, sets, eps, weight, bias, (i) => Math.floor(i / s) % c);
}

/** Reference instance norm of [N, C, ...spatial]. */
export function instanceNormRef(x: RefTensor, weight?: RefTensor, bias?: RefTensor, eps = 1e-5): RefTensor {
  return groupNormRef(x, x.shape[1], weight, bias, eps);
}

/** Reference layer norm over the trailing `d` elements. */
export function layerNormRef(
  x: RefTensor,
  d: number,
  weight?: RefTensor,
  bias?: RefTensor,
  eps = 1e-5,
): RefTensor {
  const sets: number[][] = [];
  for (let r = 0; r < x.data.length / d; r++) sets.push(Array.from({ length: d }, (_, k) => r * d + k));
  return normalizeSets(x, sets, eps, weight, bias, (i) => i % d);
}

/** Reference channels-first layer norm of [N, C, ...spatial] (over C at each voxel). */
export function layerNormChannelsFirstRef(
  x: RefTensor,
  weight?: RefTensor,
  bias?: RefTensor,
  eps = 1e-6,
): RefTensor {
  const [n, c] = x.shape;
  const s = numel(x.shape.slice(2));
  const sets: number[][] = [];
  for (let i = 0; i < n; i++) {
    for (let v = 0; v < s; v++) sets.push(Array.from({ length: c }, (_, ch) => (i * c + ch) * s + v));
  }
  return normalizeSets(x, sets, eps, weight, bias, (i) => Math.floor(i / s) % c);
}

/** Reference LeakyReLU. */
export function leakyReluRef(x: RefTensor, slope = 0.01): RefTensor {
  return { shape: [...x.shape], data: x.data.map((v) => (v > 0 ? v : v * slope)) };
}

/** Reference of the fused ResEnc path: leakyRelu(groupNorm(x)·w + b + residual). */
export function groupNormActRef(
  x: RefTensor,
  groups: number,
  weight: RefTensor | undefined,
  bias: RefTensor | undefined,
  options: { slope?: number; residual?: RefTensor; eps?: number } = {},
): RefTensor {
  const y = groupNormRef(x, groups, weight, bias, options.eps ?? 1e-5);
  if (options.residual) y.data = y.data.map((v, i) => v + options.residual!.data[i]);
  return leakyReluRef(y, options.slope ?? 0.01);
}

/**
 * Reference masked instance norm of x [N, C, ...spatial] with mask [N, 1, ...spatial] (non-zero =
 * visible): mean and biased variance over each (n, c)'s visible voxels, y = act(x̂·w + b + residual) at
 * visible voxels, exactly 0 at masked ones (and everywhere in a sample without visible voxels).
 */
export function maskedInstanceNormRef(
  x: RefTensor,
  mask: RefTensor,
  weight?: RefTensor,
  bias?: RefTensor,
  options: { eps?: number; slope?: number; residual?: RefTensor } = {},
): RefTensor {
  const [n, c] = x.shape;
  const s = numel(x.shape.slice(2));
  const sets: number[][] = [];
  for (let i = 0; i < n; i++) {
    for (let ch = 0; ch < c; ch++) {
      const set: number[] = [];
      for (let v = 0; v < s; v++) if (mask.data[i * s + v] !== 0) set.push((i * c + ch) * s + v);
      if (set.length > 0) sets.push(set);
    }
  }
  const y = normalizeSets(x, sets, options.eps ?? 1e-5, weight, bias, (i) => Math.floor(i / s) % c);
  const visible = (i: number) => mask.data[Math.floor(i / (c * s)) * s + (i % s)] !== 0;
  const slope = options.slope;
  y.data = y.data.map((v, i) => {
    if (!visible(i)) return 0;
    const z = v + (options.residual ? options.residual.data[i] : 0);
    return slope === undefined || z > 0 ? z : z * slope;
  });
  return y;
}
