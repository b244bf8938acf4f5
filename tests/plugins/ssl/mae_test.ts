import { assert, assertEquals } from "../../assert.ts";
import mae, { blockGrid, chooseMaskedBlocks, maskedMse, voxelMask } from "../../../plugins/ssl/mae/mod.ts";
import {
  Generator,
  getGpu,
  Module,
  mul,
  type Network,
  sampleArray,
  scope,
  type Tensor,
  tensor,
  validatePlugin,
  VERSION,
} from "../../../mod.ts";
import { createSampleRunner } from "../../../core/data/sample_runner.ts";
import { resolveAugmentation } from "../../../core/data/augment/config.ts";
import { resolveSource } from "../../../core/data/sources.ts";
import { uploadBatch } from "../../../core/train/gpu_batch.ts";
import { gpuTest, randomArray, seededRandom } from "../../helpers.ts";

class Scale extends Module implements Network {
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

Deno.test("mae is a valid plugin for this core", () => {
  validatePlugin(mae, VERSION, "plugins/ssl/mae");
});

Deno.test("chooseMaskedBlocks() masks exactly round(ratio·n) blocks, reproducibly", () => {
  for (const n of [1000, 27, 8]) {
    const a = chooseMaskedBlocks(n, 0.75, seededRandom(n));
    const b = chooseMaskedBlocks(n, 0.75, seededRandom(n));
    assertEquals(a.reduce((s, v) => s + v, 0), Math.round(0.75 * n));
    assertEquals([...a], [...b]);
  }
  assertEquals(blockGrid([160, 160, 160], 16), [10, 10, 10]);
  assertEquals(blockGrid([5, 6, 7], 4), [2, 2, 2]);
});

gpuTest("voxelMask() expands the block grid and crops to the patch", async () => {
  const grid = [1, 0, 0, 1, 1, 1, 0, 0]; // [1, 2, 2, 2]
  const m = scope(() => voxelMask(tensor(grid, [1, 2, 2, 2]), 4, [5, 6, 7]));
  assertEquals([...m.shape], [1, 1, 5, 6, 7]);
  const got = await m.toArray();
  for (let d = 0; d < 5; d++) {
    for (let h = 0; h < 6; h++) {
      for (let w = 0; w < 7; w++) {
        const expected = grid[Math.floor(d / 4) * 4 + Math.floor(h / 4) * 2 + Math.floor(w / 4)];
        assertEquals(got[(d * 6 + h) * 7 + w], expected, `voxel ${d},${h},${w}`);
      }
    }
  }
  m.dispose();
});

Deno.test("mae's sample hook ships the standard patch and an exact-count u8 block grid, reproducibly", async () => {
  const source = await resolveSource({ kind: "synthetic", count: 2, shape: [20, 20, 20], seed: 4 });
  const init = {
    source,
    spec: {
      patch: [12, 12, 8] as [number, number, number],
      augmentation: resolveAugmentation("none"),
      anatomyProbability: 0,
      masks: [],
    },
    seed: 5,
    training: true,
    hookModule: new URL("../../../plugins/ssl/mae/mod.ts", import.meta.url).href,
    hookConfig: { block: 4 },
  };
  const runner = await createSampleRunner(init);
  const plain = await createSampleRunner({ ...init, hookModule: undefined });
  try {
    const { result } = await runner.run({ step: 3, index: 0, item: 1 });
    assertEquals(Object.keys(result.arrays).sort(), ["blockMask", "image"]);
    const grid = result.arrays.blockMask;
    assertEquals([grid.dtype, ...grid.shape], ["u8", 3, 3, 2]);
    assertEquals([...grid.data].reduce((a, b) => a + b, 0), Math.round(0.75 * 18));
    // the image is the run's standard patch, as a method without a hook would get it
    const standard = (await plain.run({ step: 3, index: 0, item: 1 })).result.arrays.image;
    assertEquals(result.arrays.image, standard);
    const again = (await runner.run({ step: 3, index: 0, item: 1 })).result.arrays.blockMask;
    assertEquals(again, grid);
    const next = (await runner.run({ step: 4, index: 0, item: 1 })).result.arrays.blockMask;
    assert(next.data.some((v, i) => v !== grid.data[i]), "another step draws another mask");
  } finally {
    runner.close();
    plain.close();
  }
});

gpuTest("MAE loss zeroes masked blocks in the input and averages the error over them", async () => {
  const patch = [8, 8, 8];
  const image = Float32Array.from(randomArray(2 * 512, 3));
  const grids = [0, 1].map((i) => chooseMaskedBlocks(8, 0.75, seededRandom(i + 10)));
  const net = scope(() => new Scale());
  const instance = mae.build({
    network: net,
    config: mae.config.parse({ maskRatio: 0.75, block: 4 }),
    rng: new Generator(0),
    patchSize: [8, 8, 8],
    createNetwork: () => {
      throw new Error("not needed");
    },
  });
  const loss = scope(() => {
    const batch = uploadBatch(
      {
        arrays: {
          image: sampleArray(image, [2, 1, ...patch]),
          blockMask: sampleArray(Uint8Array.from([...grids[0], ...grids[1]]), [2, 2, 2, 2]), // u8, as the loader stacks it
        },
      },
      getGpu(),
      "mae",
    );
    return instance.loss(batch, { step: 0, epoch: 0, training: true, rng: new Generator(1) }).loss;
  });
  // identity network: prediction is 0 where masked, so the loss is the mean of image² over masked voxels
  let s = 0, count = 0;
  for (let b = 0; b < 2; b++) {
    for (let i = 0; i < 512; i++) {
      const [d, h, w] = [Math.floor(i / 64), Math.floor(i / 8) % 8, i % 8];
      if (grids[b][Math.floor(d / 4) * 4 + Math.floor(h / 4) * 2 + Math.floor(w / 4)]) {
        s += image[b * 512 + i] ** 2;
        count++;
      }
    }
  }
  assertEquals(count, 2 * 6 * 64);
  const got = await loss.item();
  assert(Math.abs(got - s / count) < 1e-5 * (s / count), `${got} vs ${s / count}`);
  loss.dispose();
  net.dispose();
});

gpuTest("maskedMse() of an all-zero mask is 0, not NaN", async () => {
  const l = scope(() => maskedMse(tensor([1, 2], [2]), tensor([0, 0], [2]), tensor([0, 0], [2])));
  assertEquals(await l.item(), 0);
  l.dispose();
});
