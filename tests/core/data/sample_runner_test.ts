import { createSampleRunner, loadPrepare } from "../../../core/data/sample_runner.ts";
import { resolveAugmentation } from "../../../core/data/augment/config.ts";
import { resolveSource } from "../../../core/data/sources.ts";
import { assert, assertEquals, assertRejects } from "../../assert.ts";

Deno.test("loadPrepare() finds a named or a default-exported prepare, and says when there is none", async () => {
  assertEquals(typeof (await loadPrepare(new URL("./prepare_fixture.ts", import.meta.url).href)), "function");
  const plugin = `data:application/javascript,export default { prepare: () => ({}) };`;
  assertEquals(typeof (await loadPrepare(plugin)), "function");
  await assertRejects(
    () => loadPrepare("data:application/javascript,export const x = 1;"),
    Error,
    "exports no prepare()",
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
  };
  const a = await createSampleRunner(init);
  const b = await createSampleRunner(init);
  try {
    const x = await a.run({ step: 4, index: 1, item: 1 });
    const y = await b.run({ step: 4, index: 1, item: 1 });
    assertEquals(x.result.image, y.result.image);
    assertEquals(x.result.masks, y.result.masks);
    assertEquals(x.result.source, "synthetic:1/1");
    assert(x.transfer!.includes(x.result.image.buffer as ArrayBuffer));
    const z = await a.run({ step: 5, index: 1, item: 1 });
    assert(z.result.image.some((v, i) => v !== x.result.image[i]));
  } finally {
    a.close();
    b.close();
  }
});
