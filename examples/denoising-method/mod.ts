/**
 * An example third-party SSL method: a denoising autoencoder. The network sees the patch plus Gaussian
 * noise and is trained to return the clean patch (MSE). It is deliberately small: it shows the whole
 * plugin contract (manifest, config schema with defaults, training defaults per architecture family,
 * an optional data-side `prepare`, and `build` with its loss) written against voxssl's public API only.
 *
 * Use it:  ./deno task voxssl pretrain --plugin examples/denoising-method/mod.ts --method denoising
 */
import { add, definePlugin, mean, mulScalar, powScalar, sub, z } from "../../mod.ts";

export default definePlugin({
  kind: "ssl-method",
  name: "denoising",
  version: "0.1.0",
  coreApi: "^0.1.0",
  description:
    "denoising autoencoder: reconstruct the clean patch from patch + Gaussian noise (example plugin)",
  supports: ["cnn", "vit"],
  outChannels: 1,
  config: z.object({
    /** Noise standard deviation, in units of the (z-scored) intensities. */
    noiseStd: z.number().positive().default(0.3),
  }),
  defaults: {
    cnn: {
      optimizer: { name: "sgd", lr: 1e-2, momentum: 0.99, nesterov: true, weightDecay: 3e-5 },
      schedule: { name: "poly", exponent: 0.9 },
      clipGradNorm: 12,
      patchSize: [64, 64, 64],
      batchSize: 2,
    },
    vit: {
      optimizer: { name: "adamw", lr: 3e-4, betas: [0.9, 0.98], eps: 1e-8, weightDecay: 5e-2 },
      schedule: { name: "warmup-poly", warmup: 5, exponent: 0.9 },
      clipGradNorm: 1,
      patchSize: [64, 64, 64],
      batchSize: 2,
    },
  },
  build: ({ network, config }) => ({
    modules: {},
    loss: (batch, { rng }) => {
      const noise = rng.normal(batch.image.shape, 0, 1);
      const noisy = add(batch.image, mulScalar(noise, config.noiseStd));
      return { loss: mean(powScalar(sub(network.forward(noisy), batch.image), 2)) };
    },
  }),
});
