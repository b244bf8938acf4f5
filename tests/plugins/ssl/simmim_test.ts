/**
 * SimMIM: the token mask over many draws (exact counts, every subset equally likely), the data hook's
 * arrays, the mask token exactly where the mask says (the reconstruction against one built by hand from
 * Primus's modules with the substituted rows concatenated in), the gradient reaching the mask token, and
 * the MSE and L1 losses against float64 references.
 */
import { assert, assertEquals, assertThrows } from "../../assert.ts";
import simmim, {
  drawTokenMask,
  maskedTokenCount,
  type MaskToken,
  type SimmimConfig,
  simmimForward,
  simmimTokenGrid,
} from "../../../plugins/ssl/simmim/mod.ts";
import primus, { Primus } from "../../../plugins/arch/primus/mod.ts";
import {
  add,
  backward,
  concat,
  createRng,
  Generator,
  getGpu,
  type LayerNorm,
  type Network,
  permute,
  reshape,
  ropeSinCos,
  sampleArray,
  scope,
  slice,
  type Tensor,
  tensor,
  validatePlugin,
  VERSION,
} from "../../../mod.ts";
import { createSampleRunner } from "../../../core/data/sample_runner.ts";
import { resolveAugmentation } from "../../../core/data/augment/config.ts";
import { resolveSource } from "../../../core/data/sources.ts";
import { uploadBatch } from "../../../core/train/gpu_batch.ts";
import { assertClose, gpuTest, randomArray } from "../../helpers.ts";

const tiny = primus.config.parse({ ...primus.sizes!.tiny, patchEmbedSize: 4 });
const patch: [number, number, number] = [8, 8, 12]; // a 2×2×3 token grid: 12 tokens
const grid: [number, number, number] = [2, 2, 3];
const N = 12, D = tiny.embedDim;

function build(network: Network, config: Partial<SimmimConfig> = {}) {
  return simmim.build({
    network,
    config: simmim.config.parse({ tokenSize: 4, ...config }),
    rng: new Generator(11),
    patchSize: patch,
    createNetwork: () => {
      throw new Error("not needed");
    },
  });
}

function newPrimus(seed: number): Primus {
  return scope(() =>
    new Primus(
      tiny,
      { inChannels: 1, outChannels: 1, patchSize: patch, encoderOnly: false },
      new Generator(seed),
    )
  );
}

async function values(t: Tensor): Promise<number[]> {
  return [...await t.toArray()];
}

/** The voxel (d, h, w) of an 8×8×12 patch → its token in the 2×2×3 grid. */
function tokenOf(i: number): number {
  const [d, h, w] = [Math.floor(i / 96), Math.floor(i / 12) % 8, i % 12];
  return (Math.floor(d / 4) * 2 + Math.floor(h / 4)) * 3 + Math.floor(w / 4);
}

Deno.test("simmim is a valid ViT-only plugin with nnssl's Eva defaults", () => {
  validatePlugin(simmim, VERSION, "plugins/ssl/simmim");
  assertEquals(simmim.supports, ["vit"]);
  const vit = simmim.defaults.vit!;
  assertEquals(vit.optimizer, { name: "adamw", lr: 3e-4, betas: [0.9, 0.98], eps: 1e-8, weightDecay: 5e-2 });
  assertEquals(vit.schedule, { name: "warmup-poly", warmup: 50, exponent: 0.9 });
  assertEquals([vit.clipGradNorm, vit.batchSize, ...vit.patchSize], [1, 2, 160, 160, 160]);
  assertEquals(simmim.config.parse({}), { maskRatio: 0.75, tokenSize: 8, loss: "mse" });
});

Deno.test("drawTokenMask(): exactly int(0.75·N) tokens per draw, every subset equally likely", () => {
  assertEquals(maskedTokenCount(8000, 0.75), 6000); // 160³, 8³ tokens
  assertEquals(maskedTokenCount(27, 0.75), 20); // int(20.25)
  assertEquals(simmimTokenGrid([160, 160, 160], 8), [20, 20, 20]);
  assertThrows(() => simmimTokenGrid([20, 16, 16], 8), RangeError, "tokenSize");
  const rng = createRng(8, "simmim");
  for (const n of [8000, 12, 64]) {
    for (let draw = 0; draw < (n > 1000 ? 20 : 500); draw++) {
      const mask = drawTokenMask(n, maskedTokenCount(n, 0.75), rng);
      assertEquals(mask.length, n);
      assertEquals(mask.reduce((s, v) => s + v, 0), maskedTokenCount(n, 0.75));
      assert(mask.every((v) => v === 0 || v === 1));
    }
  }
  // uniformity: 4 of 6 masked, all 15 subsets, χ² with 14 degrees of freedom
  const counts = new Map<string, number>();
  for (let draw = 0; draw < 15000; draw++) {
    const key = drawTokenMask(6, 4, rng).join("");
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  assertEquals(counts.size, 15);
  const chi2 = [...counts.values()].reduce((s, c) => s + (c - 1000) ** 2 / 1000, 0);
  assert(chi2 < 36.1, `χ²(14) = ${chi2.toFixed(1)} (p < 0.001 above 36.1)`);
  const perToken = new Float64Array(64);
  for (let draw = 0; draw < 4000; draw++) drawTokenMask(64, 48, rng).forEach((v, t) => (perToken[t] += v));
  const sd = Math.sqrt(4000 * 0.75 * 0.25);
  perToken.forEach((c, t) => assert(Math.abs(c - 3000) < 5 * sd, `token ${t} masked ${c} times of 4000`));
});

Deno.test("simmim's sample hook ships the standard patch and an exact-count u8 token mask, reproducibly", async () => {
  const source = await resolveSource({ kind: "synthetic", count: 2, shape: [24, 24, 24], seed: 4 });
  const init = (size: [number, number, number], hookModule?: string) => ({
    source,
    spec: { patch: size, augmentation: resolveAugmentation("none"), anatomyProbability: 0, masks: [] },
    seed: 5,
    training: true,
    hookModule,
    hookConfig: { tokenSize: [4, 4, 2] },
  });
  const url = new URL("../../../plugins/ssl/simmim/mod.ts", import.meta.url).href;
  const runner = await createSampleRunner(init([16, 8, 8], url)); // a 4×2×4 token grid
  const plain = await createSampleRunner(init([16, 8, 8]));
  const odd = await createSampleRunner(init([16, 8, 7], url));
  try {
    const first = (await runner.run({ step: 3, index: 0, item: 1 })).result.arrays;
    assertEquals(Object.keys(first).sort(), ["image", "tokenMask"]);
    assertEquals([first.tokenMask.dtype, ...first.tokenMask.shape], ["u8", 4, 2, 4]);
    assertEquals([...first.tokenMask.data].reduce((a, b) => a + b, 0), 24); // int(0.75 · 32)
    assertEquals(first.image, (await plain.run({ step: 3, index: 0, item: 1 })).result.arrays.image);
    assertEquals((await runner.run({ step: 3, index: 0, item: 1 })).result.arrays.tokenMask, first.tokenMask);
    const next = (await runner.run({ step: 4, index: 0, item: 1 })).result.arrays.tokenMask;
    assert(next.data.some((v, i) => v !== first.tokenMask.data[i]), "another step draws another mask");
    await odd.run({ step: 0, index: 0, item: 0 }).then(
      () => {
        throw new Error("a patch of no whole tokens must be refused");
      },
      (error) => assert(String(error).includes("tokenSize"), String(error)),
    );
  } finally {
    for (const r of [runner, plain, odd]) r.close();
  }
});

function parameter(module: { namedParameters(): Iterable<[string, Tensor]> }, name: string): Tensor {
  return new Map(module.namedParameters()).get(name)!;
}

gpuTest(
  "SimMIM puts its mask token exactly where the token mask says, before the position embedding",
  async () => {
    const net = newPrimus(3).eval();
    const instance = scope(() => build(net));
    const mask = instance.modules.mask as MaskToken;
    // an O(1) token, so that a token in the wrong place cannot hide in the tolerance (the real one is ~1e-6)
    const token = randomArray(D, 8);
    mask.replaceParameter("mask_token", tensor(token, [1, 1, D])).dispose();
    const masks = [[0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 1], [1, 1, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1]];
    const x = tensor(randomArray(2 * 768, 4), [2, 1, ...patch]);
    const tokenMask = tensor(Uint8Array.from(masks.flat()), [2, ...grid], { dtype: "u8" });
    const out = scope(() => simmimForward(net, mask.token, { image: x, tokenMask }, new Generator(1)));
    const reference = scope(() => {
      const e = net.down_projection.forward(x); // [2, D, 2, 2, 3]
      const embedded = permute(reshape(e, [2, D, N]), [0, 2, 1]); // [2, N, D], Primus's token order
      const t = reshape(mask.token, [1, 1, D]);
      const rows = masks.map((m, b) =>
        concat(m.map((v, n) => (v ? t : slice(embedded, [b, n, 0], [b + 1, n + 1, D]))), 1)
      );
      let h = add(concat(rows, 0), parameter(net, "eva.pos_embed"));
      const rope = ropeSinCos(grid, D / tiny.heads);
      for (const block of net.eva.blocks.items) h = block.forward(h, rope);
      h = net.eva.child<LayerNorm>("norm").forward(h);
      return net.up_projection!.forward(reshape(permute(h, [0, 2, 1]), [2, D, ...grid]));
    });
    assertClose(await values(out.prediction), await values(reference), {
      rtol: 1e-5,
      atol: 1e-6,
      label: "reconstruction",
    });
    const lossMask = await values(out.lossMask);
    for (let b = 0; b < 2; b++) {
      for (let i = 0; i < 768; i++) assertEquals(lossMask[b * 768 + i], masks[b][tokenOf(i)], `voxel ${i}`);
    }
    for (const t of [x, tokenMask, out.prediction, out.lossMask, reference]) t.dispose();
    mask.dispose();
    net.dispose();
  },
);

gpuTest(
  "SimMIM's MSE and L1 losses = float64 references over the masked voxels; the mask token gets a gradient",
  async () => {
    const net = newPrimus(5).eval();
    const image = Float32Array.from(randomArray(2 * 768, 6));
    const masks = [[1, 0, 1, 1, 1, 0, 1, 1, 1, 0, 1, 1], [0, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 1]];
    for (const kind of ["mse", "l1"] as const) {
      const instance = scope(() => build(net, { loss: kind }));
      const mask = instance.modules.mask as MaskToken;
      const context = { step: 0, epoch: 0, training: true, rng: new Generator(2) };
      const { loss, prediction } = scope(() => {
        const batch = uploadBatch(
          {
            arrays: {
              image: sampleArray(image, [2, 1, ...patch]),
              tokenMask: sampleArray(Uint8Array.from(masks.flat()), [2, ...grid]),
            },
          },
          getGpu(),
          "simmim",
        );
        const loss = instance.loss(batch, context).loss;
        backward(loss);
        const { prediction } = simmimForward(net, mask.token, {
          image: batch.get("image"),
          tokenMask: batch.get("tokenMask"),
        }, context.rng);
        return { loss, prediction };
      });
      const p = await values(prediction);
      let s = 0, count = 0;
      for (let b = 0; b < 2; b++) {
        for (let i = 0; i < 768; i++) {
          if (!masks[b][tokenOf(i)]) continue;
          const e = p[b * 768 + i] - image[b * 768 + i];
          s += kind === "mse" ? e * e : Math.abs(e);
          count++;
        }
      }
      assertEquals(count, 2 * 9 * 64);
      const got = await loss.item();
      assert(Math.abs(got - s / count) < 1e-5 * (s / count), `${kind}: ${got} vs ${s / count}`);
      const grad = await values(mask.token.grad!);
      assert(grad.some((g) => g !== 0) && grad.every(Number.isFinite), `${kind}: the mask token learns`);
      loss.dispose();
      prediction.dispose();
      mask.dispose();
    }
    net.dispose();
  },
);

gpuTest("simmim refuses a network whose tokens differ from methodConfig.tokenSize", () => {
  const net = newPrimus(7);
  assertThrows(() => build(net, { tokenSize: 8 }), Error, "tokenSize");
  assertThrows(() => build(net, { tokenSize: [4, 4, 2] }), Error, "2×2×3 tokens");
  const mask = build(net).modules.mask as MaskToken;
  assertEquals([...mask.namedParameters()].map(([n, t]) => `${n} ${t.shape}`), [`mask_token 1,1,${D}`]);
  mask.dispose();
  net.dispose();
});
