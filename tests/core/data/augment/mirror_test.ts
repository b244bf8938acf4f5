import { mirrorInPlace } from "../../../../core/data/augment/mirror.ts";
import type { Shape3 } from "../../../../core/data/volume.ts";
import { assertEquals } from "../../../assert.ts";
import { randomFloats } from "../fixtures.ts";

Deno.test("mirrorInPlace() flips each axis combination like index reversal, and twice is identity", () => {
  const shape: Shape3 = [3, 4, 5];
  const data = randomFloats(60, 3);
  for (let f = 0; f < 8; f++) {
    const axes = [Boolean(f & 1), Boolean(f & 2), Boolean(f & 4)];
    const out = data.slice();
    mirrorInPlace(out, shape, axes);
    for (let d = 0; d < 3; d++) {
      for (let h = 0; h < 4; h++) {
        for (let w = 0; w < 5; w++) {
          const s = [axes[0] ? 2 - d : d, axes[1] ? 3 - h : h, axes[2] ? 4 - w : w];
          assertEquals(out[(d * 4 + h) * 5 + w], data[(s[0] * 4 + s[1]) * 5 + s[2]]);
        }
      }
    }
    mirrorInPlace(out, shape, axes);
    assertEquals(out, data);
  }
  const mask = Uint8Array.from({ length: 60 }, (_, i) => i % 2);
  const flipped = mask.slice();
  mirrorInPlace(flipped, shape, [false, false, true]);
  assertEquals(flipped[0], mask[4]);
});
