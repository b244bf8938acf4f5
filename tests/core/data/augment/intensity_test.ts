import { adjustContrast, adjustGamma, scaleBrightness } from "../../../../core/data/augment/intensity.ts";
import { meanStd } from "../../../../core/data/normalize.ts";
import { assert } from "../../../assert.ts";
import { assertClose } from "../../../helpers.ts";
import { randomFloats } from "../fixtures.ts";

Deno.test("scaleBrightness() multiplies every voxel", () => {
  const data = randomFloats(100, 1);
  const out = data.slice();
  scaleBrightness(out, 1.2);
  assertClose(out, data.map((v) => v * 1.2), { atol: 1e-6 });
});

Deno.test("adjustContrast() scales around the mean and stays within the original range", () => {
  const data = randomFloats(1000, 2, -2, 3);
  const low = data.slice();
  adjustContrast(low, 0.8);
  const m = meanStd(data).mean;
  assertClose(low, data.map((v) => (v - m) * 0.8 + m), { atol: 1e-5 });
  const high = data.slice();
  adjustContrast(high, 1.25);
  const lo = Math.min(...data), hi = Math.max(...data);
  assert(high.every((v) => v >= lo && v <= hi));
  assertClose([Math.max(...high)], [hi], { atol: 1e-6 }); // the top is clipped at the original maximum
});

Deno.test("adjustGamma() keeps mean, std and voxel order; gamma 1 changes nothing", () => {
  const data = randomFloats(2000, 3, -1.5, 2.5);
  for (const invert of [false, true]) {
    for (const gamma of [0.7, 1.4]) {
      const out = data.slice();
      adjustGamma(out, gamma, invert);
      const a = meanStd(data), b = meanStd(out);
      assertClose([b.mean, b.std], [a.mean, a.std], { atol: 1e-4 });
      for (let i = 1; i < 200; i++) {
        assert(
          Math.sign(out[i] - out[i - 1]) === Math.sign(data[i] - data[i - 1]) ||
            Math.abs(data[i] - data[i - 1]) < 1e-6,
        );
      }
      assert(out.some((v, i) => Math.abs(v - data[i]) > 1e-3), "gamma ≠ 1 changes values");
    }
    const same = data.slice();
    adjustGamma(same, 1, invert);
    assertClose(same, data, { atol: 1e-4 });
  }
});
