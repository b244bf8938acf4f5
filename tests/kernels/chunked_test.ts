/**
 * The index maps of kernels/chunked.ts (pure functions, no GPU); its windows and runs are the launch
 * planner's (tests/kernels/launch_plan_test.ts).
 */
import { expandBy, mapRange, perColumn, perRow, SAME } from "../../kernels/chunked.ts";
import { assertEquals } from "../assert.ts";

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
