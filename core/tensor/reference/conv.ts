/**
 * CPU reference (float64, written for clarity) of the 3D convolutions, with PyTorch semantics:
 * Conv3d (NCDHW input, weight [Cout, Cin, kD, kH, kW], zero padding, groups = 1, no dilation) and
 * ConvTranspose3d (weight [Cin, Cout, kD, kH, kW], output_padding). Also the adjoints the tests use for
 * large shapes, where finite differences would be too slow: the gradients of conv3d with respect to its
 * input and weight (each checked against finite differences of {@link conv3dRef} in the tests).
 */
import type { RefTensor } from "./ops.ts";

/** A size per spatial axis, or one size for all three. */
export type Size3 = number | readonly [number, number, number];

/** Hyperparameters of the reference convolutions. */
export interface ConvRefOptions {
  /** Step of the kernel over D, H and W (default 1). */
  stride?: Size3;
  /** Zero padding on each side of D, H and W (default 0). */
  padding?: Size3;
  /** ConvTranspose3d only: extra output rows at the high end of each axis. */
  outputPadding?: Size3;
}

function triple(v: Size3 | undefined, fallback: number): [number, number, number] {
  if (v === undefined) return [fallback, fallback, fallback];
  return typeof v === "number" ? [v, v, v] : [v[0], v[1], v[2]];
}

/** y[n, co, o] = bias[co] + Σ_{ci, k} x[n, ci, o·stride − padding + k] · w[co, ci, k]. */
export function conv3dRef(
  x: RefTensor,
  w: RefTensor,
  bias?: RefTensor,
  options: ConvRefOptions = {},
): RefTensor {
  const [N, C, D, H, W] = x.shape;
  const [Co, Ci, kD, kH, kW] = w.shape;
  if (Ci !== C) throw new RangeError(`conv3dRef: input has ${C} channels, weight expects ${Ci}`);
  const [sD, sH, sW] = triple(options.stride, 1);
  const [pD, pH, pW] = triple(options.padding, 0);
  const Do = Math.floor((D + 2 * pD - kD) / sD) + 1;
  const Ho = Math.floor((H + 2 * pH - kH) / sH) + 1;
  const Wo = Math.floor((W + 2 * pW - kW) / sW) + 1;
  const out = new Float64Array(N * Co * Do * Ho * Wo);
  let o = 0;
  for (let n = 0; n < N; n++) {
    for (let co = 0; co < Co; co++) {
      for (let od = 0; od < Do; od++) {
        for (let oh = 0; oh < Ho; oh++) {
          for (let ow = 0; ow < Wo; ow++) {
            let s = bias ? bias.data[co] : 0;
            for (let ci = 0; ci < C; ci++) {
              for (let kd = 0; kd < kD; kd++) {
                const id = od * sD - pD + kd;
                if (id < 0 || id >= D) continue;
                for (let kh = 0; kh < kH; kh++) {
                  const ih = oh * sH - pH + kh;
                  if (ih < 0 || ih >= H) continue;
                  for (let kw = 0; kw < kW; kw++) {
                    const iw = ow * sW - pW + kw;
                    if (iw < 0 || iw >= W) continue;
                    s += x.data[(((n * C + ci) * D + id) * H + ih) * W + iw] *
                      w.data[(((co * C + ci) * kD + kd) * kH + kh) * kW + kw];
                  }
                }
              }
            }
            out[o++] = s;
          }
        }
      }
    }
  }
  return { shape: [N, Co, Do, Ho, Wo], data: out };
}

/**
 * ConvTranspose3d: every input voxel scatters its weighted kernel into the output,
 * y[n, co, i·stride − padding + k] += x[n, ci, i] · w[ci, co, k], output size
 * (in − 1)·stride − 2·padding + kernel + outputPadding.
 */
export function convTranspose3dRef(
  x: RefTensor,
  w: RefTensor,
  bias?: RefTensor,
  options: ConvRefOptions = {},
): RefTensor {
  const [N, C, D, H, W] = x.shape;
  const [Ci, Co, kD, kH, kW] = w.shape;
  if (Ci !== C) throw new RangeError(`convTranspose3dRef: input has ${C} channels, weight expects ${Ci}`);
  const [sD, sH, sW] = triple(options.stride, 1);
  const [pD, pH, pW] = triple(options.padding, 0);
  const [oD, oH, oW] = triple(options.outputPadding, 0);
  const Do = (D - 1) * sD - 2 * pD + kD + oD;
  const Ho = (H - 1) * sH - 2 * pH + kH + oH;
  const Wo = (W - 1) * sW - 2 * pW + kW + oW;
  const out = new Float64Array(N * Co * Do * Ho * Wo);
  for (let n = 0; n < N; n++) {
    for (let co = 0; co < Co; co++) {
      const b = bias ? bias.data[co] : 0;
      for (let i = 0; i < Do * Ho * Wo; i++) out[(n * Co + co) * Do * Ho * Wo + i] = b;
    }
    for (let ci = 0; ci < C; ci++) {
      for (let id = 0; id < D; id++) {
        for (let ih = 0; ih < H; ih++) {
          for (let iw = 0; iw < W; iw++) {
            const v = x.data[(((n * C + ci) * D + id) * H + ih) * W + iw];
            for (let co = 0; co < Co; co++) {
              for (let kd = 0; kd < kD; kd++) {
                const od = id * sD - pD + kd;
                if (od < 0 || od >= Do) continue;
                for (let kh = 0; kh < kH; kh++) {
                  const oh = ih * sH - pH + kh;
                  if (oh < 0 || oh >= Ho) continue;
                  for (let kw = 0; kw < kW; kw++) {
                    const ow = iw * sW - pW + kw;
                    if (ow < 0 || ow >= Wo) continue;
                    out[(((n * Co + co) * Do + od) * Ho + oh) * Wo + ow] += v *
                      w.data[(((ci * Co + co) * kD + kd) * kH + kh) * kW + kw];
                  }
                }
              }
            }
          }
        }
      }
    }
  }
  return { shape: [N, Co, Do, Ho, Wo], data: out };
}

/**
 * Gradient of Σ conv3d(x, w)·g with respect to x, for an input of spatial size `inSize`: the transposed
 * convolution of g, with the output padding that restores inputs whose last rows produced no output.
 */
export function conv3dInputGradRef(
  g: RefTensor,
  w: RefTensor,
  inSize: readonly [number, number, number],
  options: ConvRefOptions = {},
): RefTensor {
  const s = triple(options.stride, 1);
  const p = triple(options.padding, 0);
  const k = w.shape.slice(2);
  const outputPadding = [0, 1, 2].map((a) => inSize[a] - ((g.shape[2 + a] - 1) * s[a] - 2 * p[a] + k[a])) as [
    number,
    number,
    number,
  ];
  return convTranspose3dRef(g, w, undefined, { stride: s, padding: p, outputPadding });
}

/** Gradient of Σ conv3d(x, w)·g with respect to w: dw[co, ci, k] = Σ_{n, o} g[n, co, o] · x[n, ci, o·s − p + k]. */
export function conv3dWeightGradRef(
  x: RefTensor,
  g: RefTensor,
  kernel: readonly [number, number, number],
  options: ConvRefOptions = {},
): RefTensor {
  const [N, C, D, H, W] = x.shape;
  const [, Co, Do, Ho, Wo] = g.shape;
  const [kD, kH, kW] = kernel;
  const [sD, sH, sW] = triple(options.stride, 1);
  const [pD, pH, pW] = triple(options.padding, 0);
  const out = new Float64Array(Co * C * kD * kH * kW);
  for (let n = 0; n < N; n++) {
    for (let co = 0; co < Co; co++) {
      for (let od = 0; od < Do; od++) {
        for (let oh = 0; oh < Ho; oh++) {
          for (let ow = 0; ow < Wo; ow++) {
            const gv = g.data[(((n * Co + co) * Do + od) * Ho + oh) * Wo + ow];
            for (let ci = 0; ci < C; ci++) {
              for (let kd = 0; kd < kD; kd++) {
                const id = od * sD - pD + kd;
                if (id < 0 || id >= D) continue;
                for (let kh = 0; kh < kH; kh++) {
                  const ih = oh * sH - pH + kh;
                  if (ih < 0 || ih >= H) continue;
                  for (let kw = 0; kw < kW; kw++) {
                    const iw = ow * sW - pW + kw;
                    if (iw < 0 || iw >= W) continue;
                    out[(((co * C + ci) * kD + kd) * kH + kh) * kW + kw] += gv *
                      x.data[(((n * C + ci) * D + id) * H + ih) * W + iw];
                  }
                }
              }
            }
          }
        }
      }
    }
  }
  return { shape: [Co, C, kD, kH, kW], data: out };
}

/** Sum of g over batch and space per channel (the bias gradient of both convolutions). */
export function channelSumRef(g: RefTensor): RefTensor {
  const [N, C] = g.shape;
  const s = g.data.length / Math.max(1, N * C);
  const out = new Float64Array(C);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      for (let i = 0; i < s; i++) out[c] += g.data[(n * C + c) * s + i];
    }
  }
  return { shape: [C], data: out };
}
