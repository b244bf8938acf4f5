/**
 * An example third-party SSL method: a denoising autoencoder. The network sees the patch plus Gaussian
 * noise and is trained to return the clean patch (MSE). It is deliberately small: it shows the whole
 * plugin contract (manifest, config schema with defaults, training defaults per architecture family,
 * and `build` with its loss) written against voxssl's public API (`@voxssl/core`) only.
 *
 * Use it:  ./deno task voxssl pretrain --plugin examples/denoising-method/mod.ts --method denoising
 */
import { add, definePlugin, mean, mulScalar, powScalar, type SslMethodPlugin, sub, z } from "@voxssl/core";
import meta from "./deno.json" with { type: "json" };

/** The denoising method plugin (`--method denoising`); its config is `{ noiseStd }`, default 0.3. */
const plugin: SslMethodPlugin<{ noiseStd: number }> = definePlugin({
  kind: "ssl-method",
  name: "denoising",
  version: meta.version,
  coreApi: "^0.2.0",
  description:
    "denoising autoencoder: reconstruct the clean patch from patch + Gaussian noise (example plugin)",
  supports: ["cnn", "vit"],
  network: { outChannels: 1 },
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
      const image = batch.get("image");
      const noise = rng.normal(image.shape, 0, 1);
      const noisy = add(image, mulScalar(noise, config.noiseStd));
      return { loss: mean(powScalar(sub(network.forward(noisy, { rng }), image), 2)) };
    },
  }),
});

export default plugin;
