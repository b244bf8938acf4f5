import { meanStd, zscoreInPlace } from "../../../core/data/normalize.ts";
import { assertClose } from "../../helpers.ts";
import { randomFloats } from "./fixtures.ts";

Deno.test("zscoreInPlace() gives mean 0 and std 1 and returns the statistics used", () => {
  const data = randomFloats(10000, 5, 100, 300);
  const copy = data.slice();
  const stats = zscoreInPlace(data);
  const after = meanStd(data);
  assertClose([after.mean, after.std], [0, 1], { atol: 1e-5 });
  assertClose([(copy[17] - stats.mean) / stats.std], [data[17]], { atol: 1e-5 });
});

Deno.test("zscoreInPlace() leaves a constant image at zero instead of dividing by zero", () => {
  const data = new Float32Array(10).fill(4);
  zscoreInPlace(data);
  assertClose(data, new Float32Array(10), { atol: 0 });
  assertClose([meanStd([1, 2, 3, 4]).std], [Math.sqrt(1.25)]);
});
