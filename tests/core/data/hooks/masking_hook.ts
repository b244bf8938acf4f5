/**
 * A data hook for loader tests, shaped like a masked-image-modelling method: it takes the run's standard
 * patch, keeps it as `target`, zeroes random 4³ blocks of the input (drawn with the sample's rng) and
 * returns the voxel mask as u8. `calls` counts invocations in this thread (for the prefetch bound test).
 */
import { sampleArray, type SampleContext, z } from "../../../../mod.ts";

/** Invocations in this thread. */
export const calls = { count: 0 };

const config = z.object({ ratio: z.number().min(0).max(1) });

export default {
  name: "masking-fixture",
  config,
  sample(context: SampleContext<z.output<typeof config>>) {
    calls.count++;
    const { ratio } = context.config;
    const patch = context.patch();
    const [D, H, W] = patch.shape;
    const target = patch.image.slice();
    const mask = new Uint8Array(D * H * W);
    for (let d = 0; d < D; d += 4) {
      for (let h = 0; h < H; h += 4) {
        for (let w = 0; w < W; w += 4) {
          if (!context.rng.chance(ratio)) continue;
          for (let a = d; a < Math.min(D, d + 4); a++) {
            for (let b = h; b < Math.min(H, h + 4); b++) {
              for (let c = w; c < Math.min(W, w + 4); c++) {
                mask[(a * H + b) * W + c] = 1;
                patch.image[(a * H + b) * W + c] = 0;
              }
            }
          }
        }
      }
    }
    const shape = [1, D, H, W];
    const out: Record<string, ReturnType<typeof sampleArray>> = {
      image: sampleArray(patch.image, shape),
      target: sampleArray(target, shape),
      mask: sampleArray(mask, shape),
    };
    for (const [name, m] of Object.entries(patch.masks)) out[name] = sampleArray(m!, shape);
    return out;
  },
};
