/**
 * The classification head on a pooled encoder: the deepest `encode()` feature is averaged over its
 * spatial grid — global average pooling for a CNN's last stage, the token average for a ViT (whose
 * `encode()` returns the token grid [B, C, d, h, w], so the spatial mean is the mean over tokens) — then
 * dropout (SSL3D_classification uses 0.2) and a linear layer to class logits.
 *
 * @module
 */
import { Linear } from "../../nn/linear.ts";
import { Module } from "../../nn/module.ts";
import type { Network } from "../../plugin/architecture.ts";
import { dropout, type Generator, mean, type Tensor } from "../../tensor/mod.ts";

/** [B, C, ...grid] → [B, C]: the mean over every axis after the channel axis. */
export function poolFeatures(features: Tensor): Tensor {
  if (features.shape.length < 3) {
    throw new RangeError(`poolFeatures: [${features.shape}] has no spatial axes`);
  }
  return mean(features, features.shape.slice(2).map((_, i) => i + 2));
}

/** Options of {@link ClassificationHead}. */
export interface ClassificationHeadOptions {
  /** Dropout before the linear layer, while training (default 0.2). */
  dropout?: number;
}

/** Dropout and a linear layer from pooled features to class logits. Parameters: `fc.weight`, `fc.bias`. */
export class ClassificationHead extends Module {
  /** Dropout probability before the linear layer while training. */
  readonly dropout: number;

  /** A head from `features` channels to `classes` logits, initialised from `rng` (PyTorch's default). */
  constructor(
    features: number,
    readonly classes: number,
    rng: Generator,
    options: ClassificationHeadOptions = {},
  ) {
    super();
    this.dropout = options.dropout ?? 0.2;
    this.registerModule("fc", new Linear(features, classes, rng, { init: "torch-default" }));
  }

  /** Pooled features [B, C] → logits [B, classes]; `generator` draws the dropout mask while training. */
  forward(pooled: Tensor, generator?: Generator): Tensor {
    const x = this.training && this.dropout > 0 && generator
      ? dropout(pooled, this.dropout, generator)
      : pooled;
    return this.child<Linear>("fc").forward(x);
  }
}

/** Class logits of a batch [B, C_in, D, H, W]: encoder, pooling of its deepest feature, head. */
export function classificationLogits(
  network: Network,
  head: ClassificationHead,
  x: Tensor,
  generator?: Generator,
): Tensor {
  const features = network.encode(x);
  return head.forward(poolFeatures(features[features.length - 1]), generator);
}
