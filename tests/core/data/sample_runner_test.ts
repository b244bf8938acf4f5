import { createSampleRunner, loadSampleHook } from "../../../core/data/sample_runner.ts";
import { resolveAugmentation } from "../../../core/data/augment/config.ts";
import { SampleHookError } from "../../../core/data/errors.ts";
import { resolveSource } from "../../../core/data/sources.ts";
import { assert, assertEquals, assertRejects } from "../../assert.ts";

Deno.test("loadSampleHook() parses the plugin's config once, and says when there is no hook", async () => {
  const hook = await loadSampleHook(new URL("./hooks/masking_hook.ts", import.meta.url).href, {
    ratio: 0.25,
  });
  assertEquals(hook.name, "masking-fixture");
  assertEquals(hook.config, { ratio: 0.25 });
  await assertRejects(
    () => loadSampleHook(new URL("./hooks/masking_hook.ts", import.meta.url).href, { ratio: 3 }),
    SampleHookError,
    "plugin masking-fixture: sample() failed (parsing its config)",
  );
  await assertRejects(
    () => loadSampleHook("data:application/javascript,export default { name: 'x' };", {}),
    Error,
    "has no sample() hook",
  );
});

Deno.test("createSampleRunner() makes the same sample for the same task and lists its buffers for transfer", async () => {
  const source = await resolveSource({ kind: "synthetic", count: 2, shape: [16, 16, 16], seed: 1 });
  const init = {
    source,
    spec: {
      patch: [8, 8, 8] as [number, number, number],
      augmentation: resolveAugmentation("nnunet"),
      anatomyProbability: 0.5,
      masks: ["anatomy" as const],
    },
    seed: 3,
    training: true,
  };
  const a = await createSampleRunner(init);
  const b = await createSampleRunner(init);
  try {
    const x = await a.run({ step: 4, index: 1, item: 1 });
    const y = await b.run({ step: 4, index: 1, item: 1 });
    assertEquals(x.result.arrays, y.result.arrays);
    assertEquals(x.result.arrays.image.shape, [1, 8, 8, 8]);
    assertEquals(x.result.arrays.anatomy.dtype, "u8");
    assertEquals(x.result.source, "synthetic:1/1");
    assert(x.transfer!.includes(x.result.arrays.image.data.buffer as ArrayBuffer));
    const z = await a.run({ step: 5, index: 1, item: 1 });
    assert(z.result.arrays.image.data.some((v, i) => v !== x.result.arrays.image.data[i]));
  } finally {
    a.close();
    b.close();
  }
});
