/** interpolate() (nearest, trilinear) against the float64 reference (values and gradients), chunked path. */
import * as ops from "../../../../core/tensor/mod.ts";
import * as R from "../../../../core/tensor/reference/pool.ts";
import { assertThrows } from "../../../assert.ts";
import { checkOp, type OpCase } from "../../../op_harness.ts";
import { gpuTest } from "../../../helpers.ts";
import { checkOpDirect, withSmallBindings } from "../../../chunked_harness.ts";

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

for (const c of resampleCases) {
  gpuTest(
    `${c.name} matches the reference${c.grad === false ? "" : " (values and gradients)"}`,
    () => checkOp(c),
  );
}

gpuTest("interpolate() rejects bad sizes and alignCorners with nearest", () => {
  ops.scope(() => {
    const x = ops.zeros([1, 2, 4, 4, 4]);
    assertThrows(() => ops.interpolate(x, { size: [3, 3] }), RangeError, "one positive size per spatial dim");
    assertThrows(
      () => ops.interpolate(x, { size: [3, 3, 3], alignCorners: true }),
      RangeError,
      "alignCorners applies to linear modes only",
    );
  });
});

Deno.test({
  name: "interpolate() splits into chunks when tensors exceed the binding limit",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withSmallBindings(2048, async () => {
      const chunked: OpCase[] = [
        resize("interpolate trilinear up chunked", [2, 2, 3, 5, 4], [7, 6, 9], "linear"),
        resize("interpolate trilinear down chunked", [2, 2, 9, 8, 7], [4, 5, 3], "linear", true),
        resize("interpolate nearest chunked", [2, 2, 5, 6, 7], [9, 4, 8], "nearest"),
      ];
      for (const c of chunked) await checkOpDirect(c);
    }),
});
