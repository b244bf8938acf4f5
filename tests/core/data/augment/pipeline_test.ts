import { resolveAugmentation } from "../../../../core/data/augment/config.ts";
import { applyAugmentation, planAugmentation } from "../../../../core/data/augment/pipeline.ts";
import { createRng } from "../../../../core/data/rng.ts";
import { assert, assertEquals } from "../../../assert.ts";
import { assertClose } from "../../../helpers.ts";
import { randomFloats } from "../fixtures.ts";

Deno.test("planAugmentation() is deterministic and fires each transform with its probability", () => {
  const config = resolveAugmentation("nnunet");
  assertEquals(planAugmentation(config, createRng(3, 7)), planAugmentation(config, createRng(3, 7)));
  const n = 4000;
  const counts: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const plan = planAugmentation(config, createRng(1, i));
    for (const [k, v] of Object.entries(plan)) {
      if (v !== undefined && k !== "mirror") counts[k] = (counts[k] ?? 0) + 1;
    }
    if (plan.mirror[0]) counts.mirror0 = (counts.mirror0 ?? 0) + 1;
    if (plan.spatial) {
      assert(plan.spatial.angles.every((a) => Math.abs(a) <= Math.PI / 6 + 1e-12));
      assert(plan.spatial.scale >= 0.7 && plan.spatial.scale <= 1.4);
    }
    if (plan.gamma !== undefined) assert(plan.gamma >= 0.7 && plan.gamma <= 1.5);
  }
  const near = (k: string, p: number) =>
    assert(Math.abs((counts[k] ?? 0) / n - p) < 0.03, `${k}: ${(counts[k] ?? 0) / n} vs ${p}`);
  near("spatial", 1 - 0.8 * 0.8);
  near("noiseSigma", 0.1);
  near("blurSigma", 0.2);
  near("brightness", 0.15);
  near("lowresZoom", 0.25);
  near("gamma", 0.3);
  near("gammaInverted", 0.1);
  near("mirror0", 0.5);
  const none = planAugmentation(resolveAugmentation("none"), createRng(1));
  assertEquals(none, { mirror: [false, false, false] });
});

Deno.test("applyAugmentation() applies exactly the planned transforms, mirroring masks too", () => {
  const shape: [number, number, number] = [4, 5, 6];
  const image = randomFloats(120, 5);
  const mask = Uint8Array.from({ length: 120 }, (_, i) => (i < 60 ? 1 : 0));
  const out = applyAugmentation(
    image.slice(),
    shape,
    { brightness: 2, mirror: [true, false, false] },
    createRng(0),
    [mask],
  );
  for (let d = 0; d < 4; d++) {
    for (let i = 0; i < 30; i++) {
      assertClose([out[d * 30 + i]], [2 * image[(3 - d) * 30 + i]], { atol: 1e-6 });
    }
  }
  assertEquals(mask[0], 0);
  assertEquals(mask[119], 1);
  const untouched = applyAugmentation(image.slice(), shape, { mirror: [false, false, false] }, createRng(0));
  assertEquals(untouched, image);
});
