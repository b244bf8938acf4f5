/** Linear layer: y = x·Wᵀ + b with PyTorch's weight layout [out, in] (read transposed in place). */
import { add, type Generator, matmul, type Tensor, zeros } from "../tensor/mod.ts";
import { truncNormal } from "./init.ts";
import { Module } from "./module.ts";

/** Options of {@link Linear}. */
export interface LinearOptions {
  /** Whether the layer has a `bias` [out] (default true). */
  bias?: boolean;
  /**
   * "trunc-normal" (default): weight truncated normal with `std`, zero bias (timm's transformer init);
   * "torch-default": PyTorch's `nn.Linear` init, weight and bias uniform in ±1/√in.
   */
  init?: "trunc-normal" | "torch-default";
  /** Standard deviation of the truncated-normal weight init (transformer default 0.02). */
  std?: number;
}

/** A fully connected layer over the last dimension. Parameters: `weight` [out, in], `bias` [out]. */
export class Linear extends Module {
  /** An `inFeatures` → `outFeatures` layer, its weight drawn from `rng`. */
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    rng: Generator,
    options: LinearOptions = {},
  ) {
    super();
    const bound = 1 / Math.sqrt(inFeatures);
    const torch = options.init === "torch-default";
    this.registerParameter(
      "weight",
      torch
        ? rng.uniform([outFeatures, inFeatures], -bound, bound)
        : truncNormal([outFeatures, inFeatures], rng, options.std ?? 0.02),
    );
    if (options.bias ?? true) {
      this.registerParameter(
        "bias",
        torch ? rng.uniform([outFeatures], -bound, bound) : zeros([outFeatures]),
      );
    }
  }

  /** x [..., in] → [..., out]. */
  forward(x: Tensor): Tensor {
    const y = matmul(x, this.p("weight"), { transposeB: true });
    return this.hasParameter("bias") ? add(y, this.p("bias")) : y;
  }
}
