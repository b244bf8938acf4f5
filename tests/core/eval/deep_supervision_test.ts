/**
 * Deep supervision (core/eval/deep_supervision.ts): nnU-Net's loss weights against hand-computed values,
 * the nearest-exact target downsampling against PyTorch's index rule evaluated here, the weighted loss
 * and its gradient against a float64 reference of Dice + CE with central finite differences, ResEnc's
 * multi-scale outputs (the full-resolution one is `forward`'s, bit for bit: prediction never sees the aux
 * heads), the gradient reaching the aux heads, a tiny fine-tuning run with it on, and Primus refusing it.
 */
import { assert, assertEquals, assertRejects, assertThrows } from "../../assert.ts";
import {
  deepSupervisionLoss,
  deepSupervisionWeights,
  downsampleLabels,
  FinetuneConfigError,
  finetuneSegmentation,
  readFinetunedCheckpoint,
  type SegmentationDataset,
} from "../../../core/eval/mod.ts";
import { createRng } from "../../../core/data/mod.ts";
import { backward, Generator, scope, type Tensor, tensor, VERSION } from "../../../mod.ts";
import resenc, { ResEncUNet } from "../../../plugins/arch/resenc/mod.ts";
import primus from "../../../plugins/arch/primus/mod.ts";
import { assertClose, gpuTest, randomArray } from "../../helpers.ts";
import { diceCeReference } from "../../_helpers/dice_ce_ref.ts";

Deno.test("deep-supervision weights are nnU-Net's: 1/2^i, the lowest resolution 0, normalised", () => {
  // by hand: n = 5 → (1, 1/2, 1/4, 1/8, 0) / (15/8)
  assertClose(deepSupervisionWeights(5), [8 / 15, 4 / 15, 2 / 15, 1 / 15, 0], { atol: 1e-15 });
  assertClose(deepSupervisionWeights(3), [2 / 3, 1 / 3, 0], { atol: 1e-15 });
  assertEquals(deepSupervisionWeights(2), [1, 0]);
  assertEquals(deepSupervisionWeights(1), [1]);
  assertThrows(() => deepSupervisionWeights(0), RangeError, "positive number of outputs");
});

/** PyTorch's `nearest-exact` index rule: output o reads input ⌊(o + ½) · in / out⌋ (clamped). */
function nearestExactReference(y: ArrayLike<number>, inShape: number[], out: number[]): number[] {
  const [B, D, H, W] = inShape;
  const src = (o: number, n: number, m: number) => Math.min(Math.floor((o + 0.5) * (n / m)), n - 1);
  const result: number[] = [];
  for (let b = 0; b < B; b++) {
    for (let d = 0; d < out[0]; d++) {
      for (let h = 0; h < out[1]; h++) {
        for (let w = 0; w < out[2]; w++) {
          const [sd, sh, sw] = [src(d, D, out[0]), src(h, H, out[1]), src(w, W, out[2])];
          result.push(y[((b * D + sd) * H + sh) * W + sw]);
        }
      }
    }
  }
  return result;
}

gpuTest("downsampleLabels is nearest-exact (batchgeneratorsv2's DownsampleSegForDSTransform)", async () => {
  const cases: [number[], number[]][] = [
    [[2, 8, 4, 6], [4, 2, 3]], // factor 2: the odd voxels
    [[2, 8, 4, 6], [2, 4, 3]], // factors 4, 1, 2
    [[1, 9, 6, 3], [3, 2, 1]], // factor 3: the middle voxel
  ];
  for (const [shape, size] of cases) {
    const n = shape.reduce((a, b) => a * b, 1);
    const y = Array.from(randomArray(n, n + size[0], 0, 5), Math.floor);
    const out = scope(() => downsampleLabels(tensor(y, shape, { dtype: "i32" }), size));
    const got = await out.toArray();
    out.dispose();
    assertEquals(Array.from(got), nearestExactReference(y, shape, size), `${shape} → ${size}`);
  }
  scope(() => {
    const y = tensor(new Array(2 * 6 * 4 * 4).fill(1), [2, 6, 4, 4], { dtype: "i32" });
    assertThrows(() => downsampleLabels(y, [4, 2, 2]), RangeError, "not a whole multiple");
  });
});

gpuTest(
  "deepSupervisionLoss: Σ wᵢ (Dice + CE) at each scale, value and gradient against float64",
  async () => {
    const B = 2, C = 3, full = [4, 4, 4];
    const sizes = [full, [2, 2, 2], [1, 1, 1]];
    const weights = [2 / 3, 1 / 3, 0]; // by hand, as the weights test
    const y = Array.from(randomArray(B * 64, 5, 0, C), Math.floor);
    const xs = sizes.map((s, i) => randomArray(B * C * s[0] * s[1] * s[2], 20 + i, -2, 2));
    const targets = sizes.map((s) => nearestExactReference(y, [B, ...full], s));
    const logits = xs.map((x, i) => tensor(x, [B, C, ...sizes[i]], { requiresGrad: true }));
    const terms = scope(() => {
      const terms = deepSupervisionLoss(logits, tensor(y, [B, ...full], { dtype: "i32" }));
      backward(terms.loss);
      return terms;
    });
    const value = await terms.loss.item(), ce = await terms.ce.item();
    const grads = await Promise.all(logits.map((l) => l.grad?.toArray()));
    Object.values(terms).forEach((t) => t.dispose());
    const total = (xi: Float64Array[]) =>
      xi.reduce((sum, x, i) => sum + weights[i] * diceCeReference(x, targets[i], B, C), 0);
    assertClose([value], [total(xs)], { rtol: 1e-5, atol: 1e-6, label: "loss" });
    // ce is the full-resolution output's term
    let ce0 = 0;
    for (let i = 0; i < B * 64; i++) {
      const b = Math.floor(i / 64), s = i % 64;
      const col = Array.from({ length: C }, (_, c) => xs[0][(b * C + c) * 64 + s]);
      const m = Math.max(...col), z = col.reduce((a, v) => a + Math.exp(v - m), 0);
      ce0 -= col[y[i]] - m - Math.log(z);
    }
    assertClose([ce], [ce0 / (B * 64)], { rtol: 1e-5, atol: 1e-6, label: "ce" });
    const h = 1e-5;
    for (const i of [0, 1]) {
      const fd = Array.from({ length: xs[i].length }, (_, k) => {
        const plus = xs.map((x) => Float64Array.from(x)), minus = xs.map((x) => Float64Array.from(x));
        plus[i][k] += h;
        minus[i][k] -= h;
        return (total(plus) - total(minus)) / (2 * h);
      });
      assertClose(grads[i]!, fd, { rtol: 1e-3, atol: 2e-6, label: `d loss / d output ${i}` });
    }
    // the lowest resolution has weight 0: nnU-Net's wrapper does not score it, so no gradient
    assert(grads[2] === undefined || grads[2].every((g) => g === 0), "no gradient for the weight-0 output");
    logits.forEach((l) => l.dispose());
  },
);

/** A 4-stage ResEnc small enough for tests: outputs at 8³, 4³ and 2³ for an 8³ patch. */
const FOUR_STAGES = { features: [4, 4, 4, 4], blocksPerStage: [1, 1, 1, 1], strides: [1, 2, 2, 2] };

gpuTest("ResEnc: multi-scale outputs, [0] is forward's; the gradient reaches the aux heads", async () => {
  const net = scope(() =>
    new ResEncUNet(resenc.config.parse(FOUR_STAGES), {
      inChannels: 1,
      outChannels: 3,
      patchSize: [8, 8, 8],
      encoderOnly: false,
    }, new Generator(3))
  );
  const params = Object.fromEntries(net.namedParameters());
  const x = randomArray(2 * 512, 9, -1, 1);
  const y = Array.from(randomArray(2 * 512, 10, 0, 3), Math.floor);
  const headGrad = async (name: string) => {
    const g = params[`decoder.seg_layers.${name}.weight`].grad;
    return g ? Array.from(await g.toArray(), Math.abs).reduce((a, v) => a + v, 0) : 0;
  };
  const zeroGrads = () => {
    for (const p of Object.values(params)) {
      p.grad?.dispose();
      p.grad = undefined;
    }
  };
  try {
    const outs = scope(() => {
      const input = tensor(x, [2, 1, 8, 8, 8]);
      return [net.forward(input), ...net.forwardDeepSupervision(input)];
    });
    const plain = await outs[0].toArray(), first = await outs[1].toArray();
    const shapes = outs.slice(1).map((o) => o.shape), same = first.every((v, i) => v === plain[i]);
    outs.forEach((o) => o.dispose());
    assertEquals(shapes, [[2, 3, 8, 8, 8], [2, 3, 4, 4, 4], [2, 3, 2, 2, 2]]);
    assert(same, "the full-resolution output is forward()'s, bit for bit");
    scope(() => {
      const labels = tensor(y, [2, 8, 8, 8], { dtype: "i32" });
      backward(deepSupervisionLoss(net.forwardDeepSupervision(tensor(x, [2, 1, 8, 8, 8])), labels).loss);
    });
    // decoder stage s = 0 is the lowest resolution: seg_layers.2 → 8³, .1 → 4³ (weight 1/3), .0 → 2³ (0)
    assert((await headGrad("2")) > 0, "the full-resolution head gets a gradient");
    assert((await headGrad("1")) > 0, "the half-resolution aux head gets a gradient");
    assertEquals(await headGrad("0"), 0, "the weight-0 head gets none");
    zeroGrads();
    scope(() => {
      const labels = tensor(y, [2, 8, 8, 8], { dtype: "i32" });
      backward(deepSupervisionLoss([net.forward(tensor(x, [2, 1, 8, 8, 8]))], labels).loss);
    });
    assertEquals(await headGrad("1"), 0, "without deep supervision the aux head gets none");
  } finally {
    zeroGrads();
    net.dispose();
  }
});

/** A blob (class 1) inside a shell (class 2) with noise, at a seeded place. */
function blobDataset(count: number): SegmentationDataset {
  const shape: [number, number, number] = [12, 12, 12];
  return {
    name: "blobs",
    labels: { background: 0, core: 1, shell: 2 },
    channelNames: ["t1"],
    spacing: null,
    cases: Array.from({ length: count }, (_, k) => {
      const rng = createRng(k, "blob");
      const image = new Float32Array(12 ** 3), label = new Uint8Array(12 ** 3);
      const c = shape.map((s) => s / 2 - 2 + rng.int(4));
      for (let i = 0; i < 12 ** 3; i++) {
        const r = Math.hypot(Math.floor(i / 144) - c[0], (Math.floor(i / 12) % 12) - c[1], (i % 12) - c[2]);
        label[i] = r < 2.5 ? 1 : r < 4 ? 2 : 0;
        image[i] = label[i] + 0.3 * rng.normal();
      }
      return { id: `case_${k}`, image: [image], label, shape };
    }),
  };
}

gpuTest("fine-tuning with deep supervision runs and trains the aux head; Primus refuses it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const common = {
      dataset: blobDataset(4),
      coreVersion: VERSION,
      epochs: 1,
      stepsPerEpoch: 2,
      batch: 1,
      patch: [8, 8, 8] as [number, number, number],
      evaluate: false,
      deepSupervision: true,
      log: () => {},
    };
    const result = await finetuneSegmentation({
      ...common,
      arch: resenc,
      archConfig: FOUR_STAGES,
      out: `${dir}/run`,
      optimizerKind: "adamw",
      lr: 1e-2,
    });
    assertEquals([result.steps, result.stoppedBy], [2, undefined]);
    const end = await readFinetunedCheckpoint(result.checkpoint);
    assertEquals(end.segmentation.deepSupervision, true);
    // --optimizer adamw on a CNN: nnssl's Primus AdamW settings, the given lr, the CNN's clip
    const { optimizer, clipGradNorm } = end.runConfig;
    assertEquals([optimizer, clipGradNorm], [
      { name: "adamw", lr: 1e-2, betas: [0.9, 0.98], eps: 1e-8, weightDecay: 5e-2 },
      12,
    ]);
    // the network as the run built it (seed 0), before any step
    const initial = scope(() =>
      resenc.create({
        config: resenc.config.parse(FOUR_STAGES),
        inChannels: 1,
        outChannels: 3,
        patchSize: [8, 8, 8],
        encoderOnly: false,
        rng: new Generator(0),
      })
    );
    const before =
      await (Object.fromEntries(initial.namedParameters())["decoder.seg_layers.1.weight"] as Tensor)
        .toArray();
    initial.dispose();
    const after = end.weights["decoder.seg_layers.1.weight"].data;
    assert(after.some((v, i) => Math.abs(v - before[i]) > 1e-6), "the aux head moved");
    await assertRejects(
      () => finetuneSegmentation({ ...common, arch: primus, size: "tiny", out: `${dir}/primus` }),
      FinetuneConfigError,
      "no multi-scale decoder",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
