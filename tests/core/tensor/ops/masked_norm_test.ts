/**
 * The masked (sparse) instance norm against its float64 reference: random inputs and masks (never all
 * ones alone), samples with few visible voxels and one with none, the fused residual and LeakyReLU,
 * finite-difference gradients, u8 masks, f16 storage, and the chunked path.
 */
import * as ops from "../../../../core/tensor/mod.ts";
import * as R from "../../../../core/tensor/reference/norm.ts";
import type { RefTensor } from "../../../../core/tensor/reference/ops.ts";
import { assert, assertEquals, assertThrows } from "../../../assert.ts";
import { checkOp, type OpCase } from "../../../op_harness.ts";
import { assertClose, gpuTest, randomArray, seededRandom } from "../../../helpers.ts";
import { checkOpDirect, withSmallBindings } from "../../../chunked_harness.ts";

/**
 * A mask [N, 1, ...spatial] with `visible[n]` voxels visible in sample n (a number ≥ 1 is a count, a
 * fraction below 1 a probability per voxel), at seeded random positions.
 */
function makeMask(n: number, spatial: number[], visible: number[], seed: number): RefTensor {
  const s = spatial.reduce((a, b) => a * b, 1);
  const data = new Float64Array(n * s);
  const next = seededRandom(seed);
  for (let i = 0; i < n; i++) {
    if (visible[i] < 1) {
      for (let v = 0; v < s; v++) data[i * s + v] = next() < visible[i] ? 1 : 0;
    } else {
      const order = Array.from({ length: s }, (_, v) => v);
      for (let k = 0; k < visible[i]; k++) {
        const j = k + Math.floor(next() * (s - k));
        [order[k], order[j]] = [order[j], order[k]];
        data[i * s + order[k]] = 1;
      }
    }
  }
  return { shape: [n, 1, ...spatial], data };
}

const onGpu = (m: RefTensor, dtype: "f32" | "u8" = "f32") =>
  dtype === "u8"
    ? ops.tensor(Uint8Array.from(m.data), m.shape, { dtype: "u8" })
    : ops.tensor(Float32Array.from(m.data), m.shape);

/** A case of the masked norm on x [N, C, ...spatial] with a fixed mask (not an input: it has no gradient). */
function maskedCase(
  name: string,
  shape: number[],
  visible: number[],
  options: { affine?: boolean; residual?: boolean; slope?: number; eps?: number; u8?: boolean } = {},
  tolerances: Partial<OpCase> = {},
): OpCase {
  const [n, c, ...spatial] = shape;
  const mask = makeMask(n, spatial, visible, shape.reduce((a, b) => a * b, 1) + visible.length);
  const affine = options.affine ?? true;
  const inputs = [{ shape, lo: -2, hi: 3 }];
  if (affine) inputs.push({ shape: [c], lo: -1, hi: 1 }, { shape: [c], lo: -1, hi: 1 });
  if (options.residual) inputs.push({ shape, lo: -1, hi: 1 });
  const split = <T>(xs: T[]) => ({
    x: xs[0],
    w: affine ? xs[1] : undefined,
    b: affine ? xs[2] : undefined,
    r: options.residual ? xs[affine ? 3 : 1] : undefined,
  });
  return {
    name,
    inputs,
    gpu: (xs) => {
      const { x, w, b, r } = split(xs);
      return ops.maskedInstanceNorm(x, onGpu(mask, options.u8 ? "u8" : "f32"), w, b, {
        eps: options.eps,
        slope: options.slope,
        residual: r,
      });
    },
    ref: (xs) => {
      const { x, w, b, r } = split(xs);
      return R.maskedInstanceNormRef(x, mask, w, b, { eps: options.eps, slope: options.slope, residual: r });
    },
    ...tolerances,
  };
}

const cases: OpCase[] = [
  maskedCase("maskedInstanceNorm() NCDHW with affine, half the voxels visible", [2, 3, 4, 5, 6], [0.5, 0.5]),
  maskedCase("maskedInstanceNorm() odd spatial size (one voxel per invocation)", [2, 3, 3, 5, 7], [0.3, 0.8]),
  maskedCase("maskedInstanceNorm() with 1 and 2 visible voxels", [2, 2, 3, 4, 4], [1, 2]),
  maskedCase("maskedInstanceNorm() with a sample of no visible voxel: 0, no NaN", [3, 2, 4, 4, 3], [
    0.5,
    0,
    5,
  ]),
  maskedCase("maskedInstanceNorm() without affine (SparK's densify norm)", [2, 4, 4, 4, 4], [0.25, 0.75], {
    affine: false,
  }),
  maskedCase(
    "maskedInstanceNorm() + residual + LeakyReLU(0.01) (ResEnc block tail)",
    [2, 3, 4, 4, 4],
    [0.4, 0.6],
    { residual: true, slope: 0.01 },
  ),
  maskedCase("maskedInstanceNorm() + residual without activation", [2, 3, 3, 3, 5], [0.5, 3], {
    residual: true,
  }),
  maskedCase("maskedInstanceNorm() + ReLU (slope 0), eps 1e-3", [1, 5, 6, 6], [0.5], { slope: 0, eps: 1e-3 }),
  maskedCase("maskedInstanceNorm() with a u8 mask", [2, 3, 4, 4, 4], [0.5, 0.2], {
    residual: true,
    slope: 0.01,
    u8: true,
  }),
  maskedCase("maskedInstanceNorm() of a long row uses several pieces", [1, 2, 9000], [0.3], {}, {
    grad: false,
    atol: 3e-5,
  }),
  maskedCase(
    "maskedInstanceNorm() of 300k voxels merges 74 partial weighted moments in two levels",
    [1, 1, 300_000],
    [0.3],
    { affine: false },
    { grad: false, atol: 5e-5 },
  ),
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

/** Output and gradients (x, w, b, residual) of one forward/backward with the incoming gradient `g`. */
function run(
  f: (x: ops.Tensor, w: ops.Tensor, b: ops.Tensor, r: ops.Tensor) => ops.Tensor,
  inputs: RefTensor[],
  g: RefTensor,
): ops.Tensor[] {
  return ops.scope(() => {
    const ts = inputs.map((t) => ops.tensor(Float32Array.from(t.data), t.shape, { requiresGrad: true }));
    const y = f(ts[0], ts[1], ts[2], ts[3]);
    ops.backward(ops.sum(ops.mul(y, ops.tensor(Float32Array.from(g.data), g.shape))));
    const grads = ts.map((t) => t.grad!);
    for (const t of ts) t.grad = undefined;
    return [y, ...grads];
  });
}

gpuTest(
  "maskedInstanceNorm() with an all-ones mask equals instanceNormAct() in values and gradients",
  async () => {
    const shape = [2, 3, 4, 5, 6];
    const [x, w, b, r, g] = refInputs([shape, [3], [3], shape, shape], 31);
    const ones = ops.ones([2, 1, 4, 5, 6]);
    const masked = run((x, w, b, r) => ops.maskedInstanceNorm(x, ones, w, b, { residual: r, slope: 0.01 }), [
      x,
      w,
      b,
      r,
    ], g);
    const plain = run((x, w, b, r) => ops.instanceNormAct(x, w, b, { residual: r, slope: 0.01 }), [
      x,
      w,
      b,
      r,
    ], g);
    const labels = ["y", "dx", "dweight", "dbias", "dresidual"];
    for (let i = 0; i < masked.length; i++) {
      assertClose(await masked[i].toFloat64(), await plain[i].toFloat64(), {
        rtol: 1e-5,
        atol: 2e-5,
        label: labels[i],
      });
    }
    for (const t of [ones, ...masked, ...plain]) t.dispose();
  },
);

gpuTest(
  "maskedInstanceNorm(): masked input values change nothing, and masked outputs and gradients are exactly 0",
  async () => {
    const shape = [2, 4, 4, 4, 4];
    const s = 64;
    const mask = makeMask(2, [4, 4, 4], [20, 0.5], 8);
    const [x, w, b, r, g] = refInputs([shape, [4], [4], shape, shape], 41);
    // the same x and residual at visible voxels, other values (large ones too) at masked voxels
    const changed = [x, r].map((t, k) => ({
      shape: t.shape,
      data: t.data.map((
        v,
        i,
      ) => (mask.data[Math.floor(i / (4 * s)) * s + (i % s)] !== 0 ? v : 1e3 * (k + 1) - v)),
    }));
    const m = onGpu(mask);
    const f = (x: ops.Tensor, w: ops.Tensor, b: ops.Tensor, r: ops.Tensor) =>
      ops.maskedInstanceNorm(x, m, w, b, { residual: r, slope: 0.01 });
    const first = run(f, [x, w, b, r], g);
    const second = run(f, [changed[0], w, b, changed[1]], g);
    const values = await Promise.all([...first, ...second].map((t) => t.toArray()));
    for (let i = 0; i < first.length; i++) {
      assertEquals([...values[i]], [...values[i + first.length]], `output ${i}`);
    }
    for (const k of [0, 1, 4]) { // y, dx and dresidual vanish at masked voxels
      values[k].forEach((v, i) => {
        if (mask.data[Math.floor(i / (4 * s)) * s + (i % s)] === 0) {
          assert(v === 0, `output ${k}[${i}] = ${v}`);
        }
      });
    }
    assert(values.every((a) => a.every(Number.isFinite)), "no NaN or infinity");
    for (const t of [m, ...first, ...second]) t.dispose();
  },
);

gpuTest(
  "maskedInstanceNorm() runs on f16 storage with f32 statistics",
  { requires: ["shader-f16"] },
  async () => {
    const shape = [2, 3, 4, 5, 6];
    const [xr, wr, br, rr] = refInputs([shape, [3], [3], shape], 5);
    const x16 = Float64Array.from(Float16Array.from(xr.data));
    const r16 = Float64Array.from(Float16Array.from(rr.data));
    const mask = makeMask(2, [4, 5, 6], [0.5, 7], 3);
    const y = ops.scope(() =>
      ops.maskedInstanceNorm(
        ops.tensor(x16, shape, { dtype: "f16" }),
        onGpu(mask, "u8"),
        ops.tensor(wr.data, [3]),
        ops.tensor(br.data, [3]),
        {
          residual: ops.tensor(r16, shape, { dtype: "f16" }),
          slope: 0.01,
        },
      )
    );
    assertEquals(y.dtype, "f16");
    const expected = R.maskedInstanceNormRef({ shape, data: x16 }, mask, wr, br, {
      residual: { shape, data: r16 },
      slope: 0.01,
    });
    assertClose(await y.toFloat64(), expected.data, { rtol: 2e-3, atol: 4e-3 });
    y.dispose();
  },
);

gpuTest("maskedInstanceNorm() rejects a mask of the wrong shape and a negative slope, naming the op", () => {
  ops.scope(() => {
    const x = ops.zeros([2, 3, 4, 4]);
    assertThrows(
      () => ops.maskedInstanceNorm(x, ops.zeros([2, 3, 4, 4])),
      RangeError,
      "maskedInstanceNorm(): mask has shape",
    );
    assertThrows(() => ops.maskedInstanceNorm(x, ops.zeros([1, 1, 4, 4])), RangeError, "mask has shape");
    assertThrows(
      () => ops.maskedInstanceNorm(x, ops.ones([2, 1, 4, 4]), undefined, undefined, { slope: -1 }),
      RangeError,
      "slope must be >= 0",
    );
  });
});

Deno.test({
  name: "maskedInstanceNorm() splits into chunks when tensors exceed the binding limit",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withSmallBindings(2048, async () => {
      const chunked: OpCase[] = [
        maskedCase("maskedInstanceNorm chunked, fused residual and LeakyReLU", [2, 3, 5, 7, 9], [0.5, 0.3], {
          residual: true,
          slope: 0.01,
        }),
        maskedCase("maskedInstanceNorm chunked, 4 voxels per invocation", [2, 3, 4, 6, 5], [0.6, 0], {
          residual: true,
          slope: 0.01,
        }),
        maskedCase("maskedInstanceNorm chunked, one channel larger than a binding", [1, 2, 1100], [0.4]),
      ];
      for (const c of chunked) await checkOpDirect(c);
    }),
});
