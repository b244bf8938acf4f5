/**
 * Softmax rows and Philox draws above the binding limit (forced to 2,048 bytes): the launch planner writes
 * them window by window, and they match the float64 reference and the CPU Philox stream bit for bit.
 */
import * as ops from "../../../../core/tensor/mod.ts";
import * as R from "../../../../core/tensor/reference/ops.ts";
import { philoxUniform } from "../../../../core/tensor/reference/philox.ts";
import { assert, assertEquals } from "../../../assert.ts";
import { withSmallBindings } from "../../../chunked_harness.ts";
import { assertClose, randomArray } from "../../../helpers.ts";

Deno.test({
  name: "softmax, logSoftmax and Philox draws split above the binding limit and match their references",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withSmallBindings(2048, async (gpu) => {
      const data = randomArray(20 * 50, 41, -3, 3);
      const x = ops.tensor(Float32Array.from(data), [20, 50]);
      const ref = { shape: [20, 50], data: Float64Array.from(data) };
      for (const log of [false, true]) {
        const before = gpu.counters.dispatches;
        const y = log ? ops.logSoftmax(x, -1) : ops.softmax(x, -1);
        assert(gpu.counters.dispatches - before > 1, "expected several windows");
        assertClose(await y.toFloat64(), R.softmaxRef(ref, -1, log).data, { rtol: 1e-5, atol: 1e-6 });
        y.dispose();
      }
      x.dispose();
      // 1,001 f32 values (4,004 bytes) and a 2,000-element u32 mask, each in several windows
      const g = new ops.Generator(1234);
      const before = gpu.counters.dispatches;
      const u = g.uniform([1001], -2, 3);
      assert(gpu.counters.dispatches - before > 1, "expected several windows");
      assertClose(await u.toFloat64(), philoxUniform(1234, 0, 1001, -2, 3), { rtol: 0, atol: 5e-7 });
      const mask = g.bernoulli([2000], 0.3, "u32");
      const expected = philoxUniform(1234, Math.ceil(1001 / 4), 2000).map((v) => +(v < 0.3));
      assertEquals([...await mask.toArray()], [...expected]);
      u.dispose();
      mask.dispose();
    }),
});
