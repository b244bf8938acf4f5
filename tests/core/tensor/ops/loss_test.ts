/** Losses against the float64 reference (values and gradients), masks, NT-Xent, chunked path. */
import * as ops from "../../../../core/tensor/mod.ts";
import * as R from "../../../../core/tensor/reference/loss.ts";
import * as RP from "../../../../core/tensor/reference/pool.ts";
import type { RefTensor } from "../../../../core/tensor/reference/ops.ts";
import { assert, assertEquals } from "../../../assert.ts";
import { checkOp, type OpCase } from "../../../op_harness.ts";
import { assertClose, gpuTest, seededRandom } from "../../../helpers.ts";
import { checkOpDirect, withSmallBindings } from "../../../chunked_harness.ts";

/** A fixed 0/1 mask (about 60% ones, never all ones) as a reference tensor. */
function binaryMask(shape: number[], seed: number): RefTensor {
  const next = seededRandom(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const data = Float64Array.from({ length: n }, () => (next() < 0.6 ? 1 : 0));
  data[0] = 0;
  return { shape, data };
}

/** Fixed labels in [0, c), with `ignoreEvery`-th voxels set to −100 when given. */
function labelsFor(n: number, c: number, seed: number, ignoreEvery = 0): Int32Array {
  const next = seededRandom(seed);
  return Int32Array.from(
    { length: n },
    (_, i) => (ignoreEvery && i % ignoreEvery === 3 ? -100 : Math.floor(next() * c)),
  );
}

const gpuMask = (m: RefTensor) => ops.tensor(Float32Array.from(m.data), m.shape);
const gpuLabels = (l: Int32Array, shape: number[]) => ops.tensor(l, shape, { dtype: "i32" });

const voxelMask = binaryMask([2, 1, 3, 4, 5], 1);
const fullMask: RefTensor = {
  shape: [2, 3, 4, 5],
  data: binaryMask([2, 3, 4, 5], 2).data.map((v, i) => v * (0.5 + (i % 3))),
};
const bigMask = binaryMask([2, 1, 7, 9, 11], 3);
const ceLabels = labelsFor(2 * 15, 4, 4, 7);
const ceMask = binaryMask([2, 3, 5], 5);
const diceLabels = labelsFor(2 * 20, 3, 6);
const diceMask = binaryMask([2, 4, 5], 7);
const denseTarget: RefTensor = {
  shape: [3, 2, 7],
  data: binaryMask([3, 2, 7], 11).data.map((v, i) => v * (0.3 + (i % 5) / 7)),
};

const cases: OpCase[] = [
  {
    name: "mseLoss() without mask",
    inputs: [{ shape: [2, 3, 4, 5] }, { shape: [2, 3, 4, 5] }],
    gpu: ([a, b]) => ops.mseLoss(a, b),
    ref: ([a, b]) => R.mseLossRef(a, b),
  },
  {
    name: "mseLoss() with a voxel mask [N, 1, D, H, W]",
    inputs: [{ shape: [2, 3, 3, 4, 5] }, { shape: [2, 3, 3, 4, 5] }],
    gpu: ([a, b]) => ops.mseLoss(a, b, { mask: gpuMask(voxelMask) }),
    ref: ([a, b]) => R.mseLossRef(a, b, voxelMask),
  },
  {
    name: "mseLoss() with full-shape weights and reduction sum",
    inputs: [{ shape: [2, 3, 4, 5] }, { shape: [2, 3, 4, 5] }],
    gpu: ([a, b]) => ops.mseLoss(a, b, { mask: gpuMask(fullMask), reduction: "sum" }),
    ref: ([a, b]) => R.mseLossRef(a, b, fullMask, "sum"),
    rtol: 1e-5,
    atol: 1e-4,
  },
  {
    name: "mseLoss() with a voxel mask at 2×5×7×9×11",
    inputs: [{ shape: [2, 5, 7, 9, 11] }, { shape: [2, 5, 7, 9, 11] }],
    gpu: ([a, b]) => ops.mseLoss(a, b, { mask: gpuMask(bigMask) }),
    ref: ([a, b]) => R.mseLossRef(a, b, bigMask),
    grad: false,
  },
  {
    name: "l1Loss() with a voxel mask",
    inputs: [{ shape: [2, 3, 3, 4, 5] }, { shape: [2, 3, 3, 4, 5] }],
    gpu: ([a, b]) => ops.l1Loss(a, b, { mask: gpuMask(voxelMask) }),
    ref: ([a, b]) => R.l1LossRef(a, b, voxelMask),
  },
  {
    name: "crossEntropy() over classes per voxel with ignored voxels",
    inputs: [{ shape: [2, 4, 3, 5], lo: -3, hi: 3 }],
    gpu: ([x]) => ops.crossEntropy(x, gpuLabels(ceLabels, [2, 3, 5])),
    ref: ([x]) => R.crossEntropyRef(x, ceLabels),
  },
  {
    name: "crossEntropy() with a voxel mask",
    inputs: [{ shape: [2, 4, 3, 5], lo: -3, hi: 3 }],
    gpu: ([x]) => ops.crossEntropy(x, gpuLabels(ceLabels, [2, 3, 5]), { mask: gpuMask(ceMask) }),
    ref: ([x]) => R.crossEntropyRef(x, ceLabels, { mask: ceMask }),
  },
  {
    name: "crossEntropy() on [N, C] logits with large values",
    inputs: [{ shape: [6, 5], lo: 50, hi: 90 }],
    gpu: ([x]) => ops.crossEntropy(x, gpuLabels(Int32Array.of(0, 4, 2, 2, 1, 3), [6])),
    ref: ([x]) => R.crossEntropyRef(x, [0, 4, 2, 2, 1, 3]),
    atol: 1e-4,
  },
  {
    name: "crossEntropy() at 2×5×7×9×11",
    inputs: [{ shape: [2, 5, 7, 9, 11], lo: -4, hi: 4 }],
    gpu: ([x]) => ops.crossEntropy(x, gpuLabels(labelsFor(2 * 693, 5, 8), [2, 7, 9, 11])),
    ref: ([x]) => R.crossEntropyRef(x, labelsFor(2 * 693, 5, 8)),
    grad: false,
  },
  {
    name: "softDiceLoss() with labels, per sample, without background",
    inputs: [{ shape: [2, 3, 4, 5], lo: 0.05, hi: 0.95 }],
    gpu: ([p]) => ops.softDiceLoss(p, gpuLabels(diceLabels, [2, 4, 5])),
    ref: ([p]) => R.softDiceRef(p, { labels: diceLabels }),
  },
  {
    name: "softDiceLoss() batch Dice with background, smooth 1, masked",
    inputs: [{ shape: [2, 3, 4, 5], lo: 0.05, hi: 0.95 }],
    gpu: ([p]) =>
      ops.softDiceLoss(p, gpuLabels(diceLabels, [2, 4, 5]), {
        batchDice: true,
        includeBackground: true,
        smooth: 1,
        mask: gpuMask(diceMask),
      }),
    ref: ([p]) =>
      R.softDiceRef(p, { labels: diceLabels }, {
        batchDice: true,
        includeBackground: true,
        smooth: 1,
        mask: diceMask,
      }),
  },
  {
    name: "softDiceLoss() with a dense target",
    inputs: [{ shape: [3, 2, 7], lo: 0.05, hi: 0.95 }],
    gpu: ([p]) =>
      ops.softDiceLoss(p, ops.tensor(Float32Array.from(denseTarget.data), denseTarget.shape), {
        includeBackground: true,
      }),
    ref: ([p]) => R.softDiceRef(p, { dense: denseTarget }, { includeBackground: true }),
  },
  {
    name: "cosineSimilarity() along the last dim",
    inputs: [{ shape: [4, 7] }, { shape: [4, 7] }],
    gpu: ([a, b]) => ops.cosineSimilarity(a, b),
    ref: ([a, b]) => R.cosineSimilarityRef(a, b),
  },
  {
    name: "cosineSimilarity() along a middle dim",
    inputs: [{ shape: [3, 5, 2] }, { shape: [3, 5, 2] }],
    gpu: ([a, b]) => ops.cosineSimilarity(a, b, 1),
    ref: ([a, b]) => R.cosineSimilarityRef(a, b, 1),
  },
  {
    name: "l2Normalize() along the last dim",
    inputs: [{ shape: [4, 7] }],
    gpu: ([x]) => ops.l2Normalize(x),
    ref: ([x]) => R.l2NormalizeRef(x),
  },
  {
    name: "l2Normalize() along dim 0",
    inputs: [{ shape: [2, 3, 4] }],
    gpu: ([x]) => ops.l2Normalize(x, 0),
    ref: ([x]) => R.l2NormalizeRef(x, 0),
  },
  {
    name: "logSumExp() along the last dim with large values",
    inputs: [{ shape: [3, 9], lo: 60, hi: 95 }],
    gpu: ([x]) => ops.logSumExp(x),
    ref: ([x]) => R.logSumExpRef(x),
    atol: 1e-4,
  },
  {
    name: "logSumExp() along a middle dim with keepDims",
    inputs: [{ shape: [2, 5, 3], lo: -3, hi: 3 }],
    gpu: ([x]) => ops.logSumExp(x, 1, true),
    ref: ([x]) => R.logSumExpRef(x, 1, true),
  },
  {
    name: "logSumExp() over a long dim splits it into pieces",
    inputs: [{ shape: [2, 3000], lo: -3, hi: 3 }],
    gpu: ([x]) => ops.logSumExp(x, 1),
    ref: ([x]) => R.logSumExpRef(x, 1),
    grad: false,
  },
];

/** NT-Xent of z [2B, D] from the pieces: normalize, similarity matmul, mask the diagonal, cross-entropy. */
function ntXent(z: ops.Tensor, tau: number): ops.Tensor {
  const rows = z.shape[0];
  const zn = ops.l2Normalize(z, 1);
  const sim = ops.mulScalar(ops.matmul(zn, zn, { transposeB: true }), 1 / tau);
  const diagonal = ops.tensor(
    Float32Array.from({ length: rows * rows }, (_, i) => (i % (rows + 1) === 0 ? -1e4 : 0)),
    [rows, rows],
  );
  const positives = Int32Array.from({ length: rows }, (_, i) => (i + rows / 2) % rows);
  return ops.crossEntropy(ops.add(sim, diagonal), ops.tensor(positives, [rows], { dtype: "i32" }));
}

cases.push(
  {
    name: "mseLoss() of 300k elements merges its 74 partial sums in two levels",
    inputs: [{ shape: [1, 1, 300_000] }, { shape: [1, 1, 300_000] }],
    gpu: ([a, b]) => ops.mseLoss(a, b),
    ref: ([a, b]) => R.mseLossRef(a, b),
    grad: false,
  },
  {
    name: "logSumExp() over 20k values merges 313 partial states in two levels",
    inputs: [{ shape: [1, 20_000], lo: -5, hi: 5 }],
    gpu: ([x]) => ops.logSumExp(x, 1),
    ref: ([x]) => R.logSumExpRef(x, 1),
    grad: false,
  },
);

cases.push({
  name: "NT-Xent composed of l2Normalize, matmul and crossEntropy",
  inputs: [{ shape: [6, 8] }],
  gpu: ([z]) => ntXent(z, 0.5),
  ref: ([z]) => R.ntXentRef(z, 0.5),
});

for (const c of cases) {
  gpuTest(
    `${c.name} matches the reference${c.grad === false ? "" : " (values and gradients)"}`,
    () => checkOp(c),
  );
}

gpuTest("an all-zero mask gives loss 0 and zero gradients", async () => {
  const pred = ops.tensor([1, 2, 3, 4], [1, 1, 4], { requiresGrad: true });
  const loss = ops.scope(() => {
    const l = ops.mseLoss(pred, ops.zeros([1, 1, 4]), { mask: ops.zeros([1, 4]) });
    ops.backward(l);
    return l;
  });
  assertEquals(await loss.item(), 0);
  assertEquals([...await pred.grad!.toArray()], [0, 0, 0, 0]);
  const ce = ops.scope(() =>
    ops.crossEntropy(ops.zeros([2, 3]), ops.tensor([-100, -100], [2], { dtype: "i32" }))
  );
  assertEquals(await ce.item(), 0);
  for (const t of [pred, loss, ce]) t.dispose();
});

gpuTest("crossEntropy() turns a label outside [0, C) into a NaN loss", async () => {
  const loss = ops.scope(() =>
    ops.crossEntropy(ops.zeros([2, 3]), ops.tensor([1, 3], [2], { dtype: "i32" }))
  );
  assert(Number.isNaN(await loss.item()), "expected NaN");
  loss.dispose();
});

Deno.test({
  name: "losses split into chunks when tensors exceed the binding limit",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withSmallBindings(2048, async () => {
      const mask = binaryMask([2, 1, 9, 35], 9);
      const labels = labelsFor(2 * 130, 5, 10, 9);
      const chunked: OpCase[] = [
        {
          name: "mseLoss masked chunked",
          inputs: [{ shape: [2, 3, 9, 35] }, { shape: [2, 3, 9, 35] }],
          gpu: ([a, b]) => ops.mseLoss(a, b, { mask: gpuMask(mask) }),
          ref: ([a, b]) => R.mseLossRef(a, b, mask),
        },
        {
          name: "crossEntropy chunked (channel blocks carried over dispatches)",
          inputs: [{ shape: [2, 5, 130], lo: -3, hi: 3 }],
          gpu: ([x]) => ops.crossEntropy(x, gpuLabels(labels, [2, 130])),
          ref: ([x]) => R.crossEntropyRef(x, labels),
        },
        {
          name: "softDiceLoss chunked",
          inputs: [{ shape: [2, 5, 130], lo: 0.05, hi: 0.95 }],
          gpu: ([p]) => ops.softDiceLoss(p, gpuLabels(labels.map((v) => Math.max(v, 0)), [2, 130])),
          ref: ([p]) => R.softDiceRef(p, { labels: labels.map((v) => Math.max(v, 0)) }),
        },
        {
          name: "cosineSimilarity chunked",
          inputs: [{ shape: [3, 300] }, { shape: [3, 300] }],
          gpu: ([a, b]) => ops.cosineSimilarity(a, b, 1),
          ref: ([a, b]) => R.cosineSimilarityRef(a, b, 1),
        },
        {
          name: "l2Normalize chunked",
          inputs: [{ shape: [7, 90] }],
          gpu: ([x]) => ops.l2Normalize(x, 0),
          ref: ([x]) => R.l2NormalizeRef(x, 0),
        },
        {
          name: "logSumExp chunked",
          inputs: [{ shape: [3, 250], lo: -3, hi: 3 }],
          gpu: ([x]) => ops.logSumExp(x, 1),
          ref: ([x]) => R.logSumExpRef(x, 1),
        },
        {
          name: "mseLoss chunked with more than 64 pieces",
          inputs: [{ shape: [2, 3, 7000] }, { shape: [2, 3, 7000] }],
          gpu: ([a, b]) => ops.mseLoss(a, b),
          ref: ([a, b]) => R.mseLossRef(a, b),
          grad: false,
        },
      ];
      for (const c of chunked) await checkOpDirect(c);
    }),
});

gpuTest(
  "losses and pooling run on f16 storage with f32 accumulation",
  { requires: ["shader-f16"] },
  async () => {
    const shape = [2, 3, 4, 6, 5];
    const n = shape.reduce((a, b) => a * b, 1);
    const next = seededRandom(21);
    const a = Float64Array.from(Float16Array.from({ length: n }, () => next() * 2 - 1));
    const b = Float64Array.from(Float16Array.from({ length: n }, () => next() * 2 - 1));
    const [mse, pooled] = ops.scope(() => {
      const ta = ops.tensor(a, shape, { dtype: "f16" });
      return [ops.mseLoss(ta, ops.tensor(b, shape, { dtype: "f16" })), ops.avgPool3d(ta, 2)];
    });
    const expected = R.mseLossRef({ shape, data: a }, { shape, data: b }).data[0];
    assertClose([await mse.item()], [expected], { rtol: 2e-3, atol: 0 });
    const pool = RP.avgPool3dRef({ shape, data: a }, 2);
    assertClose(await pooled.toFloat64(), pool.data, { rtol: 2e-3, atol: 2e-3 });
    mse.dispose();
    pooled.dispose();
  },
);
