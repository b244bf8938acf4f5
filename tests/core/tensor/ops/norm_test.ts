/** Normalization ops against the float64 reference: values, gradients, fused vs unfused, chunked path. */
import * as ops from "../../../../core/tensor/mod.ts";
import * as R from "../../../../core/tensor/reference/norm.ts";
import type { RefTensor } from "../../../../core/tensor/reference/ops.ts";
import { assertThrows } from "../../../assert.ts";
import { checkOp, type OpCase } from "../../../op_harness.ts";
import { assertClose, gpuTest, randomArray } from "../../../helpers.ts";
import { checkOpDirect, withSmallBindings } from "../../../chunked_harness.ts";

const cases: OpCase[] = [
  {
    name: "instanceNorm() NCDHW with affine",
    inputs: [{ shape: [2, 3, 3, 4, 5] }, { shape: [3] }, { shape: [3] }],
    gpu: ([x, w, b]) => ops.instanceNorm(x, w, b),
    ref: ([x, w, b]) => R.instanceNormRef(x, w, b),
  },
  {
    name: "instanceNorm() at 2×5×7×9×11",
    inputs: [{ shape: [2, 5, 7, 9, 11], lo: -3, hi: 5 }, { shape: [5] }, { shape: [5] }],
    gpu: ([x, w, b]) => ops.instanceNorm(x, w, b),
    ref: ([x, w, b]) => R.instanceNormRef(x, w, b),
    grad: false,
  },
  {
    name: "instanceNorm() batch 1 without affine, 2D spatial",
    inputs: [{ shape: [1, 3, 5, 6] }],
    gpu: ([x]) => ops.instanceNorm(x),
    ref: ([x]) => R.instanceNormRef(x),
  },
  {
    name: "instanceNorm() batch 3, one spatial dim, eps 1e-3",
    inputs: [{ shape: [3, 5, 7] }, { shape: [5] }, { shape: [5] }],
    gpu: ([x, w, b]) => ops.instanceNorm(x, w, b, 1e-3),
    ref: ([x, w, b]) => R.instanceNormRef(x, w, b, 1e-3),
  },
  {
    name: "instanceNorm() of a long row uses several pieces",
    inputs: [{ shape: [1, 2, 5000], lo: 2, hi: 3 }, { shape: [2] }, { shape: [2] }],
    gpu: ([x, w, b]) => ops.instanceNorm(x, w, b),
    ref: ([x, w, b]) => R.instanceNormRef(x, w, b),
    grad: false,
    atol: 2e-5,
  },
  {
    name: "instanceNorm() of 300k voxels: one long row cut into pieces whose moments are merged",
    inputs: [{ shape: [1, 1, 300_000], lo: 10, hi: 12 }],
    gpu: ([x]) => ops.instanceNorm(x),
    ref: ([x]) => R.instanceNormRef(x),
    grad: false,
    atol: 5e-5,
  },
  {
    name: "groupNorm() with 2 groups of 3 channels",
    inputs: [{ shape: [2, 6, 3, 5] }, { shape: [6] }, { shape: [6] }],
    gpu: ([x, w, b]) => ops.groupNorm(x, 2, w, b),
    ref: ([x, w, b]) => R.groupNormRef(x, 2, w, b),
  },
  {
    name: "groupNorm() with one group, batch 3",
    inputs: [{ shape: [3, 5, 4] }, { shape: [5] }, { shape: [5] }],
    gpu: ([x, w, b]) => ops.groupNorm(x, 1, w, b),
    ref: ([x, w, b]) => R.groupNormRef(x, 1, w, b),
  },
  {
    name: "layerNorm() over the last dim",
    inputs: [{ shape: [3, 4, 13] }, { shape: [13] }, { shape: [13] }],
    gpu: ([x, w, b]) => ops.layerNorm(x, undefined, w, b),
    ref: ([x, w, b]) => R.layerNormRef(x, 13, w, b),
  },
  {
    name: "layerNorm() over the last two dims, weight only",
    inputs: [{ shape: [3, 4, 5] }, { shape: [4, 5] }],
    gpu: ([x, w]) => ops.layerNorm(x, [4, 5], w),
    ref: ([x, w]) => R.layerNormRef(x, 20, w),
  },
  {
    name: "layerNorm() with many rows splits the affine-gradient reduction",
    inputs: [{ shape: [700, 3] }, { shape: [3] }, { shape: [3] }],
    gpu: ([x, w, b]) => ops.layerNorm(x, 3, w, b),
    ref: ([x, w, b]) => R.layerNormRef(x, 3, w, b),
    gradAtol: 3e-4,
  },
  {
    name: "layerNormChannelsFirst() over C at each voxel",
    inputs: [{ shape: [2, 5, 3, 4, 2] }, { shape: [5] }, { shape: [5] }],
    gpu: ([x, w, b]) => ops.layerNormChannelsFirst(x, w, b),
    ref: ([x, w, b]) => R.layerNormChannelsFirstRef(x, w, b),
  },
  {
    name: "layerNormChannelsFirst() without affine, eps 1e-5",
    inputs: [{ shape: [1, 7, 9] }],
    gpu: ([x]) => ops.layerNormChannelsFirst(x, undefined, undefined, 1e-5),
    ref: ([x]) => R.layerNormChannelsFirstRef(x, undefined, undefined, 1e-5),
  },
  {
    name: "instanceNormAct() with residual and LeakyReLU(0.01)",
    inputs: [{ shape: [2, 3, 3, 4, 5] }, { shape: [3] }, { shape: [3] }, { shape: [2, 3, 3, 4, 5] }],
    gpu: ([x, w, b, r]) => ops.instanceNormAct(x, w, b, { residual: r }),
    ref: ([x, w, b, r]) => R.groupNormActRef(x, 3, w, b, { residual: r }),
  },
  {
    name: "instanceNormAct() without residual, ReLU (slope 0)",
    inputs: [{ shape: [3, 5, 3, 3, 3] }, { shape: [5] }, { shape: [5] }],
    gpu: ([x, w, b]) => ops.instanceNormAct(x, w, b, { slope: 0 }),
    ref: ([x, w, b]) => R.groupNormActRef(x, 5, w, b, { slope: 0 }),
  },
  {
    name: "groupNormAct() with residual and slope 0.2",
    inputs: [{ shape: [2, 6, 7] }, { shape: [6] }, { shape: [6] }, { shape: [2, 6, 7] }],
    gpu: ([x, w, b, r]) => ops.groupNormAct(x, 3, w, b, { residual: r, slope: 0.2 }),
    ref: ([x, w, b, r]) => R.groupNormActRef(x, 3, w, b, { residual: r, slope: 0.2 }),
  },
];

for (const c of cases) {
  gpuTest(
    `${c.name} matches the reference${c.grad === false ? "" : " (values and gradients)"}`,
    () => checkOp(c),
  );
}

function refInputs(shapes: number[][], seed: number): RefTensor[] {
  return shapes.map((shape, i) => ({
    shape,
    data: Float64Array.from(
      Float32Array.from(randomArray(shape.reduce((a, b) => a * b, 1), seed + i, -2, 2)),
    ),
  }));
}

gpuTest(
  "instanceNormAct() equals the unfused instanceNorm → add → leakyRelu in values and gradients",
  async () => {
    const shape = [2, 5, 5, 6, 7];
    const [xr, wr, br, rr, gr] = refInputs([shape, [5], [5], shape, shape], 17);
    const run = (fused: boolean) =>
      ops.scope(() => {
        const [x, w, b, r] = [xr, wr, br, rr].map((t) =>
          ops.tensor(Float32Array.from(t.data), t.shape, { requiresGrad: true })
        );
        const y = fused
          ? ops.instanceNormAct(x, w, b, { residual: r, slope: 0.01 })
          : ops.leakyRelu(ops.add(ops.instanceNorm(x, w, b), r), 0.01);
        ops.backward(ops.sum(ops.mul(y, ops.tensor(Float32Array.from(gr.data), shape))));
        const grads = [x, w, b, r].map((t) => t.grad!);
        for (const t of [x, w, b, r]) t.grad = undefined;
        return [y, ...grads];
      });
    const fused = run(true);
    const unfused = run(false);
    const labels = ["y", "dx", "dweight", "dbias", "dresidual"];
    for (let i = 0; i < fused.length; i++) {
      assertClose(await fused[i].toFloat64(), await unfused[i].toFloat64(), {
        rtol: 1e-4,
        atol: i === 2 || i === 3 ? 2e-4 : 2e-5,
        label: `fused vs unfused ${labels[i]}`,
      });
    }
    for (const t of [...fused, ...unfused]) t.dispose();
  },
);

gpuTest("instanceNorm() stays accurate for a large mean over a large volume (no E[x²] − E[x]²)", async () => {
  const shape = [1, 2, 48, 48, 40];
  const n = 2 * 48 * 48 * 40;
  const values = Float32Array.from(randomArray(n, 99, 999, 1001));
  const y = ops.scope(() => ops.instanceNorm(ops.tensor(values, shape)));
  const expected = R.instanceNormRef({ shape, data: Float64Array.from(values) });
  assertClose(await y.toFloat64(), expected.data, { rtol: 0, atol: 3e-4, label: "mean 1000, std 0.58" });
  y.dispose();
});

gpuTest(
  "instanceNorm() runs on f16 storage with f32 statistics",
  { requires: ["shader-f16"] },
  async () => {
    const shape = [2, 3, 4, 5, 6];
    const [xr, wr, br] = refInputs([shape, [3], [3]], 5);
    const x16 = Float64Array.from(Float16Array.from(xr.data));
    const y = ops.scope(() =>
      ops.instanceNorm(
        ops.tensor(x16, shape, { dtype: "f16" }),
        ops.tensor(wr.data, [3]),
        ops.tensor(br.data, [3]),
      )
    );
    const expected = R.instanceNormRef({ shape, data: x16 }, wr, br);
    assertClose(await y.toFloat64(), expected.data, { rtol: 2e-3, atol: 4e-3 });
    y.dispose();
  },
);

gpuTest("normalization ops reject bad shapes and parameters with the op's name", () => {
  ops.scope(() => {
    const x = ops.zeros([2, 6, 3]);
    assertThrows(
      () => ops.instanceNorm(x, ops.zeros([5])),
      RangeError,
      "instanceNorm(): weight has shape [5]",
    );
    assertThrows(() => ops.groupNorm(x, 4), RangeError, "6 channels cannot be split into 4 groups");
    assertThrows(() => ops.layerNorm(x, [6]), RangeError, "layerNorm(): normalizedShape [6]");
    assertThrows(
      () => ops.instanceNormAct(x, undefined, undefined, { slope: -0.1 }),
      RangeError,
      "slope must be >= 0",
    );
    assertThrows(
      () => ops.instanceNormAct(x, undefined, undefined, { residual: ops.zeros([2, 6]) }),
      RangeError,
      "residual has shape",
    );
    assertThrows(
      () => ops.instanceNorm(ops.zeros([2, 3, 4], { dtype: "i32" })),
      TypeError,
      "must be f32 or f16",
    );
  });
});

Deno.test({
  name: "normalization ops split into chunks when tensors exceed the binding limit",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withSmallBindings(2048, async () => {
      const chunked: OpCase[] = [
        {
          name: "instanceNormAct chunked (pieces of rows over several dispatches)",
          inputs: [{ shape: [2, 3, 5, 7, 9] }, { shape: [3] }, { shape: [3] }, { shape: [2, 3, 5, 7, 9] }],
          gpu: ([x, w, b, r]) => ops.instanceNormAct(x, w, b, { residual: r }),
          ref: ([x, w, b, r]) => R.groupNormActRef(x, 3, w, b, { residual: r }),
        },
        {
          name: "instanceNormAct chunked, 4 voxels per invocation (S a multiple of 4)",
          inputs: [{ shape: [2, 3, 4, 6, 5] }, { shape: [3] }, { shape: [3] }, { shape: [2, 3, 4, 6, 5] }],
          gpu: ([x, w, b, r]) => ops.instanceNormAct(x, w, b, { residual: r }),
          ref: ([x, w, b, r]) => R.groupNormActRef(x, 3, w, b, { residual: r }),
        },
        {
          name: "layerNorm chunked, 4 elements per invocation (D a multiple of 4)",
          inputs: [{ shape: [41, 16] }, { shape: [16] }, { shape: [16] }],
          gpu: ([x, w, b]) => ops.layerNorm(x, 16, w, b),
          ref: ([x, w, b]) => R.layerNormRef(x, 16, w, b),
        },
        {
          name: "instanceNorm chunked, one channel larger than a binding",
          inputs: [{ shape: [1, 2, 1100] }, { shape: [2] }, { shape: [2] }],
          gpu: ([x, w, b]) => ops.instanceNorm(x, w, b),
          ref: ([x, w, b]) => R.instanceNormRef(x, w, b),
        },
        {
          name: "groupNorm chunked",
          inputs: [{ shape: [3, 4, 181] }, { shape: [4] }, { shape: [4] }],
          gpu: ([x, w, b]) => ops.groupNorm(x, 2, w, b),
          ref: ([x, w, b]) => R.groupNormRef(x, 2, w, b),
        },
        {
          name: "layerNorm chunked",
          inputs: [{ shape: [97, 11] }, { shape: [11] }, { shape: [11] }],
          gpu: ([x, w, b]) => ops.layerNorm(x, 11, w, b),
          ref: ([x, w, b]) => R.layerNormRef(x, 11, w, b),
        },
        {
          name: "layerNormChannelsFirst chunked",
          inputs: [{ shape: [2, 5, 13, 11] }, { shape: [5] }, { shape: [5] }],
          gpu: ([x, w, b]) => ops.layerNormChannelsFirst(x, w, b),
          ref: ([x, w, b]) => R.layerNormChannelsFirstRef(x, w, b),
        },
        {
          name: "layerNormChannelsFirst chunked, one voxel column larger than a binding",
          inputs: [{ shape: [1, 6, 150] }, { shape: [6] }, { shape: [6] }],
          gpu: ([x, w, b]) => ops.layerNormChannelsFirst(x, w, b),
          ref: ([x, w, b]) => R.layerNormChannelsFirstRef(x, w, b),
        },
        {
          name: "instanceNorm chunked with more than 64 pieces per channel",
          inputs: [{ shape: [1, 2, 40_000], lo: 3, hi: 5 }],
          gpu: ([x]) => ops.instanceNorm(x),
          ref: ([x]) => R.instanceNormRef(x),
          grad: false,
          atol: 3e-5,
        },
      ];
      for (const c of chunked) await checkOpDirect(c);
    }),
});
