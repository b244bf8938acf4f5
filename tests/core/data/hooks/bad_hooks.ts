/**
 * Misbehaving data hooks for the loader's error tests; `config.mode` picks the misbehaviour: "throw",
 * "hang" (a synchronous endless loop), "untyped" (a bare typed array), "ragged" (sample shapes differ
 * across a batch), "views" (a well-behaved multi-crop hook with a second volume).
 */
import { sampleArray, type SampleContext, z } from "../../../../mod.ts";

const config = z.object({ mode: z.enum(["throw", "hang", "untyped", "ragged", "views"]) });

export default {
  name: "bad-hooks",
  config,
  async sample(context: SampleContext<z.output<typeof config>>) {
    const { mode } = context.config;
    if (mode === "throw") throw new TypeError("the hook's own bug");
    if (mode === "hang") { while (true) { /* stuck */ } }
    if (mode === "untyped") return { image: new Float32Array(8) } as never;
    if (mode === "ragged") {
      const n = context.index === 0 ? 8 : 27;
      return {
        x: sampleArray(new Float32Array(n), [
          Math.round(Math.cbrt(n)),
          Math.round(Math.cbrt(n)),
          Math.round(Math.cbrt(n)),
        ]),
      };
    }
    // views: two crops of 6³ at random starts, one augmented with turns; a crop of another volume
    const size: [number, number, number] = [6, 6, 6];
    const a = context.volume.crop(context.volume.randomStart(size, context.rng.fork("a")), size);
    const b = context.volume.crop(context.volume.randomStart(size, context.rng.fork("b")), size);
    context.augment(b, { rot90: { p: 1, axes: [1, 2], turns: [1, 3] } }, context.rng.fork("aug"));
    const other = await context.otherVolume();
    const c = other.crop(other.randomStart(size, context.rng.fork("c")), size);
    const views = new Float32Array(3 * 216);
    views.set(a.image, 0);
    views.set(b.image, 216);
    views.set(c.image, 432);
    const ids = new Int32Array([context.volume.id === other.id ? 1 : 0, a.start[0], b.start[0]]);
    return { views: sampleArray(views, [3, 1, ...size]), same: sampleArray(ids, [3]) };
  },
};
