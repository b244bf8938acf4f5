/**
 * Reductions above the binding limit (forced to 2,048 bytes): the launch planner splits them, by windows of
 * whole rows, or (value reductions) by blocks of the reduced axis into f32 partials when one row is too large, and the results
 * match the float64 reference; runs too long for half a binding are refused, naming the reduction.
 */
import * as ops from "../../../../core/tensor/mod.ts";
import * as R from "../../../../core/tensor/reference/ops.ts";
import { BindingTooLargeError } from "../../../../core/gpu/mod.ts";
import { assert, assertThrows } from "../../../assert.ts";
import { withSmallBindings } from "../../../chunked_harness.ts";
import { assertClose, randomArray } from "../../../helpers.ts";

Deno.test({
  name:
    "sum, mean, max, min, argmax and argmin split above the binding limit and match the float64 reference",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withSmallBindings(2048, async (gpu) => {
      type Case = {
        name: string;
        shape: number[];
        gpu: (x: ops.Tensor) => ops.Tensor;
        ref: (x: R.RefTensor) => R.RefTensor;
      };
      const cases: Case[] = [
        // rows fit a binding: windows over whole rows (inner > 1, and rows of the row kernel)
        { name: "sum axis 1", shape: [6, 100, 2], gpu: (x) => ops.sum(x, 1), ref: (x) => R.sumRef(x, 1) },
        { name: "sum axis 2", shape: [30, 4, 25], gpu: (x) => ops.sum(x, 2), ref: (x) => R.sumRef(x, 2) },
        // one row does not: blocks of the reduced axis into partials, then the partials
        {
          name: "sum axis 1, long",
          shape: [5, 300, 2],
          gpu: (x) => ops.sum(x, 1),
          ref: (x) => R.sumRef(x, 1),
        },
        { name: "sum all", shape: [3, 700], gpu: (x) => ops.sum(x), ref: (x) => R.sumRef(x) },
        { name: "mean axis 0", shape: [40, 50], gpu: (x) => ops.mean(x, 0), ref: (x) => R.meanRef(x, 0) },
        { name: "max axis 0", shape: [40, 50], gpu: (x) => ops.max(x, 0), ref: (x) => R.maxRef(x, 0) },
        { name: "min all", shape: [1300], gpu: (x) => ops.min(x), ref: (x) => R.minRef(x) },
        // arg-reductions: windows of whole rows
        {
          name: "argmax axis 1",
          shape: [6, 100, 2],
          gpu: (x) => ops.cast(ops.argmax(x, 1), "f32"),
          ref: (x) => R.argRef("argmax", x, 1),
        },
        {
          name: "argmin axis 1",
          shape: [60, 25],
          gpu: (x) => ops.cast(ops.argmin(x, 1), "f32"),
          ref: (x) => R.argRef("argmin", x, 1),
        },
      ];
      let seed = 300;
      for (const c of cases) {
        const data = randomArray(c.shape.reduce((a, b) => a * b, 1), seed++, -2, 2);
        const x = ops.tensor(Float32Array.from(data), c.shape);
        const before = gpu.counters.dispatches;
        const y = c.gpu(x);
        assert(gpu.counters.dispatches - before > 2, `${c.name}: expected a split into several dispatches`);
        const want = c.ref({ shape: c.shape, data: Float64Array.from(data) });
        assertClose(await y.toFloat64(), want.data, { rtol: 1e-5, atol: 1e-5, label: c.name });
        x.dispose();
        y.dispose();
      }
      // runs of 600 f32 elements (2,400 bytes) cannot be bound at all
      const wide = ops.tensor(Float32Array.from(randomArray(1200, 9)), [2, 600]);
      assertThrows(() => ops.sum(wide, 0), BindingTooLargeError, "reduce_sum");
      wide.dispose();
    }),
});
