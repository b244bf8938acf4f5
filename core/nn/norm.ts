/**
 * Normalisation layers with PyTorch's parameter names (`weight`, `bias`): InstanceNorm3d (affine, eps
 * 1e-5, no running statistics, as nnU-Net uses it), LayerNorm over the last dimension, and the
 * channels-first LayerNorm of conv features.
 */
import {
  instanceNorm,
  instanceNormAct,
  layerNorm,
  layerNormChannelsFirst,
  type NormActOptions,
  ones,
  type Tensor,
  zeros,
} from "../tensor/mod.ts";
import { Module } from "./module.ts";

/** Instance normalisation over the spatial dimensions with a per-channel affine transform. */
export class InstanceNorm3d extends Module {
  /** Normalises `channels` channels; `eps` is added to the variance. Affine weight 1, bias 0. */
  constructor(readonly channels: number, readonly eps = 1e-5) {
    super();
    this.registerParameter("weight", ones([channels]));
    this.registerParameter("bias", zeros([channels]));
  }

  /** The affine weight [C]. */
  get weight(): Tensor {
    return this.p("weight");
  }

  /** The affine bias [C]. */
  get bias(): Tensor {
    return this.p("bias");
  }

  /** Normalises [N, C, D, H, W]. */
  forward(x: Tensor): Tensor {
    return instanceNorm(x, this.p("weight"), this.p("bias"), this.eps);
  }

  /** The fused hot path: LeakyReLU(norm(x)·w + b [+ residual]) in one pass forward and backward. */
  forwardAct(x: Tensor, options: Omit<NormActOptions, "eps"> = {}): Tensor {
    return instanceNormAct(x, this.p("weight"), this.p("bias"), { ...options, eps: this.eps });
  }
}

/** LayerNorm over the last dimension. */
export class LayerNorm extends Module {
  /** Normalises over the last dimension of size `features`; `eps` is added to the variance. */
  constructor(readonly features: number, readonly eps = 1e-5) {
    super();
    this.registerParameter("weight", ones([features]));
    this.registerParameter("bias", zeros([features]));
  }

  /** Normalises [..., features]. */
  forward(x: Tensor): Tensor {
    return layerNorm(x, [this.features], this.p("weight"), this.p("bias"), this.eps);
  }
}

/** LayerNorm over the channels of NC(D)(H)(W) features at each position (ConvNeXt / Primus decoder style). */
export class LayerNormChannelsFirst extends Module {
  /** Normalises over `channels` channels; `eps` is added to the variance. Affine weight 1, bias 0. */
  constructor(readonly channels: number, readonly eps = 1e-6) {
    super();
    this.registerParameter("weight", ones([channels]));
    this.registerParameter("bias", zeros([channels]));
  }

  /** Normalises [N, C, …] over C. */
  forward(x: Tensor): Tensor {
    return layerNormChannelsFirst(x, this.p("weight"), this.p("bias"), this.eps);
  }
}
