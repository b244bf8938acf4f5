/** Pooling ops against the float64 reference (values and gradients), chunked path. */
import * as ops from "../../../../core/tensor/mod.ts";
import * as R from "../../../../core/tensor/reference/pool.ts";
import { assertEquals, assertThrows } from "../../../assert.ts";
import { checkOp, type OpCase } from "../../../op_harness.ts";
import { gpuTest } from "../../../helpers.ts";
import { checkOpDirect, withSmallBindings } from "../../../chunked_harness.ts";

const poolCases: OpCase[] = [
  {
    name: "avgPool3d(2) floors odd sizes",
    inputs: [{ shape: [2, 3, 5, 6, 7] }],
    gpu: ([x]) => ops.avgPool3d(x, 2),
    ref: ([x]) => R.avgPool3dRef(x, 2),
  },
  {
    name: "avgPool3d([1, 2, 3]) anisotropic, batch 3",
    inputs: [{ shape: [3, 2, 3, 5, 7] }],
    gpu: ([x]) => ops.avgPool3d(x, [1, 2, 3]),
    ref: ([x]) => R.avgPool3dRef(x, [1, 2, 3]),
  },
  {
    name: "maxPool3d(2) floors odd sizes",
    inputs: [{ shape: [1, 2, 5, 4, 7] }],
    gpu: ([x]) => ops.maxPool3d(x, 2),
    ref: ([x]) => R.maxPool3dRef(x, 2),
  },
  {
    name: "maxPool3d(3) at 2×5×7×9×11",
    inputs: [{ shape: [2, 5, 7, 9, 11] }],
    gpu: ([x]) => ops.maxPool3d(x, 3),
    ref: ([x]) => R.maxPool3dRef(x, 3),
    grad: false,
  },
  {
    name: "globalAvgPool() over D·H·W",
    inputs: [{ shape: [2, 3, 4, 5, 6] }],
    gpu: ([x]) => ops.globalAvgPool(x),
    ref: ([x]) => R.globalAvgPoolRef(x),
  },
  {
    name: "globalAvgPool() with keepDims over a long row",
    inputs: [{ shape: [1, 2, 9001] }],
    gpu: ([x]) => ops.globalAvgPool(x, true),
    ref: ([x]) => R.globalAvgPoolRef(x, true),
    grad: false,
  },
];

for (const c of poolCases) {
  gpuTest(
    `${c.name} matches the reference${c.grad === false ? "" : " (values and gradients)"}`,
    () => checkOp(c),
  );
}

gpuTest("maxPool3d() sends the gradient of a tied window to its first element", async () => {
  const x = ops.ones([1, 1, 2, 2, 2], { requiresGrad: true });
  ops.scope(() => ops.backward(ops.sum(ops.maxPool3d(x, 2))));
  assertEquals([...await x.grad!.toArray()], [1, 0, 0, 0, 0, 0, 0, 0]);
  x.dispose();
});

gpuTest("pooling rejects bad arguments", () => {
  ops.scope(() => {
    const x = ops.zeros([1, 2, 4, 4, 4]);
    assertThrows(() => ops.avgPool3d(ops.zeros([2, 4, 4, 4]), 2), RangeError, "avgPool3d(): input must be");
    assertThrows(() => ops.maxPool3d(x, [2, 2]), RangeError, "kernel must be");
  });
});

Deno.test({
  name: "pooling splits into chunks when tensors exceed the binding limit",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withSmallBindings(2048, async () => {
      const chunked: OpCase[] = [
        {
          name: "avgPool3d chunked",
          inputs: [{ shape: [2, 3, 5, 6, 7] }],
          gpu: ([x]) => ops.avgPool3d(x, [2, 2, 3]),
          ref: ([x]) => R.avgPool3dRef(x, [2, 2, 3]),
        },
        {
          name: "maxPool3d chunked",
          inputs: [{ shape: [2, 3, 5, 6, 7] }],
          gpu: ([x]) => ops.maxPool3d(x, 2),
          ref: ([x]) => R.maxPool3dRef(x, 2),
        },
        {
          name: "globalAvgPool chunked",
          inputs: [{ shape: [2, 3, 9, 11] }],
          gpu: ([x]) => ops.globalAvgPool(x),
          ref: ([x]) => R.globalAvgPoolRef(x),
        },
      ];
      for (const c of chunked) await checkOpDirect(c);
    }),
});
