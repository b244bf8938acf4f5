/**
 * Label-smoothed cross-entropy against its float64 reference (values, and gradients by central finite
 * differences), against the core's plain cross-entropy reference at ε = 0; the pooling head against a
 * float64 spatial mean and linear map.
 */
import * as ops from "../../../../core/tensor/mod.ts";
import { crossEntropyRef } from "../../../../core/tensor/reference/loss.ts";
import {
  ClassificationHead,
  labelSmoothingCrossEntropy,
  labelSmoothingCrossEntropyRef,
  poolFeatures,
  smoothedTargets,
} from "../../../../core/eval/classification/mod.ts";
import { assertThrows } from "../../../assert.ts";
import { checkOp } from "../../../op_harness.ts";
import { assertClose, gpuTest, randomArray } from "../../../helpers.ts";

const labels = [2, 0, 4, 1, 1, 3];

for (const smoothing of [0, 0.2]) {
  gpuTest(
    `labelSmoothingCrossEntropy ε=${smoothing} matches the float64 reference (values and gradients)`,
    () =>
      checkOp({
        name: `label smoothing CE ${smoothing}`,
        inputs: [{ shape: [6, 5], lo: -3, hi: 3 }],
        gpu: ([x]) => labelSmoothingCrossEntropy(x, labels, smoothing),
        ref: ([x]) => ({
          shape: [],
          data: Float64Array.of(labelSmoothingCrossEntropyRef(x.data, labels, 5, smoothing)),
        }),
      }),
  );
}

Deno.test("label-smoothing CE reference: ε = 0 is the core's cross-entropy reference; targets sum to 1", () => {
  const logits = { shape: [6, 5], data: randomArray(30, 3, -4, 4) };
  const plain = crossEntropyRef(logits, labels).data[0];
  assertClose(
    Float64Array.of(labelSmoothingCrossEntropyRef(logits.data, labels, 5, 0)),
    Float64Array.of(plain),
    {
      rtol: 1e-14,
      atol: 0,
    },
  );
  const q = smoothedTargets(labels, 5, 0.2);
  for (let i = 0; i < 6; i++) {
    const row = q.subarray(i * 5, i * 5 + 5);
    assertClose(Float64Array.of(row.reduce((a, b) => a + b, 0)), Float64Array.of(1), { rtol: 1e-6, atol: 0 });
    assertClose(Float64Array.of(row[labels[i]]), Float64Array.of(0.8 + 0.04), { rtol: 1e-6, atol: 0 });
  }
  assertThrows(() => smoothedTargets([5], 5, 0.1), RangeError, "class index");
  assertThrows(() => smoothedTargets([0], 5, 1), RangeError, "[0, 1)");
});

gpuTest("classification head: pooled features and logits match a float64 reference", async () => {
  const [b, c, d, h, w, k] = [2, 3, 2, 3, 4, 4];
  const x = randomArray(b * c * d * h * w, 17, -2, 2);
  const refPooled = new Float64Array(b * c);
  for (let i = 0; i < b * c; i++) {
    let s = 0;
    for (let v = 0; v < d * h * w; v++) s += Math.fround(x[i * d * h * w + v]);
    refPooled[i] = s / (d * h * w);
  }
  const head = new ClassificationHead(c, k, new ops.Generator(5), { dropout: 0.2 });
  head.training = false; // dropout off: a deterministic map
  const params = new Map(head.namedParameters());
  const weight = await params.get("fc.weight")!.toArray();
  const bias = await params.get("fc.bias")!.toArray();
  const refLogits = new Float64Array(b * k);
  for (let i = 0; i < b; i++) {
    for (let o = 0; o < k; o++) {
      let s = bias[o];
      for (let j = 0; j < c; j++) s += weight[o * c + j] * refPooled[i * c + j];
      refLogits[i * k + o] = s;
    }
  }
  const input = ops.tensor(Float32Array.from(x), [b, c, d, h, w]);
  const pooled = poolFeatures(input);
  assertClose(await pooled.toArray(), refPooled, { rtol: 1e-5, atol: 1e-6 });
  assertClose(await head.forward(pooled).toArray(), refLogits, { rtol: 1e-5, atol: 1e-5 });
  // a ViT's token sequence as a grid [B, C, d, h, w] pools to the token average the same way
  assertThrows(
    () => poolFeatures(ops.tensor(Float32Array.from([1, 2]), [1, 2])),
    RangeError,
    "no spatial axes",
  );
});
