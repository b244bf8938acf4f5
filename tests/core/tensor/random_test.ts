import { assert, assertEquals, assertNotEquals } from "../../assert.ts";
import { Generator, scope } from "../../../core/tensor/mod.ts";
import { philox4x32, philoxNormal, philoxUniform } from "../../../core/tensor/reference/philox.ts";
import { assertClose, gpuTest } from "../../helpers.ts";

Deno.test("philox4x32() matches the Random123 known-answer vectors", () => {
  const hex = (xs: number[]) => xs.map((x) => x.toString(16).padStart(8, "0"));
  assertEquals(hex(philox4x32([0, 0, 0, 0], [0, 0])), ["6627e8d5", "e169c58d", "bc57ac4c", "9b00dbd8"]);
  assertEquals(
    hex(philox4x32([0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff])),
    ["408f276d", "41c83b0e", "a20bc7c6", "6d5451fd"],
  );
  assertEquals(
    hex(philox4x32([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0])),
    ["d16cfe09", "94fdcceb", "5001e420", "24126ea1"],
  );
});

gpuTest("Generator.uniform() reproduces the CPU Philox stream", async () => {
  const g = new Generator(1234);
  const [a, b] = scope(() => [g.uniform([1001], -2, 3), g.uniform([7])]);
  assertClose(await a.toFloat64(), philoxUniform(1234, 0, 1001, -2, 3), { rtol: 0, atol: 5e-7 });
  assertClose(await b.toFloat64(), philoxUniform(1234, Math.ceil(1001 / 4), 7), { rtol: 0, atol: 1e-7 });
  a.dispose();
  b.dispose();
});

gpuTest("Generator.normal() matches Box–Muller on the same stream", async () => {
  const g = new Generator(99);
  const x = g.normal([4099], 1, 2);
  const values = await x.toFloat64();
  assertClose(values, philoxNormal(99, 0, 4099, 1, 2), { rtol: 1e-4, atol: 1e-4 });
  const m = values.reduce((s, v) => s + v, 0) / values.length;
  const sd = Math.sqrt(values.reduce((s, v) => s + (v - m) ** 2, 0) / values.length);
  assert(Math.abs(m - 1) < 0.1 && Math.abs(sd - 2) < 0.1, `mean ${m}, std ${sd}`);
  x.dispose();
});

gpuTest("Generator.bernoulli() is exact against the CPU stream", async () => {
  const g = new Generator(7);
  const mask = g.bernoulli([513], 0.3, "u32");
  const expected = philoxUniform(7, 0, 513).map((u) => +(u < 0.3));
  assertEquals([...await mask.toArray()], [...expected]);
  mask.dispose();
});

gpuTest("the same seed gives the same numbers; the state resumes a stream", async () => {
  const a = new Generator(5);
  const b = new Generator(5);
  const x = a.normal([64]);
  const y = b.normal([64]);
  assertEquals([...await x.toArray()], [...await y.toArray()]);
  const saved = a.state;
  const next = a.uniform([10]);
  const c = new Generator(0);
  c.state = saved;
  const again = c.uniform([10]);
  assertEquals([...await next.toArray()], [...await again.toArray()]);
  const other = new Generator(6).normal([64]);
  assertNotEquals([...await other.toArray()], [...await x.toArray()]);
  for (const t of [x, y, next, again, other]) t.dispose();
});
