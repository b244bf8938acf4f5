/** Pooling and resampling ops against the float64 reference (values and gradients), chunked path. */
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

type Mode = "nearest" | "linear";
const resize = (
  name: string,
  shape: number[],
  size: number[],
  mode: Mode,
  alignCorners?: boolean,
  grad = true,
): OpCase => ({
  name,
  inputs: [{ shape }],
  gpu: ([x]) => ops.interpolate(x, { size, mode, alignCorners }),
  ref: ([x]) => R.interpolateRef(x, size, mode, alignCorners),
  grad,
});

const resampleCases: OpCase[] = [
  resize("interpolate() nearest up to odd sizes", [2, 3, 3, 4, 5], [5, 7, 9], "nearest"),
  resize("interpolate() nearest down", [1, 2, 9, 8, 7], [4, 3, 5], "nearest"),
  resize("interpolate() nearest ×2", [1, 3, 2, 3, 4], [4, 6, 8], "nearest"),
  resize("interpolate() trilinear up", [2, 3, 3, 4, 5], [6, 7, 9], "linear"),
  resize("interpolate() trilinear down", [1, 2, 7, 9, 11], [2, 3, 4], "linear"),
  resize("interpolate() trilinear up with alignCorners", [1, 2, 3, 4, 5], [5, 7, 8], "linear", true),
  resize("interpolate() trilinear down with alignCorners", [3, 1, 9, 7, 6], [4, 3, 5], "linear", true),
  resize("interpolate() bilinear on NCHW", [2, 3, 5, 6], [7, 4], "linear"),
  resize("interpolate() linear on NCL to size 1 with alignCorners", [2, 3, 5], [1], "linear", true),
  resize(
    "interpolate() trilinear at 2×5×7×9×11 → 10×8×13",
    [2, 5, 7, 9, 11],
    [10, 8, 13],
    "linear",
    false,
    false,
  ),
];

for (const c of [...poolCases, ...resampleCases]) {
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

gpuTest("pooling and interpolate reject bad arguments", () => {
  ops.scope(() => {
    const x = ops.zeros([1, 2, 4, 4, 4]);
    assertThrows(() => ops.avgPool3d(ops.zeros([2, 4, 4, 4]), 2), RangeError, "avgPool3d(): input must be");
    assertThrows(() => ops.maxPool3d(x, [2, 2]), RangeError, "kernel must be");
    assertThrows(() => ops.interpolate(x, { size: [3, 3] }), RangeError, "one positive size per spatial dim");
    assertThrows(
      () => ops.interpolate(x, { size: [3, 3, 3], alignCorners: true }),
      RangeError,
      "alignCorners applies to linear modes only",
    );
  });
});

Deno.test({
  name: "pooling and interpolate split into chunks when tensors exceed the binding limit",
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
        resize("interpolate trilinear up chunked", [2, 2, 3, 5, 4], [7, 6, 9], "linear"),
        resize("interpolate trilinear down chunked", [2, 2, 9, 8, 7], [4, 5, 3], "linear", true),
        resize("interpolate nearest chunked", [2, 2, 5, 6, 7], [9, 4, 8], "nearest"),
      ];
      for (const c of chunked) await checkOpDirect(c);
    }),
});
