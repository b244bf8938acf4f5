import { assert, assertEquals, assertThrows } from "../../assert.ts";
import { createGpu } from "../../../core/gpu/mod.ts";
import {
  add,
  createArena,
  full,
  Generator,
  mul,
  planArena,
  reshape,
  scope,
  sum,
  tensor,
  zeros,
} from "../../../core/tensor/mod.ts";
import { gpuTest } from "../../helpers.ts";

const roundTripValues = [1.5, -2.25, 3, 65504]; // exact in f16 too

gpuTest("tensor() round-trips f32, i32 and u32 host data", async () => {
  const values = roundTripValues;
  for (const dtype of ["f32", "i32", "u32"] as const) {
    const host = dtype === "u32"
      ? values.map(Math.abs).map(Math.floor)
      : dtype === "i32"
      ? values.map(Math.trunc)
      : values;
    const t = tensor(host, [2, 2], { dtype });
    assertEquals([...await t.toArray()], host, dtype);
    t.dispose();
  }
});

gpuTest("tensor() round-trips f16 host data", { requires: ["shader-f16"] }, async () => {
  const t = tensor(roundTripValues, [2, 2], { dtype: "f16" });
  assertEquals([...await t.toArray()], roundTripValues);
  t.dispose();
});

gpuTest("reshape() is a view: no copy, storage freed with the last view", async (gpu) => {
  await gpu.sync();
  const before = gpu.pool.stats().bytesInUse;
  const x = tensor([1, 2, 3, 4, 5, 6], [2, 3]);
  const y = reshape(x, [3, 2]);
  assertEquals(gpu.pool.stats().bytesInUse - before, x.buffer.size);
  x.dispose();
  assertEquals([...await y.toArray()], [1, 2, 3, 4, 5, 6]);
  y.dispose();
  assertEquals(gpu.pool.stats().bytesInUse, before);
});

gpuTest("a disposed tensor says so when used", () => {
  const x = zeros([3]);
  x.dispose();
  assertThrows(() => x.binding, Error, "disposed");
});

gpuTest("tensor() rejects values that do not fill the shape", () => {
  assertThrows(() => tensor([1, 2, 3], [2, 2]), RangeError, "do not fill shape [2,2]");
});

gpuTest("sum() over 4M elements stays accurate (compensated, chunked)", async () => {
  const n = 4_000_003;
  const g = new Generator(3);
  const x = g.uniform([n], 0.1, 0.1000001); // a naive f32 running sum drifts by ~1e-3 here
  const total = scope(() => sum(x));
  const values = await x.toFloat64();
  let exact = 0;
  for (const v of values) exact += v;
  const got = await total.item();
  assert(Math.abs(got - exact) / exact < 2e-6, `sum ${got} vs ${exact}`);
  x.dispose();
  total.dispose();
});

Deno.test({
  name: "f16 tensors on a device without shader-f16 fail with a clear message",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const gpu = await createGpu({ disableFeatures: ["shader-f16"] });
    try {
      assertThrows(() => tensor([1], [1], { dtype: "f16", gpu }), TypeError, "shader-f16");
    } finally {
      gpu.destroy();
    }
  },
});

Deno.test({
  name: "elementwise ops split tensors above the binding limit into chunks",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const gpu = await createGpu({ maxStorageBindingBytes: 4096 }); // 1,024 f32 per binding
    try {
      const n = 5000;
      const a = Float32Array.from({ length: n }, (_, i) => Math.sin(i));
      const b = Float32Array.from({ length: n }, (_, i) => Math.cos(i * 0.5));
      const [x, y] = [tensor(a, [5, 1000], { gpu }), tensor(b, [5, 1000], { gpu })];
      const s = tensor([0.25], [1], { gpu });
      const out = scope(() => mul(add(x, y), s));
      const got = await out.toArray();
      for (let i = 0; i < n; i += 97) {
        assert(Math.abs(got[i] - Math.fround(Math.fround(a[i] + b[i]) * 0.25)) < 1e-6, `element ${i}`);
      }
      const column = tensor([1, 2, 3, 4, 5], [5, 1], { gpu });
      // a per-row broadcast above the limit splits too (it used to be refused)
      const rows = await scope(() => add(x, column)).toArray();
      for (let i = 0; i < n; i += 97) {
        assert(rows[i] === Math.fround(a[i] + (Math.floor(i / 1000) + 1)), `broadcast element ${i}`);
      }
    } finally {
      gpu.destroy();
    }
  },
});

Deno.test({
  name: "createArena() zero-fills recycled memory above the binding limit, chunk by chunk",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const gpu = await createGpu({ maxStorageBindingBytes: 4096 });
    try {
      const shapes = [[50, 60], [7], [30, 31]]; // 3,937 floats: more than 1,024 per binding
      const layout = planArena(shapes, "f32", gpu.limits.minStorageBufferOffsetAlignment);
      const dirty = full([layout.length], 3, { gpu }); // the pool hands this buffer back below
      dirty.dispose();
      const arena = createArena(gpu, layout, "f32");
      assert((await arena.whole.toArray()).every((v) => v === 0), "every word zeroed");
      arena.parts[2].write(new Float32Array(30 * 31).fill(5));
      assertEquals((await arena.parts[2].toArray())[929], 5);
      assertEquals((await arena.parts[0].toArray())[2999], 0);
    } finally {
      gpu.destroy();
    }
  },
});
