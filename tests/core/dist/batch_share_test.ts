/**
 * The data side of data parallelism: N loaders with `firstSample` = r·B draw exactly the samples of one
 * loader with the global batch N·B (this is what lets N ranks reproduce one process).
 */
import { createPatchLoader, type PatchBatch } from "../../../core/data/loader.ts";
import { shareOfBatch } from "../../../mod.ts";
import { assertEquals } from "../../assert.ts";

const source = {
  kind: "synthetic" as const,
  count: 5,
  shape: [20, 18, 16] as [number, number, number],
  seed: 9,
};

async function batchOf(batchSize: number, firstSample: number, step: number): Promise<PatchBatch> {
  const loader = await createPatchLoader({
    source,
    patchSize: [8, 8, 8],
    batchSize,
    firstSample,
    seed: 4,
    augmentation: "nnunet",
    workers: 0,
    prefetch: 0,
  });
  try {
    return await loader.batch(step);
  } finally {
    loader.close();
  }
}

Deno.test("two ranks' shares of each step's batch are the single process's global batch, split", async () => {
  for (const step of [0, 3]) {
    const whole = await batchOf(4, 0, step);
    const shares = await Promise.all([0, 1].map((rank) => {
      const { batch, firstSample } = shareOfBatch(4, { rank, size: 2 });
      return batchOf(batch, firstSample, step);
    }));
    const joined = new Float32Array(whole.arrays.image.data.length);
    joined.set(shares[0].arrays.image.data as Float32Array);
    joined.set(shares[1].arrays.image.data as Float32Array, shares[0].arrays.image.data.length);
    assertEquals(joined, whole.arrays.image.data);
    assertEquals([...shares[0].sources, ...shares[1].sources], whole.sources);
  }
});
