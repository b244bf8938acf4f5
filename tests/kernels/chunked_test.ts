/** The window and chunk planning of kernels/chunked.ts (pure functions, no GPU). */
import { expandBy, mapRange, perColumn, perRow, planChunks, SAME, windowOf } from "../../kernels/chunked.ts";
import type { Gpu, GpuBuffer } from "../../core/gpu/mod.ts";
import { assertEquals, assertThrows } from "../assert.ts";
import { BindingTooLargeError } from "../../core/gpu/mod.ts";

/** Every index the map gives for g in [g0, g1) lies in mapRange(g0, g1). */
function covers(map: Parameters<typeof mapRange>[0], g0: number, g1: number): boolean {
  const [lo, hi] = mapRange(map, g0, g1);
  for (let g = g0; g < g1; g++) {
    const i = Math.floor(g / map.div) * map.mul + (g % map.mod);
    if (i < lo || i + map.extent > hi) return false;
  }
  return true;
}

Deno.test("mapRange() covers every index the map reads, and is exact inside one row", () => {
  const maps = [SAME, perRow(7), perColumn(5, 6), expandBy(3), { div: 4, mul: 8, mod: 4, extent: 5 }];
  for (const map of maps) {
    for (let g0 = 0; g0 < 70; g0 += 3) {
      for (let g1 = g0 + 1; g1 < 90; g1 += 7) {
        assertEquals(covers(map, g0, g1), true, `${JSON.stringify(map)} ${g0}..${g1}`);
      }
    }
  }
  assertEquals(mapRange(SAME, 10, 20), [10, 20]);
  assertEquals(mapRange(perRow(7), 7, 14), [1, 2]);
  assertEquals(mapRange(perColumn(5, 6), 32, 35), [8, 11]); // o = 1, j = 2..4
  assertEquals(mapRange(expandBy(3), 2, 4), [6, 12]);
});

Deno.test("windowOf() starts at an aligned offset and shifts indices by the remainder", () => {
  const gpu = { limits: { minStorageBufferOffsetAlignment: 256 } } as unknown as Gpu;
  const buffer = { id: 1, size: 4096, buffer: {} } as unknown as GpuBuffer;
  const w = windowOf(gpu, { buffer, size: 4000 }, 4, 70, 100);
  assertEquals(w.range.offset, 256);
  assertEquals(w.range.size, 4 * (100 - 64));
  assertEquals((70 + w.offset) >>> 0, 70 - 64); // element 70 sits at index 6 of the window
  const f16 = windowOf(gpu, { buffer, size: 4000 }, 2, 129, 131);
  assertEquals([f16.range.offset, f16.range.size, (129 + f16.offset) >>> 0], [256, 8, 1]);
});

Deno.test("planChunks() cuts maximal runs that fit and rejects a unit that cannot fit", () => {
  const weights = [3, 1, 4, 1, 5, 9, 2, 6];
  const fits = (u0: number, u1: number) => weights.slice(u0, u1).reduce((a, b) => a + b, 0) <= 9;
  assertEquals(planChunks(weights.length, fits, "test"), [[0, 4], [4, 5], [5, 6], [6, 8]]);
  assertEquals(planChunks(3, () => true, "test"), [[0, 3]]);
  assertThrows(
    () => planChunks(2, (u0, u1) => u0 === 0 && u1 === 1, "kernel_x"),
    BindingTooLargeError,
    "kernel_x",
  );
});
