/**
 * Broadcasting elementwise ops above the binding limit (forced to 2,048 bytes): the launch planner splits
 * them along one axis, broadcast operands included, and the results match a float64 CPU reference.
 */
import * as ops from "../../../../core/tensor/mod.ts";
import { runElementwise } from "../../../../kernels/mod.ts";
import { assert } from "../../../assert.ts";
import { withSmallBindings } from "../../../chunked_harness.ts";
import { assertClose, randomArray } from "../../../helpers.ts";

/** Float64 reference: out[i] = f(inputs broadcast to `shape` at i), numpy broadcasting rules. */
function broadcastRef(
  shape: readonly number[],
  inputs: readonly { data: ArrayLike<number>; shape: readonly number[] }[],
  f: (...v: number[]) => number,
): Float64Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Float64Array(n);
  const index = new Array<number>(shape.length);
  for (let i = 0; i < n; i++) {
    let rem = i;
    for (let d = shape.length - 1; d >= 0; d--) {
      index[d] = rem % shape[d];
      rem = Math.floor(rem / shape[d]);
    }
    const values = inputs.map((x) => {
      const lead = shape.length - x.shape.length;
      let flat = 0;
      x.shape.forEach((size, d) => flat = flat * size + (size === 1 ? 0 : index[lead + d]));
      return x.data[flat];
    });
    out[i] = f(...values);
  }
  return out;
}

Deno.test({
  name: "broadcasting elementwise ops split above the binding limit and match the float64 reference",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withSmallBindings(2048, async (gpu) => {
      const cases = [
        // a SwiGLU-style bias add: [2, 40, 23] + [23] (7,360-byte output and input; rows off alignment)
        { name: "add bias", a: [2, 40, 23], b: [23], op: ops.add, f: (x: number, y: number) => x + y },
        // an outer product whose output alone exceeds the limit: [3, 1, 50] · [20, 1]
        { name: "mul outer", a: [3, 1, 50], b: [20, 1], op: ops.mul, f: (x: number, y: number) => x * y },
        // a big operand broadcast against a per-channel scale in the middle: [3, 7, 1] vs [3, 7, 45]
        { name: "sub channel", a: [3, 7, 1], b: [3, 7, 45], op: ops.sub, f: (x: number, y: number) => x - y },
        // rows of 2,040 bytes: each row's run fits a binding whole but the second starts off the offset
        // alignment, so it must still be bound through an aligned window
        {
          name: "add bias, rows at the limit",
          a: [2, 510],
          b: [510],
          op: ops.add,
          f: (x: number, y: number) => x + y,
        },
      ];
      let seed = 100;
      for (const c of cases) {
        const ha = randomArray(c.a.reduce((x, y) => x * y, 1), seed++);
        const hb = randomArray(c.b.reduce((x, y) => x * y, 1), seed++);
        const a = ops.tensor(Float32Array.from(ha), c.a);
        const b = ops.tensor(Float32Array.from(hb), c.b);
        const before = gpu.counters.dispatches;
        const y = c.op(a, b);
        assert(gpu.counters.dispatches - before > 1, `${c.name}: expected a split into several dispatches`);
        const expected = broadcastRef(y.shape, [{ data: ha, shape: c.a }, { data: hb, shape: c.b }], c.f);
        assert(y.byteLength > 2048, `${c.name}: the output must exceed the binding limit`);
        assertClose(await y.toFloat64(), expected, { rtol: 1e-6, atol: 1e-6, label: c.name });
        for (const t of [a, b, y]) t.dispose();
      }

      // u8 output through a broadcast (word-granular windows): clamp(x + bias) into bytes
      const shape = [2, 40, 24];
      const hx = randomArray(1920, 7, 0, 200);
      const hbias = randomArray(24, 8, 0, 50);
      const x = ops.tensor(Float32Array.from(hx), shape);
      const bias = ops.tensor(Float32Array.from(hbias), [24]);
      const out = ops.zeros(shape, { dtype: "u8" });
      runElementwise(
        gpu,
        { name: "bias_to_u8", expr: "a + b", inputs: ["f32", "f32"], output: "u8" },
        [{ binding: x.binding, strides: [960, 24, 1] }, { binding: bias.binding, strides: [0, 0, 1] }],
        out.binding,
        shape,
      );
      const f32 = (v: number) => Math.fround(v);
      const expected = broadcastRef(
        shape,
        [{ data: hx, shape }, { data: hbias, shape: [24] }],
        (u, v) => Math.min(255, Math.trunc(f32(f32(u) + f32(v)))),
      );
      assertClose(await out.toFloat64(), expected, { rtol: 0, atol: 0, label: "u8 output" });
      for (const t of [x, bias, out]) t.dispose();
    }),
});
