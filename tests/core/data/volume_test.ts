import {
  extractBox,
  isUsableAffine,
  mulAffine,
  spacingFromAffine,
  voxelCount,
  voxelToWorld,
} from "../../../core/data/volume.ts";
import { assertEquals } from "../../assert.ts";
import { assertClose } from "../../helpers.ts";
import { obliqueAffine, randomFloats } from "./fixtures.ts";

Deno.test("extractBox() copies boxes partly or wholly outside, padding with zeros", () => {
  const shape: [number, number, number] = [3, 4, 5];
  const src = randomFloats(60, 1, 1, 2);
  const box = extractBox(src, shape, [-1, 2, 3], [3, 3, 3]);
  for (let d = 0; d < 3; d++) {
    for (let h = 0; h < 3; h++) {
      for (let w = 0; w < 3; w++) {
        const s = [d - 1, h + 2, w + 3];
        const inside = s[0] >= 0 && s[0] < 3 && s[1] < 4 && s[2] < 5;
        assertEquals(box[(d * 3 + h) * 3 + w], inside ? src[(s[0] * 4 + s[1]) * 5 + s[2]] : 0);
      }
    }
  }
  assertEquals(extractBox(src, shape, [10, 0, 0], [2, 2, 2]), new Float32Array(8));
  assertEquals(
    extractBox(Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]), [2, 2, 2], [0, 0, 0], [2, 2, 2]),
    Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]),
  );
});

Deno.test("affine helpers: product, world position, spacing, usability", () => {
  const a = obliqueAffine([1.5, 0.8, 2.5]);
  const shift = [1, 0, 0, 2, 0, 1, 0, 3, 0, 0, 1, 4, 0, 0, 0, 1];
  assertClose(voxelToWorld(mulAffine(a, shift), 0, 0, 0), voxelToWorld(a, 2, 3, 4), { atol: 1e-12 });
  assertClose(spacingFromAffine(a), [2.5, 0.8, 1.5], { atol: 1e-12 });
  assertEquals(isUsableAffine(a), true);
  assertEquals(isUsableAffine([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]), false);
  assertEquals(isUsableAffine([NaN, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]), false);
  assertEquals(voxelCount([3, 4, 5]), 60);
});
