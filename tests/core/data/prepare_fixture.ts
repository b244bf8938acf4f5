/**
 * A `prepare` for loader tests, shaped like a masked-image-modelling method: it keeps the original patch
 * as `target`, zeroes random 4³ blocks of the input (drawn with the sample's rng), and returns the block
 * mask. `calls` counts invocations in this thread (for the prefetch bound test).
 */
import type { PrepareContext, PrepareSample } from "../../../core/data/sample.ts";

export const calls = { count: 0 };

export function prepare(
  sample: PrepareSample,
  { rng, config }: PrepareContext,
): Record<string, Float32Array | Uint8Array> {
  calls.count++;
  const ratio = (config as { ratio: number }).ratio;
  const [, D, H, W] = sample.shape;
  const target = sample.image.slice();
  const mask = new Uint8Array(D * H * W);
  for (let d = 0; d < D; d += 4) {
    for (let h = 0; h < H; h += 4) {
      for (let w = 0; w < W; w += 4) {
        if (!rng.chance(ratio)) continue;
        for (let a = d; a < Math.min(D, d + 4); a++) {
          for (let b = h; b < Math.min(H, h + 4); b++) {
            for (let c = w; c < Math.min(W, w + 4); c++) {
              mask[(a * H + b) * W + c] = 1;
              sample.image[(a * H + b) * W + c] = 0;
            }
          }
        }
      }
    }
  }
  return { target, mask };
}
