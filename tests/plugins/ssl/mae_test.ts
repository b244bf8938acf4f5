import { assert, assertEquals } from "../../assert.ts";
import mae, { blockGrid, chooseMaskedBlocks, maskedMse, voxelMask } from "../../../plugins/ssl/mae/mod.ts";
import {
  Generator,
  Module,
  mul,
  type Network,
  scope,
  type Tensor,
  tensor,
  validatePlugin,
  VERSION,
} from "../../../mod.ts";
import { createRng } from "../../../core/data/rng.ts";
import { gpuTest, randomArray, seededRandom } from "../../helpers.ts";

class Scale extends Module implements Network {
  readonly family = "cnn" as const;
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

gpuTest("MAE loss zeroes masked blocks in the input and averages the error over them", async () => {
  const patch = [8, 8, 8];
  const image = randomArray(2 * 512, 3).map((v) => Math.fround(v));
  const sample = {
    image: new Float32Array(512),
    shape: [1, 8, 8, 8] as [number, number, number, number],
    masks: {},
    id: "t",
    source: "t",
  };
  const config = { maskRatio: 0.75, block: 4, excludeDefaced: false };
  const grids = [0, 1].map((i) =>
    mae.prepare!(sample, { config, rng: createRng(i), seed: 0, step: 0, index: i })!.blockMask as Uint8Array
  );
  const net = scope(() => new Scale());
  const instance = mae.build({
    network: net,
    config: { maskRatio: 0.75, block: 4, excludeDefaced: false },
    rng: new Generator(0),
  });
  const loss = scope(() =>
    instance.loss({
      image: tensor(image, [2, 1, ...patch]),
      masks: {},
      extra: { blockMask: tensor([...grids[0], ...grids[1]], [2, 8]) }, // as the loader stacks it: [B, n]
    }, { step: 0, training: true, rng: new Generator(1) }).loss
  );
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
