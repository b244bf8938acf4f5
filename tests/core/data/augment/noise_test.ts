import { addGaussianNoise } from "../../../../core/data/augment/noise.ts";
import { meanStd } from "../../../../core/data/normalize.ts";
import { createRng } from "../../../../core/data/rng.ts";
import { assert, assertEquals } from "../../../assert.ts";
import { randomFloats } from "../fixtures.ts";

Deno.test("addGaussianNoise() adds zero-mean noise of the given sigma, reproducibly", () => {
  const data = randomFloats(50000, 8);
  const a = data.slice();
  addGaussianNoise(a, 0.3, createRng(1, "noise"));
  const diff = a.map((v, i) => v - data[i]);
  const { mean, std } = meanStd(diff);
  assert(Math.abs(mean) < 0.01 && Math.abs(std - 0.3) < 0.01, `${mean} ${std}`);
  const b = data.slice();
  addGaussianNoise(b, 0.3, createRng(1, "noise"));
  assertEquals(a, b);
  const c = data.slice();
  addGaussianNoise(c, 0, createRng(1));
  assertEquals(c, data);
});
