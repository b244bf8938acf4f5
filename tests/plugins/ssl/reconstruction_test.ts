/**
 * The reconstruction each masked-image method shows in the run report (`LossOutput.reconstruction`):
 * input, corrupted input, prediction and target of a hand-made batch, checked against the masks applied
 * by hand on the host. MAE and Models Genesis run on a one-weight identity network (so the prediction is
 * known exactly), SparK on a tiny ResEnc, SimMIM on a tiny Primus (prediction: its shape).
 */
import { assertEquals } from "../../assert.ts";
import mae from "../../../plugins/ssl/mae/mod.ts";
import genesis from "../../../plugins/ssl/models-genesis/mod.ts";
import spark from "../../../plugins/ssl/spark/mod.ts";
import simmim from "../../../plugins/ssl/simmim/mod.ts";
import resenc, { ResEncUNet } from "../../../plugins/arch/resenc/mod.ts";
import primus, { Primus } from "../../../plugins/arch/primus/mod.ts";
import {
  Generator,
  getGpu,
  type MethodInstance,
  Module,
  mul,
  type Network,
  noGrad,
  type SampleArray,
  sampleArray,
  scope,
  type Tensor,
  tensor,
} from "../../../mod.ts";
import { uploadBatch } from "../../../core/train/gpu_batch.ts";
import { gpuTest, randomArray, seededRandom } from "../../helpers.ts";

/** prediction = w · input with w = 1: the network returns what it was given. */
class Identity extends Module implements Network {
  readonly family = "cnn" as const;
  readonly encoderOnly = false;
  readonly featureChannels = [1];
  constructor() {
    super();
    this.registerParameter("w", tensor([1], [1]));
  }
  forward(x: Tensor): Tensor {
    return mul(x, this.p("w"));
  }
  encode(x: Tensor): Tensor[] {
    return [x];
  }
  adaptationPlan(): ReturnType<Network["adaptationPlan"]> {
    throw new Error("not needed");
  }
}

const notNeeded = () => {
  throw new Error("not needed");
};

/** The four panels of `instance`'s reconstruction of `arrays`, read back. */
async function reconstruct(instance: MethodInstance, arrays: Record<string, SampleArray>, method: string) {
  const views = scope(() =>
    noGrad(() => {
      const batch = uploadBatch({ arrays }, getGpu(), method);
      const out = instance.loss(batch, { step: 0, epoch: 0, training: false, rng: new Generator(1) });
      const r = out.reconstruction!();
      return [r.input, r.corrupted, r.prediction, r.target];
    })
  );
  const [input, corrupted, prediction, target] = await Promise.all(
    views.map(async (t) => [...await t.toArray()]),
  );
  const shapes = views.map((t) => t.shape);
  for (const t of new Set(views)) t.dispose();
  return { input, corrupted, prediction, target, shapes };
}

/** `image` with the voxels of masked blocks zeroed (float64 on the host); `blockOf(i)` is voxel i's block index. */
function zeroMasked(
  image: Float32Array,
  masks: number[][],
  perSample: number,
  blockOf: (i: number) => number,
) {
  // v · (1 − m), as the GPU computes it (a masked negative voxel becomes −0)
  return [...image].map((v, i) => v * (1 - masks[Math.floor(i / perSample)][blockOf(i % perSample)]));
}

const blockOf = (edge: number, block: number) => (i: number) => {
  const g = edge / block;
  const [d, h, w] = [Math.floor(i / edge ** 2), Math.floor(i / edge) % edge, i % edge];
  return (Math.floor(d / block) * g + Math.floor(h / block)) * g + Math.floor(w / block);
};

const masks = (n: number, seed: number) =>
  [0, 1].map((b) => {
    const next = seededRandom(seed + b);
    const m = Array.from({ length: n }, () => (next() < 0.6 ? 1 : 0));
    m[0] = 1;
    m[1] = 0;
    return m;
  });

gpuTest("MAE (CNN) shows the image with masked blocks zeroed, and the network's answer to it", async () => {
  const image = Float32Array.from(randomArray(2 * 512, 3));
  const grids = masks(8, 10);
  const net = scope(() => new Identity());
  const instance = mae.build({
    network: net,
    config: mae.config.parse({ block: 4 }),
    rng: new Generator(0),
    patchSize: [8, 8, 8],
    createNetwork: notNeeded,
  });
  const r = await reconstruct(instance, {
    image: sampleArray(image, [2, 1, 8, 8, 8]),
    blockMask: sampleArray(Uint8Array.from(grids.flat()), [2, 2, 2, 2]),
  }, "mae");
  const expected = zeroMasked(image, grids, 512, blockOf(8, 4));
  assertEquals([r.input, r.target], [[...image], [...image]]);
  assertEquals(r.corrupted, expected);
  assertEquals(r.prediction, expected, "identity network: prediction = corrupted input");
  net.dispose();
});

gpuTest(
  "Models Genesis shows the clean target as input and target, the transformed image as corrupted",
  async () => {
    const image = Float32Array.from(randomArray(2 * 64, 4));
    const target = Float32Array.from(randomArray(2 * 64, 5));
    const net = scope(() => new Identity());
    const instance = genesis.build({
      network: net,
      config: genesis.config.parse({}),
      rng: new Generator(0),
      patchSize: [4, 4, 4],
      createNetwork: notNeeded,
    });
    const r = await reconstruct(instance, {
      image: sampleArray(image, [2, 1, 4, 4, 4]),
      target: sampleArray(target, [2, 1, 4, 4, 4]),
    }, "models-genesis");
    assertEquals([r.input, r.corrupted, r.prediction, r.target], [[...target], [...image], [...image], [
      ...target,
    ]]);
    net.dispose();
  },
);

gpuTest("SparK shows the image with masked blocks zeroed and a full-size prediction", async () => {
  const P = 16;
  const arch = resenc.config.parse({
    features: [4, 8, 8, 8],
    blocksPerStage: [1, 2, 1, 1],
    strides: [1, 2, 2, 2],
  });
  const net = scope(() =>
    new ResEncUNet(
      arch,
      { inChannels: 1, outChannels: 1, patchSize: [P, P, P], encoderOnly: false },
      new Generator(8),
    )
  );
  const instance = scope(() =>
    spark.build({
      network: net,
      config: spark.config.parse({ block: 4 }),
      rng: new Generator(9),
      patchSize: [P, P, P],
      createNetwork: notNeeded,
    })
  );
  const image = Float32Array.from(randomArray(2 * P ** 3, 12, -2, 2));
  const grids = masks(64, 20);
  const r = await reconstruct(instance, {
    image: sampleArray(image, [2, 1, P, P, P]),
    blockMask: sampleArray(Uint8Array.from(grids.flat()), [2, 4, 4, 4]),
  }, "spark");
  assertEquals([r.input, r.target], [[...image], [...image]]);
  assertEquals(r.corrupted, zeroMasked(image, grids, P ** 3, blockOf(P, 4)));
  assertEquals(r.shapes, Array(4).fill([2, 1, P, P, P]));
  for (const m of Object.values(instance.modules)) m.dispose();
  net.dispose();
});

gpuTest("SimMIM shows the image with masked tokens zeroed and a full-size prediction", async () => {
  const tiny = primus.config.parse({ ...primus.sizes!.tiny, patchEmbedSize: 4 });
  const patch: [number, number, number] = [8, 8, 8]; // a 2×2×2 token grid
  const net = scope(() =>
    new Primus(
      tiny,
      { inChannels: 1, outChannels: 1, patchSize: patch, encoderOnly: false },
      new Generator(3),
    )
  ).eval();
  const instance = scope(() =>
    simmim.build({
      network: net,
      config: simmim.config.parse({ tokenSize: 4 }),
      rng: new Generator(11),
      patchSize: patch,
      createNetwork: notNeeded,
    })
  );
  const image = Float32Array.from(randomArray(2 * 512, 6));
  const tokens = masks(8, 30);
  const r = await reconstruct(instance, {
    image: sampleArray(image, [2, 1, ...patch]),
    tokenMask: sampleArray(Uint8Array.from(tokens.flat()), [2, 2, 2, 2]),
  }, "simmim");
  assertEquals([r.input, r.target], [[...image], [...image]]);
  assertEquals(r.corrupted, zeroMasked(image, tokens, 512, blockOf(8, 4)));
  assertEquals(r.shapes, Array(4).fill([2, 1, ...patch]));
  for (const m of Object.values(instance.modules)) m.dispose();
  net.dispose();
});
