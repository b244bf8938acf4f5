/**
 * 3D convolution layers with PyTorch's parameter layouts: Conv3d weight [out, in, k, k, k], ConvTranspose3d
 * weight [in, out, k, k, k], bias [out].
 *
 * Initialisation: "he" is nnU-Net's InitWeights_He(1e-2) (kaiming normal, a = 0.01, fan_in as PyTorch
 * computes it, zero bias); "torch-default" is PyTorch's own default for conv layers (kaiming uniform with
 * a = √5, i.e. U(±1/√fan_in), for the weight and the bias), which is what nnssl's MAE trainer ends up with.
 */
import { conv3d, convTranspose3d, type Generator, type Size3, type Tensor, zeros } from "../tensor/mod.ts";
import { fanIn, kaimingNormal } from "./init.ts";
import { Module } from "./module.ts";

/** How convolution weights start. */
export type ConvInit = "he" | "torch-default";

/** Options of {@link Conv3d} and {@link ConvTranspose3d}. */
export interface ConvOptions {
  /** Step of the kernel over D, H and W: one number or three (default 1). */
  stride?: Size3;
  /** Zero padding on each side of D, H and W, in voxels: one number or three (default 0). */
  padding?: Size3;
  /** Whether the layer has a `bias` [out] (default true). */
  bias?: boolean;
  /** How the weight (and bias) start (default "he"). */
  init?: ConvInit;
}

function cube(k: Size3): [number, number, number] {
  return typeof k === "number" ? [k, k, k] : [k[0], k[1], k[2]];
}

function initWeight(shape: number[], rng: Generator, init: ConvInit): Tensor {
  if (init === "he") return kaimingNormal(shape, rng, 1e-2);
  const bound = 1 / Math.sqrt(fanIn(shape));
  return rng.uniform(shape, -bound, bound);
}

function initBias(n: number, weightShape: number[], rng: Generator, init: ConvInit): Tensor {
  if (init === "he") return zeros([n]);
  const bound = 1 / Math.sqrt(fanIn(weightShape));
  return rng.uniform([n], -bound, bound);
}

/**
 * Parameters and options shared by the two convolution layers (their weight layouts differ): the base
 * of {@link Conv3d} and {@link ConvTranspose3d}.
 */
export abstract class ConvLayer extends Module {
  /** Step of the kernel over D, H and W. */
  readonly stride: Size3;
  /** Zero padding on each side of D, H and W. */
  readonly padding: Size3;

  /** Registers `weight` (shape `weightShape`, initialised from `rng`) and, unless disabled, `bias` [out]. */
  constructor(weightShape: number[], outChannels: number, rng: Generator, options: ConvOptions) {
    super();
    const init = options.init ?? "he";
    this.stride = options.stride ?? 1;
    this.padding = options.padding ?? 0;
    this.registerParameter("weight", initWeight(weightShape, rng, init));
    if (options.bias ?? true) this.registerParameter("bias", initBias(outChannels, weightShape, rng, init));
  }

  /** The options of the functional op. */
  protected opOptions(): { bias?: Tensor; stride: Size3; padding: Size3 } {
    return {
      bias: this.hasParameter("bias") ? this.p("bias") : undefined,
      stride: this.stride,
      padding: this.padding,
    };
  }
}

/** A 3D convolution over NCDHW. Parameters `weight` [out, in, kD, kH, kW] and optional `bias` [out]. */
export class Conv3d extends ConvLayer {
  /** A `kernel`-sized convolution from `inChannels` to `outChannels`, its weight drawn from `rng`. */
  constructor(
    inChannels: number,
    outChannels: number,
    kernel: Size3,
    rng: Generator,
    options: ConvOptions = {},
  ) {
    super([outChannels, inChannels, ...cube(kernel)], outChannels, rng, options);
  }

  /** [N, in, D, H, W] → [N, out, D', H', W']. */
  forward(x: Tensor): Tensor {
    return conv3d(x, this.p("weight"), this.opOptions());
  }
}

/** A 3D transposed convolution (decoder upsampling). Parameters `weight` [in, out, k…], `bias` [out]. */
export class ConvTranspose3d extends ConvLayer {
  /** A `kernel`-sized transposed convolution from `inChannels` to `outChannels`, drawn from `rng`. */
  constructor(
    inChannels: number,
    outChannels: number,
    kernel: Size3,
    rng: Generator,
    options: ConvOptions = {},
  ) {
    super([inChannels, outChannels, ...cube(kernel)], outChannels, rng, options);
  }

  /** [N, in, D, H, W] → [N, out, (D−1)·s − 2p + k, …]. */
  forward(x: Tensor): Tensor {
    return convTranspose3d(x, this.p("weight"), this.opOptions());
  }
}
