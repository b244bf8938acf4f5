/**
 * SparK-3D: the block mask (exact count per sample, uniform over blocks, the data hook's arrays), the
 * sparse encoder (masked voxels exactly zero after every hooked convolution, pooling and norm and at
 * every stage; norm statistics blind to masked voxels; a dense bottleneck), densify (the stage's token
 * at masked positions), the loss against a float64 reference, and a short CLI run whose loss falls and
 * whose checkpoint holds the plain network.
 */
import { assert, assertEquals, assertThrows } from "../../assert.ts";
import spark, {
  blockGrid,
  chooseMaskedBlocks,
  densify,
  DensifyProjections,
  maskBlock,
  maskedMse,
  MaskTokens,
  type SparkConfig,
  sparkForward,
  sparseHooks,
  VisibleMask,
} from "../../../plugins/ssl/spark/mod.ts";
import resenc, { ResEncUNet } from "../../../plugins/arch/resenc/mod.ts";
import {
  closeRun,
  decodeSafetensors,
  Generator,
  getGpu,
  instanceNormAct,
  type LayerHooks,
  type LayerSite,
  loadCheckpoint,
  openRun,
  readMetrics,
  resolveAugmentation,
  sampleArray,
  scope,
  stateDict,
  type Tensor,
  tensor,
  validatePlugin,
  VERSION,
} from "../../../mod.ts";
import { checkOp, instanceNormRef, maskedInstanceNormRef } from "../../../testing.ts";
import { createSampleRunner } from "../../../core/data/sample_runner.ts";
import { resolveSource } from "../../../core/data/sources.ts";
import { uploadBatch } from "../../../core/train/gpu_batch.ts";
import { assertClose, gpuTest, randomArray, seededRandom } from "../../helpers.ts";
import { tinyRun, voxssl, writeConfig } from "../../e2e/cli.ts";

const config = (over: Partial<SparkConfig> = {}): SparkConfig => spark.config.parse(over) as SparkConfig;

Deno.test("spark is a valid plugin for this core with nnssl's CNN defaults", () => {
  validatePlugin(spark, VERSION, "plugins/ssl/spark");
  assertEquals(spark.supports, ["cnn"]);
  assertEquals(spark.network, { outChannels: 1 });
  const d = spark.defaults.cnn!;
  assertEquals(d.optimizer, { name: "sgd", lr: 1e-2, momentum: 0.99, nesterov: true, weightDecay: 3e-5 });
  assertEquals([d.schedule.name, d.clipGradNorm, d.patchSize, d.batchSize], ["poly", 12, [160, 160, 160], 2]);
  assertEquals(config(), { maskRatio: 0.75, variant: "nnssl" });
  assertEquals([
    maskBlock(config()),
    maskBlock(config({ variant: "original" })),
    maskBlock({ block: 8, variant: "original" }),
  ], [
    16,
    32,
    8,
  ]);
  assertEquals(blockGrid([160, 160, 160], 16), [10, 10, 10]);
  assertThrows(() => blockGrid([160, 160, 40], 16), RangeError, "not a multiple of the mask block 16");
});

Deno.test("chooseMaskedBlocks() masks exactly int(ratio·n) blocks per draw, uniformly over the blocks", () => {
  // nnssl's int(): 7 of 10 (round would give 8), 20 of 27, 750 of 1000
  for (
    const [n, ratio, expected] of [[10, 0.75, 7], [27, 0.75, 20], [1000, 0.75, 750], [1000, 0.6, 600], [
      8,
      0.75,
      6,
    ]]
  ) {
    const next = seededRandom(n);
    for (let draw = 0; draw < 20; draw++) {
      assertEquals(chooseMaskedBlocks(n, ratio, next).reduce((a, b) => a + b, 0), expected, `n ${n}`);
    }
  }
  // 64 blocks (a 4³ grid), 4000 draws: every block is masked in 75% of them (binomial σ 0.0068; bound 5σ)
  const next = seededRandom(99);
  const counts = new Float64Array(64);
  const draws = 4000;
  for (let draw = 0; draw < draws; draw++) {
    const m = chooseMaskedBlocks(64, 0.75, next);
    assertEquals(m.reduce((a, b) => a + b, 0), 48);
    m.forEach((v, i) => (counts[i] += v));
  }
  for (let i = 0; i < 64; i++) {
    assert(
      Math.abs(counts[i] / draws - 0.75) < 0.035,
      `block ${i} masked in ${counts[i] / draws} of the draws`,
    );
  }
  // pairs are not tied either: blocks 0 and 1 are both masked in ≈ (48·47)/(64·63) of the draws
  let both = 0;
  const next2 = seededRandom(5);
  for (let draw = 0; draw < draws; draw++) {
    const m = chooseMaskedBlocks(64, 0.75, next2);
    both += m[0] & m[1];
  }
  assert(
    Math.abs(both / draws - (48 * 47) / (64 * 63)) < 0.04,
    `blocks 0 and 1 both masked: ${both / draws}`,
  );
});

Deno.test("spark's sample hook ships the standard patch and an exact-count u8 block grid of patch/block", async () => {
  const source = await resolveSource({ kind: "synthetic", count: 2, shape: [20, 20, 20], seed: 4 });
  const init = {
    source,
    spec: {
      patch: [16, 16, 8] as [number, number, number],
      augmentation: resolveAugmentation("none"),
      anatomyProbability: 0,
      masks: [],
    },
    seed: 5,
    training: true,
    hookModule: new URL("../../../plugins/ssl/spark/mod.ts", import.meta.url).href,
    hookConfig: { block: 4 },
  };
  const runner = await createSampleRunner(init);
  const plain = await createSampleRunner({ ...init, hookModule: undefined });
  try {
    const { result } = await runner.run({ step: 3, index: 0, item: 1 });
    assertEquals(Object.keys(result.arrays).sort(), ["blockMask", "image"]);
    const grid = result.arrays.blockMask;
    assertEquals([grid.dtype, ...grid.shape], ["u8", 4, 4, 2]);
    assertEquals([...grid.data].reduce((a, b) => a + b, 0), 24);
    assertEquals(result.arrays.image, (await plain.run({ step: 3, index: 0, item: 1 })).result.arrays.image);
    assertEquals(
      (await runner.run({ step: 3, index: 0, item: 1 })).result.arrays.blockMask,
      grid,
      "reproducible",
    );
    const next = (await runner.run({ step: 4, index: 0, item: 1 })).result.arrays.blockMask;
    assert(next.data.some((v, i) => v !== grid.data[i]), "another step draws another mask");
    // over many samples: always the grid of patch/block and exactly 24 of its 32 blocks
    for (let step = 0; step < 40; step++) {
      const m = (await runner.run({ step, index: step % 3, item: step % 2 })).result.arrays.blockMask;
      assertEquals([m.dtype, ...m.shape, [...m.data].reduce((a, b) => a + b, 0)], ["u8", 4, 4, 2, 24]);
    }
  } finally {
    runner.close();
    plain.close();
  }
});

gpuTest(
  "VisibleMask: nearest upsampling to every grid, dense below the block grid, clear error otherwise",
  async () => {
    const grid = [1, 0, 0, 1, 1, 1, 0, 1]; // [1, 2, 2, 2], 1 = visible
    const mask = new VisibleMask(tensor(grid, [1, 2, 2, 2]));
    const m8 = mask.at([8, 8, 4])!;
    assertEquals(m8.shape, [1, 1, 8, 8, 4]);
    const got = await m8.toArray();
    for (let i = 0; i < got.length; i++) {
      const [d, h, w] = [Math.floor(i / 32), Math.floor(i / 4) % 8, i % 4];
      assertEquals(
        got[i],
        grid[Math.floor(d / 4) * 4 + Math.floor(h / 4) * 2 + Math.floor(w / 2)],
        `voxel ${d},${h},${w}`,
      );
    }
    assertEquals([...await mask.at([2, 2, 2])!.toArray()], grid);
    assert(mask.at([1, 1, 1]) === undefined, "a 1³ map is smaller than the 2³ grid on every axis: dense");
    assert(mask.at([8, 8, 4]) === m8, "cached per grid");
    assertThrows(() => mask.at([3, 3, 3]), RangeError, "not a whole multiple of the 2×2×2 mask grid");
    assertThrows(() => mask.at([1, 4, 4]), RangeError, "nor smaller on every axis");
    m8.dispose();
  },
);

// a ResEnc of 4 stages at 16³ (16, 8, 4, 2), blocks of 4 (a 4³ grid): stages 0–2 sparse, stage 3 dense
const arch = resenc.config.parse({
  features: [4, 8, 8, 8],
  blocksPerStage: [1, 2, 1, 1],
  strides: [1, 2, 2, 2],
});
const P = 16, B = 2;
const makeNet = (seed: number) =>
  scope(() =>
    new ResEncUNet(
      arch,
      { inChannels: 1, outChannels: 1, patchSize: [P, P, P], encoderOnly: false },
      new Generator(seed),
    )
  );
const masks = [0, 1].map((b) => chooseMaskedBlocks(64, 0.75, seededRandom(20 + b))); // 1 = masked, 4³ each
const blockMask = () => tensor(Uint8Array.from([...masks[0], ...masks[1]]), [B, 4, 4, 4], { dtype: "u8" });
const visibleGrid = () => tensor(Float32Array.from([...masks[0], ...masks[1]], (v) => 1 - v), [B, 4, 4, 4]);

/**
 * Whether voxel i of a [B, C, s, s, s] feature map lies in a visible block of `grids` (g³ each; true
 * everywhere when s < g: a dense map).
 */
function visibility(grids: Uint8Array[], g: number): (i: number, c: number, s: number) => boolean {
  return (i, c, s) => {
    if (s < g) return true;
    const b = Math.floor(i / (c * s * s * s));
    const [d, h, w] = [Math.floor(i / (s * s)) % s, Math.floor(i / s) % s, i % s].map((v) =>
      Math.floor((v * g) / s)
    );
    return grids[b][(d * g + h) * g + w] === 0;
  };
}
const visibleAt = visibility(masks, 4);

async function assertMaskedZero(t: Tensor, label: string): Promise<void> {
  const [, c, s] = t.shape;
  const values = await t.toArray();
  let visibleNonZero = 0;
  values.forEach((v, i) => {
    if (!visibleAt(i, c, s)) assert(v === 0, `${label}: masked voxel ${i} is ${v}`);
    else if (v !== 0) visibleNonZero++;
  });
  assert(visibleNonZero > 0, `${label}: the visible voxels hold values`);
}

gpuTest(
  "the sparse encoder keeps masked voxels exactly zero after every hooked conv, pool and norm and at every stage",
  async () => {
    const net = makeNet(2);
    const seen: { kind: string; site: LayerSite; out: Tensor }[] = [];
    const dense: string[] = [];
    const { features, outs } = scope(() => {
      const hooks = sparseHooks(new VisibleMask(visibleGrid()));
      const recording: LayerHooks = {
        conv: (y, site) => {
          const out = hooks.conv!(y, site);
          seen.push({ kind: "conv", site, out });
          return out;
        },
        pool: (y, site) => {
          const out = hooks.pool!(y, site);
          seen.push({ kind: "pool", site, out });
          return out;
        },
        norm: (x, call, site) => {
          const out = hooks.norm!(x, call, site);
          if (out) seen.push({ kind: "norm", site, out });
          else dense.push(site.name);
          return out;
        },
      };
      // the input is not masked (nnssl): random values everywhere
      const x = tensor(randomArray(B * P ** 3, 3, -2, 2), [B, 1, P, P, P]);
      return { features: net.encode(x, { layerHooks: recording }), outs: seen.map((e) => e.out) };
    });
    assertEquals(features.map((f) => f.shape[2]), [16, 8, 4, 2]);
    for (const { kind, site, out } of seen) await assertMaskedZero(out, `${kind} ${site.name}`);
    for (let s = 0; s < 3; s++) await assertMaskedZero(features[s], `stage ${s}`);
    // every sparse site was seen (counted from the module tree: stem and stages 0–2); stage 3 (2³ < 4³) is dense
    const stageOf = (name: string) => (name.startsWith("encoder.stem") ? 0 : Number(name.split(".")[2]));
    const modules = [...net.namedModules()].map(([n]) => n).filter((n) =>
      n.startsWith("encoder.") && stageOf(n) < 3
    );
    const sparse = (k: string) =>
      seen.filter((e) => e.kind === k && e.site.stage < 3).map((e) => e.site.name).sort();
    assertEquals(sparse("conv"), modules.filter((n) => n.endsWith(".conv")).sort());
    assertEquals(sparse("norm"), modules.filter((n) => n.endsWith(".norm")).sort());
    assertEquals(sparse("pool"), ["encoder.stages.1.blocks.0.skip.0", "encoder.stages.2.blocks.0.skip.0"]);
    assertEquals([sparse("conv").length, sparse("norm").length], [10, 10]);
    assertEquals(dense.sort(), [
      "encoder.stages.3.blocks.0.conv1.norm",
      "encoder.stages.3.blocks.0.conv2.norm",
    ]);
    const deep = await features[3].toArray();
    assert(deep.filter((v) => v === 0).length < deep.length / 4, "the dense bottleneck is not masked");
    for (const t of [...features, ...outs]) t.dispose();
    net.dispose();
  },
);

gpuTest("the conv and pool hooks zero masked voxels of any tensor and keep the visible ones", async () => {
  // (inside the encoder a pooling of a masked map is already 0 where masked: the pool hook is checked here)
  const x = randomArray(B * 3 * 8 ** 3, 13, 1, 2);
  const outs = scope(() => {
    const hooks = sparseHooks(new VisibleMask(visibleGrid()));
    const t = tensor(x, [B, 3, 8, 8, 8]);
    return [hooks.conv!(t, { name: "c", stage: 1 }), hooks.pool!(t, { name: "p", stage: 1 })];
  });
  for (const out of outs) {
    const values = await out.toArray();
    values.forEach((v, i) => assertEquals(v, visibleAt(i, 3, 8) ? Math.fround(x[i]) : 0, `voxel ${i}`));
    out.dispose();
  }
  // an odd grid (5³, as the original variant's at 160³): the u8 condition's samples start mid-word
  const odd = [0, 1].map((b) => chooseMaskedBlocks(125, 0.75, seededRandom(40 + b)));
  const y = randomArray(B * 3 * 125, 14, 1, 2);
  const out = scope(() => {
    const grid = tensor(Float32Array.from([...odd[0], ...odd[1]], (v) => 1 - v), [B, 5, 5, 5]);
    return sparseHooks(new VisibleMask(grid)).conv!(tensor(y, [B, 3, 5, 5, 5]), { name: "c", stage: 5 });
  });
  const values = await out.toArray();
  const visible = visibility(odd, 5);
  values.forEach((v, i) => assertEquals(v, visible(i, 3, 5) ? Math.fround(y[i]) : 0, `5³ voxel ${i}`));
  out.dispose();
});

gpuTest(
  "the sparse norm ignores masked voxels: changing them leaves the visible outputs unchanged",
  async () => {
    const net = makeNet(3);
    const norm = [...net.namedModules()].find(([n]) => n === "encoder.stages.0.blocks.0.conv1.norm")![1];
    const [w, b] = [...norm.namedParameters()].map(([, t]) => t);
    const shape = [B, 4, P, P, P];
    const x = randomArray(B * 4 * P ** 3, 7, -2, 2);
    const skip = randomArray(B * 4 * P ** 3, 8, -1, 1);
    // other values at masked voxels, some of them large
    const changed = x.map((v, i) => (visibleAt(i, 4, P) ? v : 50 * v + 100));
    const run = (values: Float64Array, sparse: boolean) =>
      scope(() => {
        const call = { weight: w, bias: b, eps: 1e-5, slope: 0.01, residual: tensor(skip, shape) };
        const site = { name: "n", stage: 0 };
        const input = tensor(values, shape);
        return sparse
          ? sparseHooks(new VisibleMask(visibleGrid())).norm!(input, call, site)!
          : instanceNormAct(input, w, b, call);
      });
    const [a, a2, d, d2] = [run(x, true), run(changed, true), run(x, false), run(changed, false)];
    assertEquals([...await a.toArray()], [...await a2.toArray()]);
    await assertMaskedZero(a, "sparse norm");
    // the test can fail: a dense norm's visible outputs move with the masked voxels
    const [dv, dv2] = [await d.toArray(), await d2.toArray()];
    assert(
      dv.some((v, i) => visibleAt(i, 4, P) && Math.abs(v - dv2[i]) > 1e-3),
      "a dense norm sees masked voxels",
    );
    for (const t of [a, a2, d, d2]) t.dispose();
    net.dispose();
  },
);

gpuTest(
  'variant "original": masked input, so the whole sparse encoder ignores masked input voxels; nnssl\'s does not',
  async () => {
    const net = makeNet(4);
    const tokens = scope(() => new MaskTokens(net.featureChannels, new Generator(1)));
    const projections = scope(() => new DensifyProjections(net.featureChannels, new Generator(2)));
    const image = randomArray(B * P ** 3, 9, -2, 2);
    // blocks of 8 (the network's total stride) for "original": a 2³ grid
    const coarse = [0, 1].map((b) => chooseMaskedBlocks(8, 0.75, seededRandom(30 + b)));
    const changed = image.map((v, i) => (visibility(coarse, 2)(i, 1, P) ? v : -3 * v + 7));
    const features = (values: Float64Array, variant: "nnssl" | "original") =>
      scope(() => {
        const grid = variant === "original"
          ? tensor(Uint8Array.from([...coarse[0], ...coarse[1]]), [B, 2, 2, 2], {
            dtype: "u8",
          })
          : blockMask();
        const cfg = config({ variant, block: variant === "original" ? 8 : 4 });
        return sparkForward(net, { tokens, projections }, tensor(values, [B, 1, P, P, P]), grid, cfg)
          .features;
      });
    const [o1, o2] = [features(image, "original"), features(changed, "original")];
    for (let s = 0; s < 4; s++) {
      assertEquals([...await o1[s].toArray()], [...await o2[s].toArray()], `stage ${s}`);
    }
    const [n1, n2] = [features(image, "nnssl"), features(changed, "nnssl")];
    const [a, b] = [await n1[0].toArray(), await n2[0].toArray()];
    assert(a.some((v, i) => v !== b[i]), "nnssl: the stem reads masked input voxels next to visible ones");
    // "original" checks that its mask sits at the coarsest grid
    assertThrows(
      () =>
        scope(() =>
          sparkForward(
            net,
            { tokens, projections },
            tensor(image, [B, 1, P, P, P]),
            blockMask(),
            config({ variant: "original", block: 4 }),
          )
        ),
      RangeError,
      "set block to the network's total stride (8)",
    );
    for (const t of [...o1, ...o2, ...n1, ...n2]) t.dispose();
    tokens.dispose();
    projections.dispose();
    net.dispose();
  },
);

gpuTest(
  "densify: masked IN over visible voxels, the stage's token at masked positions, identity or 3³ projection",
  async () => {
    const net = makeNet(5);
    const tokens = scope(() => new MaskTokens(net.featureChannels, new Generator(6)));
    const projections = scope(() => new DensifyProjections(net.featureChannels, new Generator(7)));
    const token = await Promise.all(
      net.featureChannels.map(async (_, i) => [...await tokens.token(i).toArray()]),
    );
    token.flat().forEach((v) => assert(v !== 0 && Math.abs(v) <= 0.02, `token value ${v} in [−0.02, 0.02]`));
    assertEquals(token.map((t) => t.length), [4, 8, 8, 8]);
    assertEquals([...projections.namedParameters()].map(([n, t]) => `${n}:${t.shape}`), [
      "1.weight:8,8,3,3,3",
      "1.bias:8",
      "2.weight:8,8,3,3,3",
      "2.bias:8",
      "3.weight:8,8,3,3,3",
      "3.bias:8",
    ]);
    const { features, plain, projected } = scope(() => {
      const mask = new VisibleMask(visibleGrid());
      const features = net.encode(tensor(randomArray(B * P ** 3, 11, -2, 2), [B, 1, P, P, P]), {
        layerHooks: sparseHooks(mask),
      });
      const identity = { project: (_: number, x: Tensor) => x };
      return {
        features,
        plain: densify(features, mask, tokens, identity),
        projected: densify(features, mask, tokens, projections),
      };
    });
    for (let s = 0; s < 4; s++) {
      const f = features[s];
      const [, c, n] = f.shape;
      const ref = { shape: [...f.shape], data: await f.toFloat64() };
      const voxels = n ** 3;
      const visibleMask = {
        shape: [B, 1, n, n, n],
        data: Float64Array.from({ length: B * voxels }, (_, i) => +visibleAt(i, 1, n)),
      };
      const expected = n < 4
        ? instanceNormRef(ref).data
        : maskedInstanceNormRef(ref, visibleMask).data.map((v, i) =>
          visibleAt(i, c, n) ? v : token[s][Math.floor(i / voxels) % c]
        );
      assertClose(await plain[s].toFloat64(), expected, { rtol: 1e-4, atol: 1e-4, label: `stage ${s}` });
    }
    assertEquals([...await projected[0].toArray()], [...await plain[0].toArray()], "stage 0: identity");
    assertEquals(projected.map((t) => t.shape), plain.map((t) => t.shape));
    for (const t of [...features, ...plain, ...projected]) t.dispose();
    tokens.dispose();
    projections.dispose();
    net.dispose();
  },
);

gpuTest(
  "maskedMse() matches the float64 reference, gradients included; an all-zero mask gives 0",
  async () => {
    const m = Float32Array.from(randomArray(60, 3, 0, 1), (v) => (v < 0.4 ? 1 : 0));
    await checkOp({
      name: "maskedMse",
      inputs: [{ shape: [2, 1, 30] }, { shape: [2, 1, 30] }],
      gpu: ([p, t]) => maskedMse(p, t, tensor(m, [2, 1, 30])),
      ref: ([p, t]) => {
        let s = 0, n = 0;
        p.data.forEach((v, i) => (s += m[i] * (v - t.data[i]) ** 2, n += m[i]));
        return { shape: [], data: Float64Array.of(s / n) };
      },
    });
    const l = scope(() => maskedMse(tensor([1, 2], [2]), tensor([0, 0], [2]), tensor([0, 0], [2])));
    assertEquals(await l.item(), 0);
    l.dispose();
  },
);

gpuTest("spark's loss is the MSE over the voxels of masked blocks, against a float64 reference", async () => {
  const net = makeNet(8);
  const instance = spark.build({
    network: net,
    config: config({ block: 4 }),
    rng: new Generator(9),
    patchSize: [P, P, P],
    createNetwork: () => {
      throw new Error("not needed");
    },
  });
  assertEquals(Object.keys(instance.modules).sort(), ["densify_projs", "mask_tokens"]);
  const image = Float32Array.from(randomArray(B * P ** 3, 12, -2, 2));
  const { loss, prediction } = scope(() => {
    const batch = uploadBatch(
      {
        arrays: {
          image: sampleArray(image, [B, 1, P, P, P]),
          blockMask: sampleArray(Uint8Array.from([...masks[0], ...masks[1]]), [B, 4, 4, 4]),
        },
      },
      getGpu(),
      "spark",
    );
    const loss = instance.loss(batch, { step: 0, epoch: 0, training: true, rng: new Generator(1) }).loss;
    const modules = {
      tokens: instance.modules.mask_tokens as MaskTokens,
      projections: instance.modules.densify_projs as DensifyProjections,
    };
    const prediction =
      sparkForward(net, modules, batch.get("image"), batch.get("blockMask"), config({ block: 4 })).prediction;
    return { loss, prediction };
  });
  const pred = await prediction.toFloat64();
  let s = 0, count = 0;
  pred.forEach((p, i) => {
    if (!visibleAt(i, 1, P)) {
      s += (p - image[i]) ** 2;
      count++;
    }
  });
  assertEquals(count, B * 48 * 4 ** 3, "48 of 64 blocks of 4³ voxels per sample");
  assertClose([await loss.item()], [s / count], { rtol: 1e-5, atol: 0, label: "loss" });
  loss.dispose();
  prediction.dispose();
  for (const m of Object.values(instance.modules)) m.dispose();
  net.dispose();
});

Deno.test("voxssl pretrain --method spark: the loss falls; network.safetensors is the plain ResEnc, the checkpoint adds the densify modules", async () => {
  const dir = await Deno.makeTempDir();
  const out = `${dir}/run`;
  const run = tinyRun(out, {
    method: "spark",
    methodConfig: { block: 4 },
    patch: [16, 16, 16],
    batch: 2,
    epochs: 3,
    stepsPerEpoch: 4,
    logEvery: 1,
    optimizer: { name: "adamw", lr: 3e-3, weightDecay: 0 },
    schedule: { name: "constant" },
    clipGradNorm: 0,
    seed: 1,
  });
  const { code, text } = await voxssl(["pretrain", "--config", await writeConfig(dir, run)]);
  assertEquals(code, 0, text);
  const metrics = await readMetrics(`${out}/metrics.jsonl`);
  const train = metrics.filter((m) => m.kind === "train").map((m) => m.loss);
  const val = metrics.filter((m) => m.kind === "validation").map((m) => m.loss);
  assertEquals(train.length, 12);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  assert(
    mean(train.slice(-4)) < 0.8 * mean(train.slice(0, 4)),
    `training loss falls: ${train.map((l) => l.toFixed(3)).join(" ")}`,
  );
  assert(val.at(-1)! < val[0], `validation loss falls: ${val.map((l) => l.toFixed(3)).join(" ")}`);
  const ckpt = await loadCheckpoint(`${out}/checkpoints/final.safetensors`);
  assertEquals(ckpt.meta.plugins.method, "spark@1.0.0");
  const network = decodeSafetensors(await Deno.readFile(`${out}/network.safetensors`)).tensors;
  const methodKeys = Object.keys(ckpt.weights).filter((k) => k.startsWith("method.")).sort();
  assertEquals(methodKeys, [
    "method.densify_projs.1.bias",
    "method.densify_projs.1.weight",
    "method.densify_projs.2.bias",
    "method.densify_projs.2.weight",
    "method.mask_tokens.0",
    "method.mask_tokens.1",
    "method.mask_tokens.2",
  ]);
  // network.safetensors: exactly the network's weights (plus reference aliases), equal to the checkpoint's
  const netKeys = Object.keys(ckpt.weights).filter((k) => k.startsWith("network.")).map((k) => k.slice(8));
  assert(netKeys.length > 0 && netKeys.every((k) => k in network), "every network weight exported");
  assert(!Object.keys(network).some((k) => /mask_token|densify/.test(k)), "no densify layers or tokens");
  for (const k of netKeys) assertEquals(network[k].data, ckpt.weights[`network.${k}`].data, k);
  const plan = JSON.parse(
    decodeSafetensors(await Deno.readFile(`${out}/network.safetensors`)).metadata.voxssl,
  );
  assertEquals(plan.adaptationPlan.stemKeys, ["encoder.stem"]);
  // the checkpoint round-trips: resuming the finished run loads every weight of it, the method's included
  const resumed = await openRun({
    config: ckpt.meta.config,
    arch: resenc,
    method: spark,
    train: { batch: () => Promise.reject(new Error("no steps")), close: () => Promise.resolve() },
    coreVersion: VERSION,
    resume: true,
    log: () => {},
  });
  try {
    assertEquals(resumed.step, 12);
    const loaded = await stateDict(resumed.model);
    assertEquals(
      Object.keys(loaded).sort(),
      Object.keys(ckpt.weights).filter((k) => !k.startsWith("optimizer.")).sort(),
    );
    for (const [k, t] of Object.entries(loaded)) assertEquals(t.data, ckpt.weights[k].data, k);
  } finally {
    closeRun(resumed);
  }
  await Deno.remove(dir, { recursive: true });
});
