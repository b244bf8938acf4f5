import { gaussianBlur, gaussianKernel } from "../../../../core/data/augment/blur.ts";
import type { Shape3 } from "../../../../core/data/volume.ts";
import { assertClose } from "../../../helpers.ts";
import { randomFloats } from "../fixtures.ts";

/** Reference: direct 3D sum with the product kernel and scipy's "reflect" border. */
function reference(data: Float32Array, s: Shape3, sigma: number[]): Float32Array {
  const ks = sigma.map((g) => gaussianKernel(g));
  const reflect = (i: number, n: number) => {
    while (i < 0 || i >= n) i = i < 0 ? -i - 1 : 2 * n - i - 1;
    return i;
  };
  const out = new Float32Array(data.length);
  for (let d = 0; d < s[0]; d++) {
    for (let h = 0; h < s[1]; h++) {
      for (let w = 0; w < s[2]; w++) {
        let v = 0;
        const r = ks.map((k) => (k.length - 1) / 2);
        for (let a = -r[0]; a <= r[0]; a++) {
          for (let b = -r[1]; b <= r[1]; b++) {
            for (let c = -r[2]; c <= r[2]; c++) {
              const x = (reflect(d + a, s[0]) * s[1] + reflect(h + b, s[1])) * s[2] + reflect(w + c, s[2]);
              v += ks[0][a + r[0]] * ks[1][b + r[1]] * ks[2][c + r[2]] * data[x];
            }
          }
        }
        out[(d * s[1] + h) * s[2] + w] = v;
      }
    }
  }
  return out;
}

Deno.test("gaussianBlur() matches a direct 3D convolution with reflected borders", () => {
  const shape: Shape3 = [6, 7, 5];
  const data = randomFloats(210, 9);
  assertClose(gaussianBlur(data, shape, [0.6, 1.0, 0.8]), reference(data, shape, [0.6, 1.0, 0.8]), {
    atol: 1e-5,
  });
});

Deno.test("gaussianKernel() sums to one and gaussianBlur() keeps constants and the total", () => {
  const k = gaussianKernel(1.3);
  assertClose([k.reduce((a, b) => a + b)], [1], { atol: 1e-6 });
  const constant = new Float32Array(120).fill(2.5);
  assertClose(gaussianBlur(constant, [4, 5, 6], [1, 1, 1]), constant, { atol: 1e-5 });
  const data = randomFloats(8 * 9 * 10, 2);
  const blurred = gaussianBlur(data, [8, 9, 10], [0.7, 0.7, 0.7]);
  // reflection conserves the sum
  assertClose([blurred.reduce((a, b) => a + b)], [data.reduce((a, b) => a + b)], { atol: 1e-3 });
});
