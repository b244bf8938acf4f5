/**
 * The launch planner, pure (no GPU): at limits forced small, every plan covers every item exactly once,
 * every binding is aligned, within the binding limit and inside its buffer, and every item's elements lie
 * inside its window's binding at the reported base.
 */
import { assert, assertEquals, assertThrows } from "../assert.ts";
import { BindingTooLargeError } from "../../core/gpu/mod.ts";
import {
  indexShift,
  type PlanLimits,
  type PlanOperand,
  planRuns,
  planShrink,
  planWindows,
  spanLimitBytes,
  windowOf,
  windowsFit,
} from "../../kernels/launch_plan.ts";

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
      // every binding starts aligned, the unchanged ranges of the one-window plan included
      assertEquals(r.offset % limits.minStorageBufferOffsetAlignment, 0, "unaligned binding offset");
      const whole = operands.every((p) =>
        (p.range.offset ?? 0) % limits.minStorageBufferOffsetAlignment === 0 &&
        Math.ceil(p.range.size / 4) * 4 <= limits.maxStorageBufferBindingSize
      );
      if (!whole || windows.length > 1) {
        assert(r.size <= limits.maxStorageBufferBindingSize, `binding of ${r.size} bytes over the limit`);
        assertEquals(r.size % 4, 0);
        assert(r.size >= 16 || r.offset + r.size === o.range.buffer.size, "binding under 16 bytes");
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

Deno.test("planWindows binds a range that fits but starts off the alignment through an aligned window", () => {
  // one run of a split elementwise op: 510 f32 from byte 2,040 of its buffer, under a 2,048-byte limit
  const limits = { maxStorageBufferBindingSize: 2048, minStorageBufferOffsetAlignment: 32 };
  const w = checkPlan(limits, [operand(2040, 4, 1, 1, 510)], 510);
  assert(w.every((x) => x.ranges[0].offset % 32 === 0));
  assertEquals(w[0].ranges[0].offset, 2016);
  assertEquals(w[0].bases[0], 6); // element 0 of the range is element 6 of the binding
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
  assertThrows(
    () => planWindows(limits, [operand(0, 4, 300, 300, 4)], 4, { label: "rope" }),
    BindingTooLargeError,
    "rope: 1 item(s) of 300 elements",
  );
});

Deno.test("windowOf() binds from the aligned offset, rounds to 16 bytes, and shifts indices (wrapping before an unaligned start)", () => {
  const limits = { minStorageBufferOffsetAlignment: 256 };
  const buffer = { size: 4096 };
  const w = windowOf(limits, { buffer, size: 4000 }, 4, 70, 100);
  assertEquals([w.binding.offset, w.binding.size, w.first], [256, 4 * (100 - 64), 64]);
  assertEquals((70 + indexShift(w)) >>> 0, 70 - 64); // element 70 sits at index 6 of the window
  // f16 elements [129, 131): 4 bytes of data, bound as 16
  const f16 = windowOf(limits, { buffer, size: 4000 }, 2, 129, 131);
  assertEquals([f16.binding.offset, f16.binding.size, f16.first], [256, 16, 128]);
  // a range starting at byte 300 (an unaligned sub-view): the window starts before it, first < 0
  const sub = windowOf(limits, { buffer, offset: 300, size: 400 }, 4, 0, 10);
  assertEquals([sub.binding.offset, sub.binding.size, sub.first], [256, 96, -11]);
  assertEquals((0 + indexShift(sub)) >>> 0, 11);
  assertEquals((9 + indexShift(sub)) >>> 0, 20);
  // never past the buffer, even when rounding up would be
  const end = windowOf(limits, { buffer: { size: 1028 }, offset: 1024, size: 4 }, 4, 0, 1);
  assertEquals([end.binding.offset, end.binding.size], [1024, 4]);
  assertThrows(() => windowOf(limits, { buffer, offset: 2, size: 8 }, 4, 0, 1), RangeError, "not aligned");
});

Deno.test("windowOf() windows of random runs cover them, aligned, a multiple of 4, inside the buffer", () => {
  const next = rng(99);
  for (let trial = 0; trial < 2000; trial++) {
    const align = [32, 64, 256][Math.floor(next() * 3)];
    const eb = [1, 2, 4, 16][Math.floor(next() * 4)];
    const offset = Math.floor(next() * 100) * eb;
    const elems = 1 + Math.floor(next() * 500);
    const buffer = { size: Math.ceil((offset + elems * eb) / 4) * 4 + Math.floor(next() * 3) * 4 };
    const lo = Math.floor(next() * elems);
    const hi = lo + Math.floor(next() * (elems - lo + 1));
    const w = windowOf(
      { minStorageBufferOffsetAlignment: align },
      { buffer, offset, size: elems * eb },
      eb,
      lo,
      hi,
    );
    assertEquals(w.binding.offset % align, 0);
    assertEquals(w.binding.size % 4, 0);
    assert(w.binding.offset + w.binding.size <= buffer.size, "window past its buffer");
    assertEquals(w.binding.offset, offset + w.first * eb, "first does not name the binding's first element");
    assert(w.first <= lo && (hi - w.first) * eb <= w.binding.size, "the run is not inside its window");
    assert((lo - w.first) * eb < align, "more slack in front than one alignment");
    assert(w.binding.size >= 16 || w.binding.offset + w.binding.size === buffer.size);
  }
});

Deno.test("spanLimitBytes() keeps every window of a span that long within the binding limit", () => {
  const next = rng(7);
  for (let trial = 0; trial < 2000; trial++) {
    const align = [32, 256][Math.floor(next() * 2)];
    const limits = {
      maxStorageBufferBindingSize: 512 + Math.floor(next() * 2000) * 4,
      minStorageBufferOffsetAlignment: align,
    };
    const eb = [2, 4, 16][Math.floor(next() * 3)];
    const n = Math.floor(spanLimitBytes(limits, eb) / eb);
    const lo = Math.floor(next() * 1000);
    const range = { buffer: { size: 1 << 20 }, offset: Math.floor(next() * 40) * eb, size: (lo + n) * eb };
    assert(windowsFit(limits, [[range, eb, lo, lo + n]]), `${n} elements of ${eb} bytes at ${lo}`);
  }
});

Deno.test("planRuns() cuts maximal runs that fit and rejects a unit that cannot fit, naming the kernel", () => {
  const weights = [3, 1, 4, 1, 5, 9, 2, 6];
  const fits = (u0: number, u1: number) => weights.slice(u0, u1).reduce((a, b) => a + b, 0) <= 9;
  assertEquals(planRuns(weights.length, fits, "test"), [[0, 4], [4, 5], [5, 6], [6, 8]]);
  assertEquals(planRuns(3, () => true, "test"), [[0, 3]]);
  assertEquals(planRuns(0, () => false, "test"), []);
  assertThrows(
    () => planRuns(2, (u0, u1) => u0 === 0 && u1 === 1, "kernel_x"),
    BindingTooLargeError,
    "kernel_x",
  );
});

Deno.test("planRuns() with windowsFit covers every element once in windows within a small limit", () => {
  const next = rng(5);
  for (let trial = 0; trial < 100; trial++) {
    const limits = {
      maxStorageBufferBindingSize: 256 + Math.floor(next() * 200) * 4,
      minStorageBufferOffsetAlignment: 64,
    };
    const elems = 1 + Math.floor(next() * 3000);
    const a = { buffer: { size: elems * 4 + 64 }, offset: 64, size: elems * 4 };
    const b = { buffer: { size: elems * 2 + 16 }, offset: 6, size: elems * 2 };
    const runs = planRuns(elems, (g0, g1) => windowsFit(limits, [[a, 4, g0, g1], [b, 2, g0, g1]]), "t");
    let covered = 0;
    for (const [g0, g1] of runs) {
      assertEquals(g0, covered, "runs leave a gap or overlap");
      covered = g1;
      for (const [r, eb] of [[a, 4], [b, 2]] as const) {
        const w = windowOf(limits, r, eb, g0, g1);
        assert(w.binding.size <= limits.maxStorageBufferBindingSize);
        assertEquals(w.binding.offset % 64, 0);
      }
    }
    assertEquals(covered, elems);
  }
});

Deno.test("planShrink() shrinks the listed dimensions until every span fits, and names the tensor that cannot", () => {
  const limits = { maxStorageBufferBindingSize: 4096, minStorageBufferOffsetAlignment: 256 };
  const full = { n: 4, c: 8, d: 16 };
  const hw = 4;
  // NCDHW input [4, 8, 16, hw] f32 and a per-channel table; span of n × c × d chunks
  const span = (c: { n: number; c: number; d: number }) =>
    (c.n - 1) * 8 * 16 * hw + (c.c - 1) * 16 * hw + c.d * hw;
  const rules = [
    { what: "the input", span, bytes: 4, shrink: ["n", "c", "d"] as const },
    { what: "the table", span: (c: { c: number }) => c.c * 100, bytes: 4, shrink: ["c"] as const },
  ];
  const c = planShrink("conv_x", full, rules, limits);
  for (const r of rules) assert(r.span(c) * r.bytes <= spanLimitBytes(limits, 4));
  // largest: growing any shrunk dimension by one breaks some rule
  for (const d of ["n", "c", "d"] as const) {
    if (c[d] < full[d]) {
      assert(rules.some((r) => r.span({ ...c, [d]: c[d] + 1 }) * 4 > spanLimitBytes(limits, 4)));
    }
  }
  assertEquals(c.n, 1);
  assertThrows(
    () =>
      planShrink("conv_x", full, [{ what: "one slice", span: () => 2000, bytes: 4, shrink: ["d"] }], limits),
    BindingTooLargeError,
    "conv_x: one slice cannot be split finer",
  );
});

Deno.test("planShrink() chunks of a random NCDHW tensor cover every element once, each window aligned and within the limit", () => {
  const next = rng(31);
  for (let trial = 0; trial < 40; trial++) {
    const align = [32, 256][Math.floor(next() * 2)];
    const limits = {
      maxStorageBufferBindingSize: 1024 + Math.floor(next() * 1000) * 4,
      minStorageBufferOffsetAlignment: align,
    };
    const [nb, ch, depth, hw] = [
      1 + Math.floor(next() * 3),
      1 + Math.floor(next() * 6),
      1 + Math.floor(next() * 9),
      4,
    ];
    const eb = next() < 0.5 ? 2 : 4;
    const total = nb * ch * depth * hw;
    const range = { buffer: { size: Math.ceil((total * eb) / 16) * 16 }, size: total * eb };
    const span = (c: { n: number; c: number; d: number }) =>
      (c.n - 1) * ch * depth * hw + (c.c - 1) * depth * hw + c.d * hw;
    const c = planShrink("t", { n: nb, c: ch, d: depth }, [{
      what: "x",
      span,
      bytes: eb,
      shrink: ["n", "c", "d"],
    }], limits);
    const seen = new Uint8Array(total);
    for (let n0 = 0; n0 < nb; n0 += c.n) {
      for (let c0 = 0; c0 < ch; c0 += c.c) {
        for (let d0 = 0; d0 < depth; d0 += c.d) {
          const [n1, c1, d1] = [Math.min(nb, n0 + c.n), Math.min(ch, c0 + c.c), Math.min(depth, d0 + c.d)];
          const lo = ((n0 * ch + c0) * depth + d0) * hw;
          const hi = (((n1 - 1) * ch + c1 - 1) * depth + d1) * hw;
          const w = windowOf(limits, range, eb, lo, hi);
          assert(w.binding.size <= limits.maxStorageBufferBindingSize, `window of ${w.binding.size} bytes`);
          assertEquals(w.binding.offset % align, 0);
          assertEquals(w.binding.size % 4, 0);
          assert(w.binding.offset + w.binding.size <= range.buffer.size);
          for (let n = n0; n < n1; n++) {
            for (let k = c0; k < c1; k++) {
              for (let d = d0; d < d1; d++) {
                for (let e = 0; e < hw; e++) {
                  const i = ((n * ch + k) * depth + d) * hw + e;
                  assert(
                    i >= lo && i < hi && (i - w.first) * eb < w.binding.size,
                    "element outside its window",
                  );
                  seen[i]++;
                }
              }
            }
          }
        }
      }
    }
    assert(seen.every((v) => v === 1), "an element covered other than once");
  }
});
