import { boxSize, cropToBox, nonzeroBox } from "../../../core/data/crop.ts";
import type { Shape3 } from "../../../core/data/volume.ts";
import { assertEquals } from "../../assert.ts";
import { seededRandom } from "../../helpers.ts";

Deno.test("nonzeroBox() finds the bounding box of non-zero voxels (vs brute force)", () => {
  const shape: Shape3 = [7, 9, 8];
  for (let seed = 1; seed <= 20; seed++) {
    const next = seededRandom(seed);
    const data = new Float32Array(7 * 9 * 8);
    const k = 1 + Math.floor(next() * 5);
    for (let i = 0; i < k; i++) data[Math.floor(next() * data.length)] = next() - 0.5 || 1;
    const lo = [99, 99, 99], hi = [-1, -1, -1];
    data.forEach((v, i) => {
      if (v === 0) return;
      const c = [Math.floor(i / 72), Math.floor(i / 8) % 9, i % 8];
      c.forEach((x, a) => {
        lo[a] = Math.min(lo[a], x);
        hi[a] = Math.max(hi[a], x + 1);
      });
    });
    assertEquals(nonzeroBox(data, shape), { start: lo, end: hi });
  }
  assertEquals(nonzeroBox(new Float32Array(8), [2, 2, 2]), null);
});

Deno.test("cropToBox() copies exactly the box", () => {
  const data = Float32Array.from({ length: 60 }, (_, i) => i);
  const box = { start: [1, 1, 2] as Shape3, end: [3, 4, 5] as Shape3 };
  const out = cropToBox(data, [3, 4, 5], box);
  assertEquals(boxSize(box), [2, 3, 3]);
  const want: number[] = [];
  for (let d = 1; d < 3; d++) {
    for (let h = 1; h < 4; h++) for (let w = 2; w < 5; w++) want.push((d * 4 + h) * 5 + w);
  }
  assertEquals(Array.from(out), want);
});
