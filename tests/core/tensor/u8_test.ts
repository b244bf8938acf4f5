/** u8 tensors: compact masks, packed 4 per word on the GPU (core/tensor/dtype.ts, kernels/elementwise.ts). */
import { assert, assertEquals, assertThrows } from "../../assert.ts";
import { sizeClass } from "../../../core/gpu/mod.ts";
import {
  add,
  argmax,
  cast,
  clone,
  concat,
  createArena,
  eq,
  exp,
  expand,
  full,
  max,
  mean,
  mseLoss,
  mul,
  pad,
  permute,
  planArena,
  reshape,
  scope,
  slice,
  softmax,
  sum,
  type Tensor,
  tensor,
  toHostArray,
  where,
  zeros,
} from "../../../core/tensor/mod.ts";
import { runElementwise } from "../../../kernels/mod.ts";
import { withSmallBindings } from "../../chunked_harness.ts";
import { gpuTest, seededRandom } from "../../helpers.ts";

/** `n` random bytes that include 0, 1 and 255. */
function randomBytes(n: number, seed: number): Uint8Array {
  const next = seededRandom(seed);
  const out = Uint8Array.from({ length: n }, () => Math.floor(next() * 256));
  [0, 1, 255].forEach((v, k) => k < n && (out[(k * 7) % n] = v));
  return out;
}

const LENGTHS = [1, 3, 5, 8, 1001];

gpuTest("u8 tensors round-trip host bytes exactly, one byte per element", async () => {
  for (const n of LENGTHS) {
    const host = randomBytes(n, n);
    const t = tensor(host, [n], { dtype: "u8" });
    assertEquals(t.byteLength, n);
    const back = await t.toArray();
    assert(back instanceof Uint8Array, "toArray() gives a Uint8Array");
    assertEquals(back.length, n);
    assertEquals([...back], [...host], `n = ${n}`);
    const again = randomBytes(n, n + 100);
    t.write(again); // partial last word: padded on upload
    assertEquals([...await t.toArray()], [...again], `write, n = ${n}`);
    t.dispose();
  }
  const big = randomBytes(13, 5);
  const sub = tensor(big.subarray(1, 10), [9], { dtype: "u8" }); // a view at an odd byte offset
  assertEquals([...await sub.toArray()], [...big.subarray(1, 10)]);
  sub.dispose();
  const fromNumbers = tensor([0, 1, 2, 255, 7, 9], [2, 3], { dtype: "u8" });
  assertEquals([...await fromNumbers.toArray()], [0, 1, 2, 255, 7, 9]);
  assertEquals(await reshape(fromNumbers, [6]).toFloat64(), Float64Array.from([0, 1, 2, 255, 7, 9]));
  assertEquals(await tensor([200], [], { dtype: "u8" }).item(), 200);
  fromNumbers.dispose();
});

gpuTest("u8 host values outside 0..255 or not integers are refused, not wrapped", () => {
  for (const bad of [-1, 256, 1.5, NaN, Infinity]) {
    assertThrows(() => toHostArray("u8", [0, bad]), RangeError, `value 1 is ${bad}`);
    assertThrows(() => tensor([bad], [1], { dtype: "u8" }), RangeError, "integers in 0..255");
  }
  const t = zeros([2], { dtype: "u8" });
  assertThrows(() => t.write([3, 300]), RangeError, "0..255");
  assertThrows(() => full([2], -1, { dtype: "u8" }), RangeError, "0..255");
  t.dispose();
  const host = Uint8Array.of(1, 2);
  assert(toHostArray("u8", host) === host, "a Uint8Array is taken without a copy");
});

gpuTest("full() and zeros() fill u8 tensors byte by byte", async () => {
  for (const n of [1, 3, 6]) {
    const t = full([n], 171, { dtype: "u8" });
    assertEquals([...await t.toArray()], new Array(n).fill(171));
    t.dispose();
  }
  const z = zeros([5], { dtype: "u8" });
  assertEquals([...await z.toArray()], [0, 0, 0, 0, 0]);
  z.dispose();
});

gpuTest("cast() from u8 to f32, i32, u32 and f16 gives the host values", async (gpu) => {
  for (const n of LENGTHS) {
    const host = randomBytes(n, 3 * n);
    const x = tensor(host, [n], { dtype: "u8" });
    for (const dtype of ["f32", "i32", "u32", "f16"] as const) {
      if (dtype === "f16" && !gpu.hasF16) continue;
      const y = cast(x, dtype);
      assertEquals(y.dtype, dtype);
      assertEquals([...await y.toArray()], [...host], `${dtype}, n = ${n}`);
      y.dispose();
    }
    x.dispose();
  }
});

gpuTest("cast() reads a reshape view of a u8 tensor", async () => {
  const host = randomBytes(30, 9);
  const x = tensor(host, [30], { dtype: "u8" });
  const y = scope(() => cast(reshape(x, [2, 3, 5]), "f32"));
  assertEquals(y.shape, [2, 3, 5]);
  assertEquals([...await y.toArray()], [...host]);
  x.dispose();
  y.dispose();
});

/** Runs `out = cast(x)` through strided reads of the u8 tensor `x` (broadcast or permuted). */
function castStrided(x: Tensor, shape: number[], strides: number[]): Tensor {
  const out = zeros(shape, { dtype: "f32" });
  runElementwise(
    x.gpu,
    { name: "cast", expr: "a", inputs: ["u8"], output: "f32" },
    [{ binding: x.binding, strides }],
    out.binding,
    shape,
  );
  return out;
}

gpuTest("u8 inputs are read at the right byte through broadcast and permuted strides", async () => {
  // broadcast: x [3, 1, 5] read as [3, 4, 5]
  const host = randomBytes(15, 21);
  const x = tensor(host, [3, 1, 5], { dtype: "u8" });
  const b = castStrided(x, [3, 4, 5], [5, 0, 1]);
  const expected: number[] = [];
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 4; j++) for (let k = 0; k < 5; k++) expected.push(host[i * 5 + k]);
  }
  assertEquals([...await b.toArray()], expected);
  // transpose: x [3, 7] read as [7, 3]
  const h2 = randomBytes(21, 22);
  const x2 = tensor(h2, [3, 7], { dtype: "u8" });
  const t = castStrided(x2, [7, 3], [1, 7]);
  const transposed: number[] = [];
  for (let j = 0; j < 7; j++) for (let i = 0; i < 3; i++) transposed.push(h2[i * 7 + j]);
  assertEquals([...await t.toArray()], transposed);
  for (const u of [x, b, x2, t]) u.dispose();
});

gpuTest("u8 masks work as where() conditions and in comparisons, with broadcasting", async () => {
  const mask = Uint8Array.of(1, 0, 0, 3, 255); // [1, 5]
  const cond = tensor(mask, [1, 5], { dtype: "u8" });
  const a = tensor(Array.from({ length: 15 }, (_, i) => i + 1), [3, 5]);
  const zero = tensor([0], [1]);
  const y = where(cond, a, zero);
  const expected = Array.from({ length: 15 }, (_, i) => (mask[i % 5] !== 0 ? i + 1 : 0));
  assertEquals([...await y.toArray()], expected);
  const labels = tensor([0, 1, 2, 1, 0, 2], [2, 3], { dtype: "u8" });
  const one = tensor([1], [1], { dtype: "u8" });
  const isOne = eq(labels, one);
  assertEquals(isOne.dtype, "u32");
  assertEquals([...await isOne.toArray()], [0, 1, 0, 1, 0, 0]);
  for (const t of [cond, a, zero, y, labels, one, isOne]) t.dispose();
});

gpuTest(
  "cast() into u8 clamps to 0..255 and truncates toward zero; the last word is padded with 0",
  async (gpu) => {
    const f = tensor([-3, 0, 0.5, 1, 2.7, 254.9, 255, 300, -0.5], [9]);
    const u = cast(f, "u8");
    assertEquals(u.dtype, "u8");
    assertEquals([...await u.toArray()], [0, 0, 0, 1, 2, 254, 255, 255, 0]);
    const raw = new Uint8Array(await gpu.read(u.buffer, u.byteOffset, 12));
    assertEquals([...raw.subarray(9)], [0, 0, 0]);
    const i = tensor([-5, 7, 1000], [3], { dtype: "i32" });
    const ui = cast(i, "u8");
    assertEquals([...await ui.toArray()], [0, 7, 255]);
    const w = tensor([4294967295, 3], [2], { dtype: "u32" });
    const uw = cast(w, "u8");
    assertEquals([...await uw.toArray()], [255, 3]);
    for (const n of LENGTHS) {
      const host = randomBytes(n, 5 * n);
      const asF32 = tensor(host, [n]);
      const back = cast(asF32, "u8");
      assertEquals([...await back.toArray()], [...host], `f32 → u8, n = ${n}`);
      const copy = clone(back);
      assertEquals([...await copy.toArray()], [...host], `clone, n = ${n}`);
      for (const t of [asF32, back, copy]) t.dispose();
    }
    for (const t of [f, u, i, ui, w, uw]) t.dispose();
  },
);

gpuTest("ops that cannot handle packed u8 refuse it with a clear TypeError", async (gpu) => {
  const x = tensor([1, 2, 3, 4, 5, 6], [2, 3], { dtype: "u8" });
  const y = tensor([1, 0, 1, 0, 1, 0], [2, 3], { dtype: "u8" });
  const f = tensor([1, 2, 3, 4, 5, 6], [2, 3]);
  await gpu.sync();
  const before = gpu.pool.stats().bytesInUse;
  const refused: [string, () => unknown][] = [
    ["permute", () => permute(x, [1, 0])],
    ["slice", () => slice(x, [0, 1], [2, 3])],
    ["pad", () => pad(x, [[1, 1]])],
    ["expand", () => expand(reshape(x, [1, 6]), [2, 6])],
    ["concat", () => concat([x, y], 0)],
    ["sum", () => sum(x)],
    ["mean", () => mean(x, 1)],
    ["max", () => max(x)],
    ["argmax", () => argmax(x, 1)],
    ["add", () => add(x, y)],
    ["mul", () => mul(x, y)],
    ["exp", () => exp(x)],
    ["where", () => where(y, x, x)],
    ["mseLoss", () => mseLoss(f, f, { mask: y })],
  ];
  for (const [op, run] of refused) {
    assertThrows(() => scope(run), TypeError, `${op}() does not take u8 tensors`);
  }
  assertThrows(() => scope(() => permute(x, [1, 0])), TypeError, "cast to another dtype with cast()");
  assertThrows(() => softmax(x), TypeError, "needs a float tensor");
  assertEquals(gpu.pool.stats().bytesInUse, before, "refused ops allocate nothing");
  for (const t of [x, y, f]) t.dispose();
});

gpuTest("a u8 tensor of n elements occupies about n bytes of the pool", async (gpu) => {
  await gpu.sync();
  const before = gpu.pool.stats().bytesInUse;
  const n = 100_001;
  const x = tensor(randomBytes(n, 1), [n], { dtype: "u8" });
  assertEquals(x.buffer.size, sizeClass(Math.ceil(n / 4) * 4)); // whole words, rounded to the pool's size class
  assert(x.buffer.size < 1.25 * n, `${x.buffer.size} bytes for ${n} elements`);
  assertEquals(gpu.pool.stats().bytesInUse - before, x.buffer.size);
  const asF32 = cast(x, "f32");
  assert(asF32.buffer.size >= 4 * n, "f32 takes four times the bytes");
  asF32.dispose();
  x.dispose();
  assertEquals(gpu.pool.stats().bytesInUse, before);
});

gpuTest("u8 arena parts start on aligned offsets and keep their neighbours' bytes", async (gpu) => {
  const layout = planArena([[3], [5], [1]], "u8", gpu.limits.minStorageBufferOffsetAlignment);
  const arena = createArena(gpu, layout, "u8");
  arena.parts.forEach((p) => assertEquals(p.byteOffset % gpu.limits.minStorageBufferOffsetAlignment, 0));
  arena.parts[0].write([1, 2, 3]);
  arena.parts[1].write([4, 5, 6, 7, 8]);
  arena.parts[2].write([9]);
  assertEquals([...await arena.parts[0].toArray()], [1, 2, 3]);
  assertEquals([...await arena.parts[1].toArray()], [4, 5, 6, 7, 8]);
  const f = cast(arena.parts[1], "f32");
  assertEquals([...await f.toArray()], [4, 5, 6, 7, 8]);
  assertEquals([...await arena.parts[2].toArray()], [9]);
  f.dispose();
  arena.whole.dispose();
  arena.parts.forEach((p) => p.dispose());
});

Deno.test({
  name: "u8 casts split into word-aligned chunks above the binding limit",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withSmallBindings(2048, async (gpu) => {
      const n = 5003; // 512 f32 per binding: 10 chunks, the last one partial and odd
      const host = randomBytes(n, 77);
      const x = tensor(host, [n], { dtype: "u8" });
      const dispatches = gpu.counters.dispatches;
      const f = cast(x, "f32");
      assert(gpu.counters.dispatches - dispatches >= 10, "chunked");
      assertEquals([...await f.toArray()], [...host], "u8 → f32");
      const i = scope(() => cast(reshape(x, [1, n]), "i32"));
      assertEquals([...await i.toArray()], [...host], "u8 → i32");
      const back = cast(f, "u8");
      assertEquals([...await back.toArray()], [...host], "f32 → u8");
      const copy = clone(x); // u8 → u8: 2,048 elements per chunk
      assertEquals([...await copy.toArray()], [...host], "u8 → u8");
      const a = tensor(Float32Array.from(host, (v) => v + 0.5), [n]);
      const zero = tensor([0], [1]);
      const masked = where(x, a, zero);
      assertEquals([...await masked.toArray()], Array.from(host, (v) => (v ? v + 0.5 : 0)), "where, u8 cond");
      const one = tensor([1], [1], { dtype: "u8" });
      const picked = where(one, zero, a); // a single-element u8 operand stays bound whole
      assertEquals([...await picked.toArray()], new Array(n).fill(0), "where, scalar u8 cond");
      for (const t of [x, f, i, back, copy, a, zero, masked, one, picked]) t.dispose();
    }),
});
