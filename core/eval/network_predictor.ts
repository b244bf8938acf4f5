/**
 * A {@link PatchPredictor} from an architecture plugin's network: each window is uploaded as a
 * `[1, C, pd, ph, pw]` tensor, run through `network.forward` without autograd in evaluation mode, and
 * its `[1, K, pd, ph, pw]` logits read back; every tensor of the window is released before the next, so
 * device memory holds the weights and one window's activations only.
 *
 * @module
 */
import type { Shape3 } from "../data/mod.ts";
import type { Network } from "../plugin/mod.ts";
import { noGrad, scope, tensor } from "../tensor/mod.ts";
import type { PatchPredictor } from "./sliding_window.ts";

/**
 * Wraps `network` (put into evaluation mode) as a patch predictor for `inChannels` input channels.
 *
 * @example
 * ```ts ignore
 * import { networkPredictor, slidingWindowPredict } from "@voxssl/core";
 * const predict = networkPredictor(network, 1);
 * const logits = await slidingWindowPredict([image], [40, 56, 40], predict, { patchSize: [32, 32, 32], numClasses: 3 });
 * ```
 */
export function networkPredictor(network: Network, inChannels: number): PatchPredictor {
  network.eval();
  return async (patch: Float32Array, size: Shape3) => {
    const y = noGrad(() => scope(() => network.forward(tensor(patch, [1, inChannels, ...size]))));
    try {
      const out = await y.toArray();
      return out instanceof Float32Array ? out : Float32Array.from(out);
    } finally {
      y.dispose();
    }
  };
}
