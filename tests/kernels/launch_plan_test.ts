/**
 * The launch planner, pure (no GPU): at limits forced small, every plan covers every item exactly once,
 * every binding is aligned, within the binding limit and inside its buffer, and every item's elements lie
 * inside its window's binding at the reported base.
 */
import { assert, assertEquals, assertThrows } from "../assert.ts";
import { type PlanLimits, type PlanOperand, planWindows } from "../../kernels/launch_plan.ts";

/** Small deterministic generator (xorshift) so the random cases are reproducible. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
}

function checkPlan(
  limits: PlanLimits,
  operands: readonly PlanOperand[],
  items: number,
  granule = 1,
  maxItems?: number,
) {
  const windows = planWindows(limits, operands, items, { granule, maxItems });
  const seen = new Uint8Array(items);
  windows.forEach((w, k) => {
    if (k < windows.length - 1) assertEquals(w.items % granule, 0, "only the last window may be partial");
    if (maxItems !== undefined) assert(w.items <= maxItems);
    for (let i = w.item0; i < w.item0 + w.items; i++) seen[i]++;
    operands.forEach((o, j) => {
      const r = w.ranges[j];
      const eb = o.elementBytes;
      const whole = operands.every((p) =>
        Math.ceil(p.range.size / 4) * 4 <= limits.maxStorageBufferBindingSize
      );
      if (!whole || windows.length > 1) {
        assert(r.size <= limits.maxStorageBufferBindingSize, `binding of ${r.size} bytes over the limit`);
        assertEquals(r.offset % limits.minStorageBufferOffsetAlignment, 0, "unaligned binding offset");
        assertEquals(r.size % 4, 0);
      }
      assert(r.offset + r.size <= o.range.buffer.size, "binding past its buffer");
      // every element of every item of the window lies inside the binding at the base
      for (const i of [w.item0, w.item0 + w.items - 1]) {
        const local = w.bases[j] + (i - w.item0) * o.itemStride;
        const absolute = r.offset / eb + local;
        assertEquals(
          absolute,
          (o.range.offset ?? 0) / eb + i * o.itemStride,
          "base does not point at the item",
        );
        assert((local + o.itemExtent) * eb <= r.size, "item runs past its binding");
      }
    });
  });
  for (let i = 0; i < items; i++) assertEquals(seen[i], 1, `item ${i} covered ${seen[i]} times`);
  return windows;
}

function operand(
  offset: number,
  elementBytes: number,
  itemStride: number,
  itemExtent: number,
  items: number,
) {
  const size = ((items - 1) * itemStride + itemExtent) * elementBytes;
  return {
    range: { offset, size, buffer: { size: offset + size + 64 } },
    elementBytes,
    itemStride,
    itemExtent,
  };
}

Deno.test("planWindows returns one window over the whole ranges when they fit", () => {
  const limits = { maxStorageBufferBindingSize: 1 << 20, minStorageBufferOffsetAlignment: 256 };
  const ops = [operand(512, 4, 100, 100, 7), operand(0, 2, 0, 33, 7)];
  const w = checkPlan(limits, ops, 7);
  assertEquals(w.length, 1);
  assertEquals(w[0].ranges[0].offset, 512);
  assertEquals(w[0].bases, [0, 0]);
});

Deno.test("planWindows covers every item once within small limits, on random layouts", () => {
  const next = rng(1234);
  for (let trial = 0; trial < 300; trial++) {
    const align = [16, 32, 256][Math.floor(next() * 3)];
    const limit = 1024 + Math.floor(next() * 4000) * 4;
    const limits = { maxStorageBufferBindingSize: limit, minStorageBufferOffsetAlignment: align };
    const items = 1 + Math.floor(next() * 500);
    const granule = next() < 0.3 ? 4 : 1;
    const ops: PlanOperand[] = [];
    const count = 1 + Math.floor(next() * 3);
    for (let k = 0; k < count; k++) {
      const eb = [1, 2, 4][Math.floor(next() * 3)];
      const stride = next() < 0.2 ? 0 : 1 + Math.floor(next() * 40);
      const extent = Math.max(1, Math.floor(next() * (stride || 40)) + 1);
      const offset = Math.floor(next() * 50) * eb;
      ops.push(operand(offset, eb, stride, extent, items));
    }
    const maxItems = next() < 0.2 ? granule + Math.floor(next() * 50) : undefined;
    checkPlan(limits, ops, items, granule, maxItems);
  }
});

Deno.test("planWindows splits a 147 MB SwiGLU bias add at the 128 MiB binding limit", () => {
  // [2, 8000, 2304] f32 with a [2304] bias, split along the batch axis (one item = one batch row)
  const limits = { maxStorageBufferBindingSize: 2 ** 27, minStorageBufferOffsetAlignment: 256 };
  const row = 8000 * 2304;
  const x = operand(0, 4, row, row, 2);
  const bias = operand(1024, 4, 0, 2304, 2);
  const w = checkPlan(limits, [x, bias, operand(0, 4, row, row, 2)], 2);
  assertEquals(w.length, 2);
});

Deno.test("planWindows refuses an item larger than a binding, naming the label", () => {
  const limits = { maxStorageBufferBindingSize: 1024, minStorageBufferOffsetAlignment: 256 };
  const e = assertThrows(() => planWindows(limits, [operand(0, 4, 300, 300, 4)], 4, { label: "rope" }));
  assert(String(e).includes("rope") && String(e).includes("1024"), String(e));
});
