import { simulateLowResolution } from "../../../../core/data/augment/lowres.ts";
import { assert, assertEquals } from "../../../assert.ts";
import { assertClose } from "../../../helpers.ts";
import { randomFloats } from "../fixtures.ts";

Deno.test("simulateLowResolution() removes detail finer than the zoom and keeps the shape", () => {
  const shape: [number, number, number] = [8, 8, 8];
  // a voxel checkerboard: nearest downsampling by 2 picks one parity → the result is flat
  const checker = Float32Array.from(
    { length: 512 },
    (_, i) => ((i % 8) + (Math.floor(i / 8) % 8) + Math.floor(i / 64)) % 2,
  );
  const out = simulateLowResolution(checker, shape, 0.5);
  assertEquals(out.length, 512);
  assertClose(out, new Float32Array(512).fill(out[0]), { atol: 1e-5 });
  const data = randomFloats(512, 4);
  assertEquals(simulateLowResolution(data, shape, 1), data);
  const smooth = simulateLowResolution(data, shape, 0.6);
  let change = 0;
  smooth.forEach((v, i) => (change += Math.abs(v - data[i])));
  assert(change > 50, "detail was removed");
});
