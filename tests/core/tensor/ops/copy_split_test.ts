/**
 * The strided copies (permute, slice, pad, expand through the gather; concat through the scatter) above the
 * binding limit (forced to 2,048 bytes): they split into runs of rows (or binding-sized pieces of a longer
 * row) and match the float64 CPU reference, forward and backward; a copy whose single row spans more than a
 * binding raises a BindingTooLargeError naming the op. `stridedSpan` is checked against brute force.
 */
import { BindingTooLargeError } from "../../../../core/gpu/mod.ts";
import * as ops from "../../../../core/tensor/mod.ts";
import * as R from "../../../../core/tensor/reference/ops.ts";
import { stridedSpan } from "../../../../kernels/mod.ts";
import { assert, assertEquals, assertThrows } from "../../../assert.ts";
import { checkOpDirect, withSmallBindings } from "../../../chunked_harness.ts";
import { assertClose, halfValues, lacksGpuFeatures, randomArray, seededRandom } from "../../../helpers.ts";
import type { OpCase } from "../../../op_harness.ts";

Deno.test("stridedSpan matches the brute-force least and greatest element of every range", () => {
  const next = seededRandom(31);
  const int = (n: number) => Math.floor(next() * n);
  for (let t = 0; t < 200; t++) {
    const rank = 1 + int(4);
    const inShape = Array.from({ length: rank }, () => 1 + int(4));
    const padBefore = inShape.map(() => (t % 2 ? int(3) : 0));
    const shape = inShape.map((n, d) => n + padBefore[d] + (t % 2 ? int(3) : 0));
    const strides = inShape.map(() => int(9));
    const offset = int(5);
    const g = { shape, inShape, strides, padBefore, offset };
    const n = shape.reduce((a, b) => a * b, 1);
    const lo = int(n);
    const hi = lo + 1 + int(n - lo);
    let min = Infinity;
    let max = -Infinity;
    for (let i = lo; i < hi; i++) {
      let rem = i;
      let off = offset;
      let inside = true;
      for (let d = rank - 1; d >= 0; d--) {
        const c = (rem % shape[d]) - padBefore[d];
        rem = Math.floor(rem / shape[d]);
        inside &&= c >= 0 && c < inShape[d];
        off += c * strides[d];
      }
      if (inside) [min, max] = [Math.min(min, off), Math.max(max, off)];
    }
    const expected = min <= max ? [min, max + 1] : undefined;
    assertEquals(stridedSpan(g, lo, hi), expected, `case ${t}: ${JSON.stringify({ ...g, lo, hi })}`);
  }
});

const cases: OpCase[] = [
  {
    // output rows of 40 read source elements 7 apart (a 1,096-byte span)
    name: "permute [3, 40, 7] → [3, 7, 40]",
    inputs: [{ shape: [3, 40, 7] }],
    gpu: ([x]) => ops.permute(x, [0, 2, 1]),
    ref: ([x]) => R.permuteRef(x, [0, 2, 1]),
  },
  {
    // windows start off the alignment on both sides; the backward is a split pad
    name: "slice [6, 50, 5] at [1, 3, 1]..[5, 47, 4]",
    inputs: [{ shape: [6, 50, 5] }],
    gpu: ([x]) => ops.slice(x, [1, 3, 1], [5, 47, 4]),
    ref: ([x]) => R.sliceRef(x, [1, 3, 1], [5, 47, 4]),
  },
  {
    // rows of 1,097 elements (4,388 bytes): each row is cut into binding-sized pieces
    name: "slice rows above a binding [2, 1200] at [0, 3]..[2, 1100]",
    inputs: [{ shape: [2, 1200] }],
    gpu: ([x]) => ops.slice(x, [0, 3], [2, 1100]),
    ref: ([x]) => R.sliceRef(x, [0, 3], [2, 1100]),
  },
  {
    name: "pad [4, 30, 9] by [1, 2], [0, 3], [2, 1] with 0.5",
    inputs: [{ shape: [4, 30, 9] }],
    gpu: ([x]) => ops.pad(x, [[1, 2], [0, 3], [2, 1]], 0.5),
    ref: ([x]) => R.padRef(x, [[1, 2], [0, 3], [2, 1]], 0.5),
  },
  {
    name: "expand [1, 30, 1] → [4, 30, 9]",
    inputs: [{ shape: [1, 30, 1] }],
    gpu: ([x]) => ops.expand(x, [4, 30, 9]),
    ref: ([x]) => R.expandRef(x, [4, 30, 9]),
  },
  {
    // the scatter writes each input into its region of the output; the backward slices it back
    name: "concat [2, 30, 9] and [2, 17, 9] along axis 1",
    inputs: [{ shape: [2, 30, 9] }, { shape: [2, 17, 9] }],
    gpu: (xs) => ops.concat(xs, 1),
    ref: (xs) => R.concatRef(xs, 1),
  },
  {
    // source rows above a binding: the scatter cuts each into pieces, the second input starts unaligned
    name: "concat [1, 700] and [1, 601] along axis 1",
    inputs: [{ shape: [1, 700] }, { shape: [1, 601] }],
    gpu: (xs) => ops.concat(xs, 1),
    ref: (xs) => R.concatRef(xs, 1),
  },
];

Deno.test({
  name: "strided copies split above the binding limit and match the float64 reference, forward and backward",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withSmallBindings(2048, async (gpu) => {
      let seed = 900;
      for (const c of cases) await checkOpDirect(c, seed += 10);

      // the split really happens: several dispatches for one permute and one concat
      const x = ops.tensor(Float32Array.from({ length: 840 }, (_, i) => i), [3, 40, 7]);
      let before = gpu.counters.dispatches;
      const y = ops.permute(x, [0, 2, 1]);
      assert(gpu.counters.dispatches - before > 1, "permute: expected several dispatches");
      before = gpu.counters.dispatches;
      const z = ops.concat([x, x], 0);
      assert(gpu.counters.dispatches - before > 2, "concat: expected several dispatches per input");

      // one output row of the transpose [2, 600] → [600, 2] reads elements 600 apart: no 2D tiling
      const wide = ops.tensor(Float32Array.from({ length: 1200 }, (_, i) => i), [2, 600]);
      const err = assertThrows(() => ops.permute(wide, [1, 0]), BindingTooLargeError, "permute");
      assert(err.message.includes("maxStorageBufferBindingSize"), err.message);
      for (const t of [x, y, z, wide]) t.dispose();
    }),
});

const f16Name =
  "f16 slice and concat split above the binding limit (2-byte elements) and match the reference";
Deno.test({
  name: f16Name,
  ignore: lacksGpuFeatures(f16Name, ["shader-f16"]),
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withSmallBindings(2048, async () => {
      // exact in f16: the copies move values, so the reference is the f16-rounded input moved in float64
      const a = { shape: [3, 700], data: halfValues(randomArray(2100, 77)) };
      const b = { shape: [3, 301], data: halfValues(randomArray(903, 78)) };
      const ta = ops.cast(ops.tensor(Float32Array.from(a.data), a.shape), "f16");
      const tb = ops.cast(ops.tensor(Float32Array.from(b.data), b.shape), "f16");
      const s = ops.slice(ta, [1, 5], [3, 699]);
      assertClose(await s.toFloat64(), R.sliceRef(a, [1, 5], [3, 699]).data, {
        rtol: 0,
        atol: 0,
        label: "slice",
      });
      const c = ops.concat([ta, tb], 1);
      assertClose(await c.toFloat64(), R.concatRef([a, b], 1).data, { rtol: 0, atol: 0, label: "concat" });
      for (const t of [ta, tb, s, c]) t.dispose();
    }),
});
