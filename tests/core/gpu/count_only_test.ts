import { assert, assertEquals } from "../../assert.ts";
import { createGpu, type Gpu } from "../../../core/gpu/mod.ts";
import {
  activation,
  backward,
  conv3d,
  instanceNorm,
  matmul,
  mseLoss,
  reshape,
  scope,
  tensor,
} from "../../../core/tensor/mod.ts";
import { gpuTest, randomArray } from "../../helpers.ts";

/** A tiny step (conv, norm, activation, matmul, loss, backward); returns the memory timeline's events. */
async function step(gpu: Gpu): Promise<string[]> {
  const x = tensor(randomArray(2 * 8 ** 3, 1), [1, 2, 8, 8, 8], { gpu });
  const w = tensor(randomArray(4 * 2 * 27, 2, -0.3, 0.3), [4, 2, 3, 3, 3], { gpu, requiresGrad: true });
  const m = tensor(randomArray(8 * 8, 3), [8, 8], { gpu, requiresGrad: true });
  const target = tensor(randomArray(4 * 8 ** 3, 4), [1, 4, 8, 8, 8], { gpu });
  await gpu.sync();
  gpu.pool.startTimeline();
  scope(() => {
    const y = activation("leakyRelu", instanceNorm(conv3d(x, w, { padding: 1 })), 0.01);
    const z = reshape(matmul(reshape(y, [4 * 8 * 8, 8]), m), [1, 4, 8, 8, 8]);
    backward(mseLoss(z, target));
  });
  const timeline = gpu.pool.stopTimeline()!;
  for (const t of [x, w, m, target]) t.dispose();
  await gpu.sync();
  return timeline.events.map((e) => `${e.owner}${e.bytes}`);
}

gpuTest(
  "a count-only device hands out and takes back the same buffers as a real one, and runs nothing",
  async (gpu) => {
    const counting = await createGpu({ countOnly: true });
    try {
      const real = await step(gpu);
      const before = counting.counters.submits;
      const counted = await step(counting);
      assert(real.length > 20, `${real.length} events`);
      assertEquals(counted, real);
      assert(counting.counters.dispatches > 0);
      // nothing recorded, so no command buffer was submitted
      assertEquals(counting.counters.submits, before);
    } finally {
      counting.destroy();
    }
  },
);
