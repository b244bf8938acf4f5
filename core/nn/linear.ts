/** Linear layer: y = x·Wᵀ + b with PyTorch's weight layout [out, in] (read transposed in place). */
import { add, type Generator, matmul, type Tensor, zeros } from "../tensor/mod.ts";
import { truncNormal } from "./init.ts";
import { Module } from "./module.ts";

/** Options of {@link Linear}. */
export interface LinearOptions {
  bias?: boolean;
  /** Standard deviation of the truncated-normal weight init (transformer default 0.02). */
  std?: number;
}

/** A fully connected layer over the last dimension. Parameters: `weight` [out, in], `bias` [out]. */
export class Linear extends Module {
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    rng: Generator,
    options: LinearOptions = {},
  ) {
    super();
    this.registerParameter("weight", truncNormal([outFeatures, inFeatures], rng, options.std ?? 0.02));
    if (options.bias ?? true) this.registerParameter("bias", zeros([outFeatures]));
  }

  /** x [..., in] → [..., out]. */
  forward(x: Tensor): Tensor {
    const y = matmul(x, this.p("weight"), { transposeB: true });
    return this.hasParameter("bias") ? add(y, this.p("bias")) : y;
  }
}
