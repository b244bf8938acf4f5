/**
 * The norm ops' launch counts (instance/group norm, fused and masked: 2 passes forward, 3 backward; a
 * regression to more passes fails here), and the merged passes' workgroup-merge paths (rows of at least
 * a workgroup's span, several partial states per statistic) against the float64 references, with
 * finite-difference gradients, at the device's limits and with tiny bindings (several chunks).
 */
import * as ops from "../../../../core/tensor/mod.ts";
import * as R from "../../../../core/tensor/reference/norm.ts";
import type { RefTensor } from "../../../../core/tensor/reference/ops.ts";
import type { Gpu } from "../../../../core/gpu/mod.ts";
import { assertEquals } from "../../../assert.ts";
import { checkOp, type OpCase } from "../../../op_harness.ts";
import { gpuTest, randomArray, seededRandom } from "../../../helpers.ts";
import { checkOpDirect, withSmallBindings } from "../../../chunked_harness.ts";

/** Dispatches recorded by `fn`. */
function launches(gpu: Gpu, fn: () => void): number {
  const before = gpu.counters.dispatches;
  fn();
  return gpu.counters.dispatches - before;
}

/** A mask [n, 1, s] with about `fraction` of its voxels visible (seeded). */
function mask(n: number, s: number, fraction: number, seed: number): RefTensor {
  const next = seededRandom(seed);
  return { shape: [n, 1, s], data: Float64Array.from({ length: n * s }, () => (next() < fraction ? 1 : 0)) };
}

/** Forward and backward launch counts of a norm op on random inputs (every input wants a gradient). */
function countPasses(
  gpu: Gpu,
  shapes: number[][],
  op: (xs: ops.Tensor[]) => ops.Tensor,
): { forward: number; backward: number } {
  return ops.scope(() => {
    const xs = shapes.map((shape, i) =>
      ops.tensor(Float32Array.from(randomArray(shape.reduce((a, b) => a * b, 1), 11 + i, -2, 3)), shape, {
        requiresGrad: true,
      })
    );
    let y!: ops.Tensor;
    const forward = launches(gpu, () => {
      y = op(xs);
    });
    const seed = ops.tensor(Float32Array.from(randomArray(y.size, 5, -1, 1)), y.shape);
    const backward = launches(gpu, () => ops.noGrad(() => y.node!.backward(seed)));
    return { forward, backward };
  });
}

gpuTest("instance and group norms take 2 passes forward and 3 backward (fused and masked too)", (gpu) => {
  const x = [2, 3, 4, 5];
  const c = [3];
  const visible = ops.tensor(Float32Array.from(mask(2, 20, 0.5, 3).data), [2, 1, 4, 5]);
  const cases: [string, number[][], (xs: ops.Tensor[]) => ops.Tensor, number, number][] = [
    ["instanceNorm", [x, c, c], ([a, w, b]) => ops.instanceNorm(a, w, b), 2, 3],
    ["instanceNorm without affine", [x], ([a]) => ops.instanceNorm(a), 2, 2],
    [
      "instanceNorm, 2 partial states per statistic",
      [[1, 2, 5000], [2], [2]],
      ([a, w, b]) => ops.instanceNorm(a, w, b),
      2,
      3,
    ],
    [
      "instanceNormAct + residual",
      [x, c, c, x],
      ([a, w, b, r]) => ops.instanceNormAct(a, w, b, { residual: r }),
      2,
      3,
    ],
    ["groupNorm", [[2, 6, 3, 5], [6], [6]], ([a, w, b]) => ops.groupNorm(a, 2, w, b), 2, 3],
    [
      "groupNormAct + residual",
      [[2, 6, 5], [6], [6], [2, 6, 5]],
      ([a, w, b, r]) => ops.groupNormAct(a, 3, w, b, { residual: r, slope: 0.2 }),
      2,
      3,
    ],
    [
      "maskedInstanceNorm + residual + LeakyReLU",
      [x, c, c, x],
      ([a, w, b, r]) => ops.maskedInstanceNorm(a, visible, w, b, { residual: r, slope: 0.01 }),
      2,
      3,
    ],
    // layer norm over rows shares the merged forward; its backward is unchanged (5 passes with affine)
    ["layerNorm", [[4, 12], [12], [12]], ([a, w, b]) => ops.layerNorm(a, 12, w, b), 2, 6],
  ];
  try {
    for (const [name, shapes, op, forward, backward] of cases) {
      assertEquals(countPasses(gpu, shapes, op), { forward, backward }, `${name}: launches`);
    }
  } finally {
    visible.dispose();
  }
});

/** Cases whose rows span whole workgroups with several partial states per statistic. */
const merged: OpCase[] = [
  {
    name: "groupNorm(): rows of 270, one voxel per invocation, 2 channel sums per coefficient",
    inputs: [{ shape: [2, 4, 135] }, { shape: [4] }, { shape: [4] }],
    gpu: ([x, w, b]) => ops.groupNorm(x, 2, w, b),
    ref: ([x, w, b]) => R.groupNormRef(x, 2, w, b),
  },
  {
    name: "groupNormAct() + residual: rows of 1032, 4 voxels per invocation",
    inputs: [{ shape: [1, 4, 516] }, { shape: [4] }, { shape: [4] }, { shape: [1, 4, 516] }],
    gpu: ([x, w, b, r]) => ops.groupNormAct(x, 2, w, b, { residual: r, slope: 0.1 }),
    ref: ([x, w, b, r]) => R.groupNormActRef(x, 2, w, b, { residual: r, slope: 0.1 }),
  },
];

for (const c of merged) gpuTest(`${c.name} matches the reference (values and gradients)`, () => checkOp(c));

Deno.test({
  name: "merged norm passes merge per workgroup across chunks when tensors exceed the binding limit",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withSmallBindings(2048, async () => {
      const m = mask(1, 401, 0.6, 9);
      const cases: OpCase[] = [
        {
          name: "instanceNormAct + residual, 401 voxels (3 partial states, one voxel per invocation)",
          inputs: [{ shape: [1, 2, 401] }, { shape: [2] }, { shape: [2] }, { shape: [1, 2, 401] }],
          gpu: ([x, w, b, r]) => ops.instanceNormAct(x, w, b, { residual: r }),
          ref: ([x, w, b, r]) => R.groupNormActRef(x, 2, w, b, { residual: r }),
        },
        {
          name: "groupNorm, rows of 802 over 2 channels",
          inputs: [{ shape: [1, 4, 401] }, { shape: [4] }, { shape: [4] }],
          gpu: ([x, w, b]) => ops.groupNorm(x, 2, w, b),
          ref: ([x, w, b]) => R.groupNormRef(x, 2, w, b),
        },
        {
          name: "maskedInstanceNorm + residual + LeakyReLU, 401 voxels",
          inputs: [{ shape: [1, 2, 401], lo: -2, hi: 3 }, { shape: [2] }, { shape: [2] }, {
            shape: [1, 2, 401],
          }],
          gpu: ([x, w, b, r]) =>
            ops.maskedInstanceNorm(x, ops.tensor(Float32Array.from(m.data), m.shape), w, b, {
              residual: r,
              slope: 0.01,
            }),
          ref: ([x, w, b, r]) => R.maskedInstanceNormRef(x, m, w, b, { residual: r, slope: 0.01 }),
        },
      ];
      for (const c of cases) await checkOpDirect(c);
    }),
});
