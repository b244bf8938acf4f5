import {
  AUGMENTATION_PRESETS,
  augmentationSchema,
  resolveAugmentation,
} from "../../../../core/data/augment/config.ts";
import { assertEquals, assertThrows } from "../../../assert.ts";

Deno.test("resolveAugmentation() returns valid presets and merges overrides onto a preset", () => {
  for (const name of Object.keys(AUGMENTATION_PRESETS) as (keyof typeof AUGMENTATION_PRESETS)[]) {
    augmentationSchema.parse(resolveAugmentation(name));
  }
  assertEquals(resolveAugmentation("nnssl-mae").rotation, { p: 0.2, degrees: [-30, 30] });
  const custom = resolveAugmentation({
    preset: "nnssl-mae",
    noise: { p: 0.5 },
    rotation: { degrees: [-10, 10] },
  });
  assertEquals(custom.noise, { p: 0.5, sigma: [0, 0.1] });
  assertEquals(custom.rotation, { p: 0.2, degrees: [-10, 10] });
  assertEquals(resolveAugmentation({ gamma: { p: 1 } }).gamma.p, 1);
  assertEquals(resolveAugmentation().noise.p, 0);
});

Deno.test("resolveAugmentation() names the bad key", () => {
  assertThrows(() => resolveAugmentation({ noise: { p: 2 } }), Error, "augmentation.noise.p");
  assertThrows(() => resolveAugmentation({ blur: { sigma: [2, 1] } }), Error, "augmentation.blur.sigma");
  assertThrows(
    () => resolveAugmentation({ twirl: { p: 1 } } as never),
    Error,
    'unknown augmentation "twirl"',
  );
  assertThrows(() => resolveAugmentation("fancy" as never), Error, 'unknown augmentation preset "fancy"');
});
