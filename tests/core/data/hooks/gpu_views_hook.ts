/**
 * A method declaring gpuViewAugmentation, with a `mode` config: "good" puts each augmented crop unchanged
 * where `augment(..., into)` said; "changed" puts a doubled crop there; "twice" promises the same entry for
 * two crops; "missing" names an array it does not return.
 */
import { definePlugin, sampleArray, type SslMethodPlugin, z } from "../../../../mod.ts";

const config = z.object({ mode: z.enum(["good", "changed", "twice", "missing"]).default("good") });

const plugin: SslMethodPlugin<z.output<typeof config>> = definePlugin({
  kind: "ssl-method",
  name: "gpu-views-fixture",
  version: "1.0.0",
  coreApi: "^0.2.0",
  description: "test fixture: two augmented crops per sample",
  supports: ["cnn"],
  network: { encoderOnly: true },
  gpuViewAugmentation: true,
  config,
  defaults: {
    cnn: {
      optimizer: { name: "sgd", lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0 },
      schedule: { name: "constant" },
      clipGradNorm: 0,
      patchSize: [8, 8, 8],
      batchSize: 2,
    },
  },
  sample(context) {
    const size = context.patchSize;
    const n = size[0] * size[1] * size[2];
    const views = new Float32Array(2 * n);
    for (let i = 0; i < 2; i++) {
      const crop = context.volume.crop([i, 0, 0], size);
      const index = context.config.mode === "twice" ? 0 : i;
      const array = context.config.mode === "missing" ? "other" : "views";
      context.augment(crop, { preset: "nnunet", rotation: { p: 0 }, scale: { p: 0 } }, context.rng.fork(i), {
        array,
        index,
      });
      const image = context.config.mode === "changed" ? crop.image.map((v) => 2 * v) : crop.image;
      views.set(image, i * n);
    }
    return { views: sampleArray(views, [2, 1, ...size]) };
  },
  build() {
    throw new Error("data-side fixture only");
  },
});

export default plugin;
