/**
 * The SwinUNETR pretext: the cut-out geometry over many draws (budgets, box sides, starts, clipping),
 * the noise and copy fills, the data hook on hand-made volumes (each view rotated back equals the clean
 * patch; rotation classes uniform; cut-outs within their budgets; copied boxes from the other volume), the
 * heads (channels and upsamplings for ResEnc-L and Primus-M, the reconstruction head against a float64
 * reference, the token positions), the loss against a float64 reference of nnssl's `SwinUNETRLoss`
 * (values and finite-difference gradients), and short CLI runs on ResEnc and Primus whose loss falls and
 * whose checkpoint reloads to the same validation loss.
 */
import { assert, assertEquals, assertThrows } from "../../assert.ts";
import swinunetr, {
  boxVolume,
  copyBoxes,
  type CutoutBox,
  cutoutSides,
  drawCutoutBoxes,
  fillNoise,
  headInputs,
  reconstructionChannels,
  ReconstructionHead,
  type SwinunetrConfig,
  swinunetrLoss,
  tokenAt,
  upsampleTargets,
  vitUpsamplings,
} from "../../../plugins/ssl/swinunetr-pretext/mod.ts";
import resenc from "../../../plugins/arch/resenc/mod.ts";
import primus from "../../../plugins/arch/primus/mod.ts";
import {
  createRng,
  type Crop,
  Generator,
  resolveAugmentation,
  type SampleContext,
  type SampleVolume,
  scope,
  type Shape3,
  tensor,
  validatePlugin,
  VERSION,
} from "../../../mod.ts";
import {
  assertClose,
  checkOp,
  conv3dRef,
  globalAvgPoolRef,
  instanceNormRef,
  interpolateRef,
  leakyReluRef,
  type RefTensor,
} from "../../../testing.ts";
import { createSampleRunner } from "../../../core/data/sample_runner.ts";
import { resolveSource } from "../../../core/data/sources.ts";
import { gpuTest } from "../../helpers.ts";
import { pretrainAndReload } from "./pretrain_run.ts";

const MODULE = new URL("../../../plugins/ssl/swinunetr-pretext/mod.ts", import.meta.url).href;
const DEFAULTS = swinunetr.config.parse({}) as SwinunetrConfig;

/** Pearson's χ² of counts against a uniform distribution. */
function chiSquare(counts: readonly number[]): number {
  const total = counts.reduce((a, b) => a + b, 0);
  const expected = total / counts.length;
  return counts.reduce((s, c) => s + (c - expected) ** 2 / expected, 0);
}

/**
 * One quarter turn as NumPy's `np.rot90(m, 1, axes=(1, 2))` of a [D, H, W] array with H = W:
 * out[d, i, j] = m[d, j, N − 1 − i] (written out here, independently of the plugin's rotation).
 */
function quarterTurn(m: Float32Array, shape: Shape3): Float32Array {
  const [D, N] = [shape[0], shape[1]];
  const out = new Float32Array(m.length);
  for (let d = 0; d < D; d++) {
    for (let i = 0; i < N; i++) {
      for (let j = 0; j < N; j++) out[(d * N + i) * N + j] = m[(d * N + j) * N + (N - 1 - i)];
    }
  }
  return out;
}

function turns(m: Float32Array, shape: Shape3, k: number): Float32Array {
  let out = m;
  for (let t = 0; t < ((k % 4) + 4) % 4; t++) out = quarterTurn(out, shape);
  return out;
}

Deno.test("swinunetr-pretext is a valid plugin: the encoder alone, nnssl's defaults", () => {
  validatePlugin(swinunetr, VERSION, "plugins/ssl/swinunetr-pretext");
  assertEquals(swinunetr.network, { encoderOnly: true });
  assertEquals(DEFAULTS.cutout, { maxDrop: 0.3, minSide: 0.05, maxSide: 0.25 });
  assertEquals(
    [DEFAULTS.copyProbability, DEFAULTS.headInput, DEFAULTS.contrastDim, DEFAULTS.temperature],
    [0.5, "tokens", 512, 0.5],
  );
  const cnn = swinunetr.defaults.cnn!;
  assertEquals([cnn.optimizer.name, cnn.optimizer.lr, cnn.clipGradNorm, cnn.batchSize], ["sgd", 1e-2, 12, 2]);
  assertEquals(cnn.patchSize, [160, 160, 160]);
  const vit = swinunetr.defaults.vit!;
  assertEquals([vit.optimizer.name, vit.optimizer.lr, vit.clipGradNorm], ["adamw", 3e-4, 1]);
  assertThrows(() => swinunetr.config.parse({ cutout: { minSide: 0.3, maxSide: 0.2 } }));
});

Deno.test("cutoutSides(): nnssl's int(0.05·s)..int(0.25·s) (8..40 at 160), at least one voxel", () => {
  assertEquals(cutoutSides(160, DEFAULTS.cutout), { lo: 8, hi: 40 });
  assertEquals(cutoutSides(96, DEFAULTS.cutout), { lo: 4, hi: 24 });
  assertEquals(cutoutSides(16, DEFAULTS.cutout), { lo: 1, hi: 4 });
  assertEquals(cutoutSides(3, DEFAULTS.cutout), { lo: 1, hi: 1 });
});

Deno.test("drawCutoutBoxes(): over many draws the budget is U(0, 0.3)·volume, boxes reach it within one box, sides and starts cover their ranges", () => {
  for (const patch of [[160, 160, 160], [16, 16, 16], [20, 12, 12]] as Shape3[]) {
    const voxels = patch[0] * patch[1] * patch[2];
    const ranges = patch.map((s) => cutoutSides(s, DEFAULTS.cutout));
    const rng = createRng(2, "cutout", ...patch);
    const draws = patch[0] === 160 ? 300 : 3000;
    const fractions: number[] = [];
    const sides = [new Set<number>(), new Set<number>(), new Set<number>()];
    const clipped = [false, false, false];
    const starts = [new Set<number>(), new Set<number>(), new Set<number>()];
    for (let draw = 0; draw < draws; draw++) {
      const { budget, boxes, total } = drawCutoutBoxes(patch, DEFAULTS.cutout, rng);
      fractions.push(budget / voxels);
      assert(budget >= 0 && budget < 0.3 * voxels, `budget ${budget} of ${voxels}`);
      assertEquals(total, boxes.reduce((s, b) => s + boxVolume(b), 0));
      assert(total >= budget, "the boxes reach the budget");
      assert(
        boxes.length === 0 || total - boxVolume(boxes.at(-1)!) < budget,
        "and stop at the first box that does",
      );
      for (const { start, end } of boxes) {
        for (let a = 0; a < 3; a++) {
          const side = end[a] - start[a];
          assert(start[a] >= 0 && start[a] <= patch[a] - ranges[a].lo, `start ${start[a]} on axis ${a}`);
          assert(
            end[a] <= patch[a] && side >= ranges[a].lo && side <= ranges[a].hi,
            `side ${side} on axis ${a}`,
          );
          starts[a].add(start[a]);
          if (end[a] < patch[a]) sides[a].add(side); // unclipped: the drawn side
          else if (side < ranges[a].lo + (ranges[a].hi - ranges[a].lo) / 2) clipped[a] = true;
        }
      }
    }
    const mean = fractions.reduce((a, b) => a + b, 0) / draws;
    // U(0, 0.3): mean 0.15, standard deviation 0.3/√12 ≈ 0.087, so the mean of n draws is within 4σ/√n
    assert(Math.abs(mean - 0.15) < 4 * 0.087 / Math.sqrt(draws), `mean budget fraction ${mean}`);
    assert(Math.min(...fractions) < 0.3 * 10 / draws && Math.max(...fractions) > 0.3 * (1 - 10 / draws));
    for (let a = 0; a < 3; a++) {
      assertEquals(starts[a].size, patch[a] - ranges[a].lo + 1, `axis ${a}: every start drawn`);
      assert(sides[a].has(ranges[a].lo) && sides[a].has(ranges[a].hi), `axis ${a}: both side limits drawn`);
      assert(clipped[a], `axis ${a}: boxes clipped at the border`);
    }
  }
});

Deno.test("fillNoise() scales each box's noise to [0, 1]; copyBoxes() copies the donor's voxels; nothing outside changes", () => {
  const patch: Shape3 = [6, 7, 5];
  const n = patch[0] * patch[1] * patch[2];
  const inside = (box: CutoutBox, i: number) => {
    const p = [Math.floor(i / 35), Math.floor(i / 5) % 7, i % 5];
    return p.every((x, a) => x >= box.start[a] && x < box.end[a]);
  };
  const boxes: CutoutBox[] = [{ start: [0, 1, 1], end: [3, 4, 5] }, { start: [2, 3, 0], end: [6, 7, 2] }];
  const image = new Float32Array(n).fill(-5);
  fillNoise(image, patch, boxes, createRng(1, "noise"));
  for (const [b, box] of boxes.entries()) {
    // the later box overwrites; its own voxels span exactly [0, 1]
    const own = [...image].filter((_, i) => inside(box, i) && !boxes.slice(b + 1).some((l) => inside(l, i)));
    assert(own.every((v) => v >= 0 && v <= 1), `box ${b} in [0, 1]`);
    if (b === boxes.length - 1) assertEquals([Math.min(...own), Math.max(...own)], [0, 1]);
  }
  assert([...image].every((v, i) => boxes.some((box) => inside(box, i)) || v === -5), "outside untouched");
  const donor = Float32Array.from({ length: n }, (_, i) => 100 + i);
  const copy = new Float32Array(n);
  copyBoxes(copy, donor, patch, boxes);
  assert([...copy].every((v, i) => v === (boxes.some((box) => inside(box, i)) ? 100 + i : 0)));
  const single = new Float32Array(n).fill(-1);
  fillNoise(single, patch, [{ start: [1, 1, 1], end: [2, 2, 2] }], createRng(2));
  assertEquals(single[35 + 5 + 1], 0, "a one-voxel box (constant noise) gets 0");
});

/** A volume of the hand-made sample context: `patch()` gives a fixed crop; counts its uses. */
function handMadeVolume(id: string, image: Float32Array, patch: Shape3): SampleVolume & { patches: number } {
  const volume = {
    id,
    source: id,
    shape: patch,
    patches: 0,
    hasMask: () => false,
    crop(): Crop {
      throw new Error("the pretext uses the run's patch");
    },
    randomStart(): Shape3 {
      throw new Error("the pretext uses the run's patch");
    },
    patch(): Crop {
      volume.patches++;
      return { image: image.slice(), shape: [...patch], start: [0, 0, 0], masks: {} };
    },
  };
  return volume;
}

const HOOK_PATCH: Shape3 = [5, 8, 8];
const HOOK_VOXELS = 5 * 8 * 8;
/** The clean patch: distinct values in [−3, −2) (neither noise in [0, 1] nor the donor's ≥ 100). */
const CLEAN = Float32Array.from({ length: HOOK_VOXELS }, (_, i) => -3 + i / HOOK_VOXELS);
/** The other volume's patch: distinct values ≥ 100. */
const DONOR = Float32Array.from({ length: HOOK_VOXELS }, (_, i) => 100 + i);

function handMadeContext(seed: number, config: Partial<SwinunetrConfig> = {}) {
  const own = handMadeVolume("own", CLEAN, HOOK_PATCH);
  const other = handMadeVolume("other", DONOR, HOOK_PATCH);
  let others = 0;
  const context: SampleContext<SwinunetrConfig> = {
    config: { ...DEFAULTS, ...config },
    rng: createRng(seed, "hook"),
    seed,
    step: 0,
    index: 0,
    training: true,
    patchSize: HOOK_PATCH,
    volume: own,
    patch: () => own.patch(),
    otherVolume: () => {
      others++;
      return Promise.resolve(other);
    },
    augment: () => {
      throw new Error("no per-crop augmentation");
    },
  };
  return { context, own, other, others: () => others };
}

Deno.test("the sample hook over many draws: each view rotated back is the clean patch, rotations U{0..3}, cut-outs within budget, copies from the other volume at p 0.5", async () => {
  const rotationCounts = [0, 0, 0, 0];
  let copied = 0;
  let views = 0;
  const cutoutFractions: number[] = [];
  const { hi } = cutoutSides(8, DEFAULTS.cutout);
  const maxBox = cutoutSides(5, DEFAULTS.cutout).hi * hi * hi;
  for (let seed = 0; seed < 400; seed++) {
    const { context, others } = handMadeContext(seed);
    const out = await swinunetr.sample!(context);
    assertEquals([out.views.dtype, ...out.views.shape], ["f32", 2, 1, ...HOOK_PATCH]);
    assertEquals([out.targets.dtype, ...out.targets.shape], ["f32", 2, 1, ...HOOK_PATCH]);
    assertEquals([out.rotations.dtype, ...out.rotations.shape], ["i32", 2]);
    let copiedHere = false;
    for (let v = 0; v < 2; v++) {
      const k = out.rotations.data[v];
      assert(Number.isInteger(k) && k >= 0 && k <= 3, `rotation ${k}`);
      rotationCounts[k]++;
      views++;
      const target = (out.targets.data as Float32Array).slice(v * HOOK_VOXELS, (v + 1) * HOOK_VOXELS);
      const view = (out.views.data as Float32Array).slice(v * HOOK_VOXELS, (v + 1) * HOOK_VOXELS);
      assertEquals(turns(target, HOOK_PATCH, 4 - k), CLEAN, `view ${v} (k ${k}) rotated back`);
      assertEquals(target, turns(CLEAN, HOOK_PATCH, k));
      // every changed voxel is noise in [0, 1] or a voxel of the other volume's patch, turned by some k
      let noise = 0;
      const donorVoxels: number[] = [];
      view.forEach((x, i) => {
        if (x === target[i]) return;
        if (x >= 0 && x <= 1) noise++;
        else if (x >= 100) donorVoxels.push(i);
        else throw new Error(`voxel ${i}: ${x} is neither noise nor the donor's`);
      });
      // the noise budget: below 0.3 of the voxels plus one box (and overlaps only lower the count)
      assert(noise < 0.3 * HOOK_VOXELS + maxBox, `${noise} noise voxels`);
      cutoutFractions.push(noise / HOOK_VOXELS);
      if (donorVoxels.length > 0) {
        copied++;
        copiedHere = true;
        const turned = [0, 1, 2, 3].map((t) => turns(DONOR, HOOK_PATCH, t));
        assert(
          turned.some((d) => donorVoxels.every((i) => view[i] === d[i])),
          "copied voxels come from the other volume's patch at the same place, turned by one k",
        );
      }
    }
    assert(
      others() <= 1 && (others() === 1) === copiedHere,
      "the other volume is opened once, when a view copies",
    );
  }
  // χ² at p = 0.001, 3 degrees of freedom: 16.3; copies (every copied box shows: its values are the
  // donor's, ≥ 100): binomial(800, 0.5) within 4σ
  assert(chiSquare(rotationCounts) < 16.3, `rotation classes uniform: ${rotationCounts}`);
  assert(Math.abs(copied - views / 2) < 4 * Math.sqrt(views / 4), `${copied} of ${views} views copied`);
  const meanCut = cutoutFractions.reduce((a, b) => a + b, 0) / views;
  // boxes of 1–4 voxels summing to b·V, b ~ U(0, 0.3), cover about 1 − e^(−b) of the patch: on average
  // c = 1 − (1 − e^(−0.3))/0.3 = 0.136; half the views then get copies over c of it: c·(1 − c/2) ≈ 0.127
  assert(Math.abs(meanCut - 0.127) < 0.02, `mean noise fraction ${meanCut}, about 0.127 expected`);
});

Deno.test("the sample hook without copies never opens another volume; a patch with H ≠ W is refused at build", async () => {
  for (let seed = 0; seed < 20; seed++) {
    const { context, others } = handMadeContext(seed, { copyProbability: 0 });
    const out = await swinunetr.sample!(context);
    assert(out.views.data.every((x) => x < 100));
    assertEquals(others(), 0);
  }
  const network = { family: "cnn", featureChannels: [8, 16] } as never;
  assertThrows(
    () =>
      swinunetr.build({
        network,
        config: DEFAULTS,
        rng: new Generator(1),
        patchSize: [16, 16, 8],
        createNetwork: () => network,
      }),
    RangeError,
    "H = W",
  );
});

Deno.test("swinunetr-pretext's hook in the loader: views, targets and rotations of real volumes", async () => {
  const source = await resolveSource({ kind: "synthetic", count: 3, shape: [24, 24, 24], seed: 2 });
  const runner = await createSampleRunner({
    source,
    spec: {
      patch: [16, 16, 16],
      augmentation: resolveAugmentation("none"),
      anatomyProbability: 0,
      masks: [],
    },
    seed: 3,
    training: true,
    hookModule: MODULE,
    hookConfig: { copyProbability: 1 },
  });
  try {
    for (let step = 0; step < 3; step++) {
      const { arrays } = (await runner.run({ step, index: 0, item: step })).result;
      assertEquals(arrays.views.shape, [2, 1, 16, 16, 16]);
      assertEquals(arrays.targets.shape, [2, 1, 16, 16, 16]);
      assertEquals([arrays.rotations.dtype, ...arrays.rotations.shape], ["i32", 2]);
      assert(arrays.views.data.some((x, i) => x !== arrays.targets.data[i]), "views are cut out");
    }
  } finally {
    runner.close();
  }
});

Deno.test("the heads' geometry: ResEnc-L 320→320→256→128→64→32→1, Primus-M 864→432→216→108→1, upsampling targets", () => {
  assertEquals(
    reconstructionChannels("cnn", [32, 64, 128, 256, 320, 320], 0),
    [320, 320, 256, 128, 64, 32, 1],
  );
  assertEquals(vitUpsamplings([160, 160, 160], [20, 20, 20]), 3);
  assertEquals(reconstructionChannels("vit", [864], 3), [864, 432, 216, 108, 1]);
  assertEquals(reconstructionChannels("vit", [48], 3), [48, 24, 12, 6, 1]);
  assertEquals(vitUpsamplings([32, 32, 32], [4, 4, 8]), 3);
  assertThrows(() => vitUpsamplings([24, 24, 24], [4, 4, 4]), RangeError, "power of two");
  // ResEnc-L at 160³: the head climbs the stages back to the input (the last stage keeps 160)
  const stages = [160, 80, 40, 20, 10, 5].map((s) => [s, s, s]);
  assertEquals(
    upsampleTargets("cnn", stages, [160, 160, 160], 6),
    [10, 20, 40, 80, 160, 160].map((s) => [s, s, s]),
  );
  // a first stage with stride 2 makes the last head stage upsample too
  assertEquals(upsampleTargets("cnn", [[8, 8, 8], [4, 4, 4]], [16, 16, 16], 2), [[8, 8, 8], [16, 16, 16]]);
  // Primus-M: 20³ → 40³ → 80³ → 160³ → 160³; anisotropic patch embedding 8×8×4
  assertEquals(
    upsampleTargets("vit", [[20, 20, 20]], [160, 160, 160], 4),
    [40, 80, 160, 160].map((s) => [s, s, s]),
  );
  assertEquals(upsampleTargets("vit", [[4, 4, 8]], [32, 32, 32], 4), [
    [8, 8, 16],
    [16, 16, 32],
    [32, 32, 32],
    [
      32,
      32,
      32,
    ],
  ]);
});

/** The head in float64: conv (padding 1), and where the size changes instance norm, LeakyReLU 0.01, trilinear. */
function headRef(x: RefTensor, weights: Record<string, RefTensor>, targets: number[][]): RefTensor {
  let y = x;
  targets.forEach((target, i) => {
    y = conv3dRef(y, weights[`conv${i}.weight`], weights[`conv${i}.bias`], { padding: 1 });
    if (y.shape.slice(2).some((s, a) => s !== target[a])) {
      y = interpolateRef(leakyReluRef(instanceNormRef(y), 0.01), target, "linear", false);
    }
  });
  return y;
}

gpuTest(
  "ReconstructionHead matches its float64 composition (conv, then norm + LeakyReLU + trilinear where the size changes)",
  async () => {
    const rng = new Generator(7);
    const head = new ReconstructionHead([6, 4, 3, 2], rng);
    const targets = [[4, 6, 4], [4, 6, 4], [8, 12, 7]];
    const input = Float32Array.from({ length: 2 * 6 * 2 * 3 * 2 }, (_, i) => Math.sin(0.7 * i + 0.3));
    const out = scope(() => head.forward(tensor(input, [2, 6, 2, 3, 2]), targets));
    assertEquals(out.shape, [2, 2, 8, 12, 7]);
    const weights: Record<string, RefTensor> = {};
    for (const [name, p] of head.namedParameters()) {
      weights[name] = { shape: [...p.shape], data: await p.toFloat64() };
    }
    assertEquals(Object.keys(weights).sort(), [
      "conv0.bias",
      "conv0.weight",
      "conv1.bias",
      "conv1.weight",
      "conv2.bias",
      "conv2.weight",
    ]);
    const expected = headRef({ shape: [2, 6, 2, 3, 2], data: Float64Array.from(input) }, weights, targets);
    assertClose(await out.toFloat64(), expected.data, {
      rtol: 1e-4,
      atol: 1e-5,
      label: "reconstruction head",
    });
    out.dispose();
    head.dispose();
  },
);

gpuTest(
  "tokenAt() reads positions of the flattened bottleneck (W fastest); headInputs pooled is the global average",
  async () => {
    const shape = [2, 3, 2, 2, 3];
    const data = Float32Array.from({ length: 72 }, (_, i) => i * 0.5 - 7);
    const [t0, t1, t4, pooled, rotationInput, contrastInput] = scope(() => {
      const x = tensor(data, shape);
      const tokens = headInputs(x, "tokens");
      const pooled = headInputs(x, "pooled").contrast;
      return [tokenAt(x, 0), tokenAt(x, 1), tokenAt(x, 4), pooled, tokens.rotation, tokens.contrast];
    });
    const at = (n: number, c: number, d: number, h: number, w: number) =>
      data[(((n * 3 + c) * 2 + d) * 2 + h) * 3 + w];
    const expect = (f: (n: number, c: number) => number) =>
      Float64Array.from({ length: 6 }, (_, i) => f(Math.floor(i / 3), i % 3));
    assertClose(await t0.toFloat64(), expect((n, c) => at(n, c, 0, 0, 0)), { label: "position 0" });
    assertClose(await t1.toFloat64(), expect((n, c) => at(n, c, 0, 0, 1)), { label: "position 1" });
    assertClose(await t4.toFloat64(), expect((n, c) => at(n, c, 0, 1, 1)), { label: "position 4" });
    const rotationAt = expect((n, c) => at(n, c, 0, 0, 0));
    assertClose(await rotationInput.toFloat64(), rotationAt, { label: "rotation head: position 0" });
    const contrastAt = expect((n, c) => at(n, c, 0, 0, 1));
    assertClose(await contrastInput.toFloat64(), contrastAt, { label: "contrast head: position 1" });
    const ref = globalAvgPoolRef({ shape, data: Float64Array.from(data) });
    assertClose(await pooled.toFloat64(), ref.data, { label: "pooled" });
    [t0, t1, t4, pooled, rotationInput, contrastInput].forEach((t) => t.dispose());
    assertThrows(
      () => scope(() => tokenAt(tensor(new Float32Array(6), [2, 3, 1, 1, 1]), 1)),
      RangeError,
      "pooled",
    );
  },
);

/**
 * nnssl's `SwinUNETRLoss` in float64, on views ordered as nnssl concatenates them: rows [0, B) are view 1
 * of each sample, [B, 2B) view 2 (`ContrastLoss`: cosine similarities / τ, positives i ↔ i ± B, the
 * denominator every j ≠ i, summed and divided by 2B).
 */
function swinunetrLossRef(
  rot: RefTensor,
  labels: ArrayLike<number>,
  contrast: RefTensor,
  recon: RefTensor,
  target: RefTensor,
  tau: number,
): number {
  const l1 = recon.data.reduce((s, v, i) => s + Math.abs(v - target.data[i]), 0) / recon.data.length;
  const [m, c] = rot.shape;
  let ce = 0;
  for (let i = 0; i < m; i++) {
    const x = Array.from({ length: c }, (_, k) => rot.data[i * c + k]);
    const top = Math.max(...x);
    ce += top + Math.log(x.reduce((s, v) => s + Math.exp(v - top), 0)) - x[labels[i]];
  }
  ce /= m;
  // voxssl orders the views (sample 0: view 1, view 2; sample 1: …); nnssl's rows are [views 1; views 2]
  const d = contrast.shape[1];
  const b = m / 2;
  const row = (r: number) => Array.from({ length: d }, (_, k) => contrast.data[r * d + k]);
  const z = [
    ...Array.from({ length: b }, (_, i) => row(2 * i)),
    ...Array.from({ length: b }, (_, i) => row(2 * i + 1)),
  ];
  const cos = (u: number[], v: number[]) =>
    u.reduce((s, x, k) => s + x * v[k], 0) / (Math.hypot(...u) * Math.hypot(...v));
  let nt = 0;
  for (let i = 0; i < m; i++) {
    const positive = cos(z[i], z[(i + b) % m]);
    const denominator = z.reduce((s, zj, j) => (j === i ? s : s + Math.exp(cos(z[i], zj) / tau)), 0);
    nt += -Math.log(Math.exp(positive / tau) / denominator);
  }
  return l1 + nt / m + ce;
}

const ROTATIONS = Int32Array.of(0, 3, 2, 2, 1, 0);

gpuTest(
  "swinunetrLoss() matches nnssl's L1 + NT-Xent + rotation CE in float64, gradients included",
  async () => {
    await checkOp({
      name: "swinunetrLoss",
      inputs: [{ shape: [6, 4], lo: -2, hi: 2 }, { shape: [6, 5] }, { shape: [6, 1, 2, 3, 2] }, {
        shape: [6, 1, 2, 3, 2],
      }],
      gpu: ([rot, contrast, recon, target]) =>
        swinunetrLoss({
          rotationLogits: rot,
          rotations: tensor(ROTATIONS, [6], { dtype: "i32" }),
          contrast,
          reconstruction: recon,
          target,
        }).loss,
      ref: ([rot, contrast, recon, target]) => ({
        shape: [],
        data: Float64Array.of(swinunetrLossRef(rot, ROTATIONS, contrast, recon, target, 0.5)),
      }),
      rtol: 2e-5,
      atol: 2e-6,
    });
  },
);

gpuTest("swinunetrLoss(): the three terms are logged, weighted into the loss", async () => {
  const make = (n: number, f: (i: number) => number) => Float32Array.from({ length: n }, (_, i) => f(i));
  const rot = make(24, (i) => Math.sin(i)), contrast = make(30, (i) => Math.cos(1.7 * i));
  const recon = make(72, (i) => Math.sin(0.3 * i)), target = make(72, (i) => Math.cos(0.2 * i));
  const r = (data: Float32Array, shape: number[]) => ({ shape, data: Float64Array.from(data) });
  const terms = scope(() => {
    const out = swinunetrLoss({
      rotationLogits: tensor(rot, [6, 4]),
      rotations: tensor(ROTATIONS, [6], { dtype: "i32" }),
      contrast: tensor(contrast, [6, 5]),
      reconstruction: tensor(recon, [6, 1, 2, 3, 2]),
      target: tensor(target, [6, 1, 2, 3, 2]),
    }, { reconstructionWeight: 2, contrastWeight: 0.5, rotationWeight: 3 });
    return [out.metrics.reconstruction, out.metrics.contrast, out.metrics.rotation, out.loss];
  });
  const [l1, nt, ce, loss] = await Promise.all(terms.map((t) => t.item()));
  terms.forEach((t) => t.dispose());
  const zero = { shape: [6, 4], data: new Float64Array(24) };
  const zeroC = { shape: [6, 5], data: Float64Array.from({ length: 30 }, (_, i) => (i % 5 === 0 ? 1 : 0)) };
  const onlyL1 =
    swinunetrLossRef(zero, ROTATIONS, zeroC, r(recon, [6, 1, 2, 3, 2]), r(target, [6, 1, 2, 3, 2]), 0.5) -
    Math.log(4) - Math.log(5);
  const close = (a: number, b: number) => Math.abs(a - b) <= 2e-5 * Math.max(1, Math.abs(b));
  assert(close(l1, onlyL1), `reconstruction ${l1} vs ${onlyL1}`);
  assert(close(loss, 2 * l1 + 0.5 * nt + 3 * ce), `weighted ${loss}`);
  const all = swinunetrLossRef(
    r(rot, [6, 4]),
    ROTATIONS,
    r(contrast, [6, 5]),
    r(recon, [6, 1, 2, 3, 2]),
    r(target, [
      6,
      1,
      2,
      3,
      2,
    ]),
    0.5,
  );
  assert(close(l1 + nt + ce, all), `terms sum to the reference: ${l1 + nt + ce} vs ${all}`);
});

/**
 * A short CLI run on synthetic volumes (fixed seed), AdamW 1e-3 for both networks; one log line per epoch
 * (each epoch's mean over the same seeded batches as in any other run).
 */
function shortRun(arch: string): Record<string, unknown> {
  return {
    arch,
    method: "swinunetr-pretext",
    data: "synthetic",
    synthetic: { volumes: 4, size: [24, 24, 24] },
    // ResEnc-tiny (strides 1, 2, 2) at 8³ keeps a 2³ bottleneck; Primus-tiny needs 16³ for two 8³ tokens
    patch: arch.startsWith("primus") ? [16, 16, 16] : [8, 8, 8],
    batch: 2,
    epochs: 3,
    stepsPerEpoch: 6,
    logEvery: 6,
    validationBatches: 1,
    workers: 1,
    optimizer: { name: "adamw", lr: 1e-3, weightDecay: 0 },
    clipGradNorm: 0,
    schedule: { name: "constant" },
  };
}

for (const [name, arch] of [["resenc-tiny", resenc], ["primus-tiny", primus]] as const) {
  gpuTest(
    `voxssl pretrain --method swinunetr-pretext on ${name}: the loss falls, the checkpoint reloads`,
    async () => {
      const run = await pretrainAndReload(shortRun(name), arch, swinunetr, MODULE);
      const { train, validation, records } = run;
      const fmt = (xs: number[]) => xs.map((l) => l.toFixed(3)).join(" ");
      const reconstruction = records.filter((r) => r.kind === "train").map((r) => r.metrics!.reconstruction);
      assertEquals([train.length, validation.length], [3, 3]);
      assert(validation[2] < validation[0] - 0.05, `validation loss falls: ${fmt(validation)}`);
      assert(train[2] < train[0] - 0.05, `training loss falls: ${fmt(train)}`);
      assert(reconstruction[2] < 0.9 * reconstruction[0], `reconstruction falls: ${fmt(reconstruction)}`);
      assert(
        records.every((r) =>
          ["reconstruction", "contrast", "rotation"].every((k) => typeof r.metrics?.[k] === "number")
        ),
        "the three terms logged",
      );
      assertEquals(run.reloaded.loss, validation[2], "the reloaded run validates to the logged loss");
    },
  );
}
