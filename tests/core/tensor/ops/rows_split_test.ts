/**
 * Softmax rows, Philox draws and batched matmuls above the binding limit (forced to 2,048 bytes): the launch
 * planner splits them into windows of whole rows, blocks or batches, and they match the float64 reference
 * (the CPU Philox stream bit for bit).
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

Deno.test({
  name:
    "batched matmul splits above the binding limit by batches, broadcast and transposed operands included",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withSmallBindings(2048, async (gpu) => {
      const cases: { a: number[]; b: number[]; ta?: boolean; tb?: boolean }[] = [
        { a: [8, 10, 12], b: [8, 12, 16] }, // 3,840 + 6,144 + 5,120 bytes: vec4 loads
        { a: [12, 7, 9], b: [9, 5] }, // B broadcast over the batch; scalar loads
        { a: [5, 12, 10], b: [5, 16, 12], ta: true, tb: true },
      ];
      let seed = 500;
      for (const c of cases) {
        const ha = randomArray(c.a.reduce((x, y) => x * y, 1), seed++);
        const hb = randomArray(c.b.reduce((x, y) => x * y, 1), seed++);
        const a = ops.tensor(Float32Array.from(ha), c.a);
        const b = ops.tensor(Float32Array.from(hb), c.b);
        const before = gpu.counters.dispatches;
        const y = ops.matmul(a, b, { transposeA: c.ta, transposeB: c.tb });
        assert(gpu.counters.dispatches - before > 1, `${c.a} · ${c.b}: expected several windows`);
        const want = R.matmulRef(
          { shape: c.a, data: Float64Array.from(ha) },
          { shape: c.b, data: Float64Array.from(hb) },
          c.ta,
          c.tb,
        );
        assertClose(await y.toFloat64(), want.data, { rtol: 1e-5, atol: 1e-5, label: `${c.a} · ${c.b}` });
        for (const t of [a, b, y]) t.dispose();
      }
    }),
});
