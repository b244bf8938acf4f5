import {
  centredCropStart,
  choosePatchStart,
  cropRange,
  randomCropStart,
} from "../../../core/data/sampling.ts";
import { createRng } from "../../../core/data/rng.ts";
import { assert, assertEquals } from "../../assert.ts";

Deno.test("cropRange() follows nnssl's get_bbox bounds", () => {
  // volume bigger than the patch: start anywhere the patch fits
  assertEquals(cropRange([20, 30, 40], [8, 8, 8]), { lo: [0, 0, 0], hi: [12, 22, 32] });
  // smaller: need = 5 → lbs = -5 // 2 = -3, ubs = 10 + 2 + 1 - 15 = -2
  assertEquals(cropRange([10, 15, 14], [15, 15, 15]), { lo: [-3, 0, -1], hi: [-2, 0, 0] });
});

Deno.test("randomCropStart() covers its whole range and nothing else", () => {
  const rng = createRng(1);
  const seen = new Set<number>();
  for (let i = 0; i < 2000; i++) {
    const s = randomCropStart([12, 5, 9], [8, 8, 8], rng);
    assert(s[0] >= 0 && s[0] <= 4 && s[1] >= -2 && s[1] <= -1 && s[2] >= 0 && s[2] <= 1, `${s}`);
    seen.add(s[0]);
  }
  assertEquals(seen.size, 5);
});

Deno.test("centredCropStart() centres on the voxel, clamped below only", () => {
  assertEquals(centredCropStart([50, 50, 50], [16, 16, 16], [25, 30, 49]), [17, 22, 41]);
  assertEquals(centredCropStart([50, 50, 50], [16, 16, 16], [2, 0, 8]), [0, 0, 0]);
  assertEquals(centredCropStart([10, 10, 10], [16, 16, 16], [0, 9, 5]), [-3, 1, -3]);
});

Deno.test("choosePatchStart() centres on a location with the given probability", () => {
  const locations = Int32Array.from([10, 10, 10, 30, 20, 5]);
  const rng = createRng(2);
  let centred = 0;
  for (let i = 0; i < 4000; i++) {
    const { start, centred: c } = choosePatchStart([40, 40, 40], [8, 8, 8], rng, {
      anatomyProbability: 0.33,
      locations,
    });
    if (c) {
      centred++;
      const centre = start.map((s) => s + 4);
      assert(centre.join() === "10,10,10" || centre.join() === "30,20,5" || start[2] === 0, `${start}`);
    }
  }
  assert(Math.abs(centred / 4000 - 0.33) < 0.03, `${centred}`);
  const none = choosePatchStart([40, 40, 40], [8, 8, 8], rng, { anatomyProbability: 1 });
  assertEquals(none.centred, false); // no locations: random
});
