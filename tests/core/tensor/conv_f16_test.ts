/**
 * conv3d and convTranspose3d on f16 storage (kernels/conv3d_*.ts with f16 loads, f32 accumulation and
 * one rounding at the store) against the f32 path and the float64 reference: values, input, weight and
 * bias gradients; the split-K paths; the chunked paths of a device with a tiny binding limit, where
 * reductions split over several dispatches accumulate in f32 windows.
 *
 * Tolerances. Inputs (x, w, bias and the output gradient) are rounded to f16 on the host, so the f32
 * and f16 paths read identical values; both run the same tiles in the same order with f32 arithmetic,
 * so an f16 result is the f32 result rounded once to f16: within one f16 ulp (WGSL lets a conversion
 * pick either neighbour; round-to-nearest gives half an ulp). Against the float64 reference an f16
 * result is off by that rounding plus the f32 accumulation error the f32 tests allow (conv_test.ts).
 * A path that rounded partial sums to f16 (per K slice or per chunk) would exceed these bounds.
 */
import { assert, assertEquals, assertThrows } from "../../assert.ts";
import { createGpu, type Gpu } from "../../../core/gpu/mod.ts";
import * as ops from "../../../core/tensor/mod.ts";
import type { RefTensor } from "../../../core/tensor/reference/ops.ts";
import * as R from "../../../core/tensor/reference/conv.ts";
import { CONV_TUNING, runConv3dForward } from "../../../kernels/mod.ts";
import { assertUlp16, gpuTest, halfValues, lacksGpuFeatures, randomArray } from "../../helpers.ts";

type Triple = [number, number, number];

interface Spec {
  transposed?: boolean;
  x: number[];
  w: number[];
  bias?: boolean;
  opts?: R.ConvRefOptions;
}

const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

function half(shape: number[], seed: number): RefTensor {
  return { shape, data: halfValues(randomArray(numel(shape), seed)) };
}

/** f16-representable inputs and output gradient, and the float64 reference of every result. */
function problem(s: Spec, seed: number) {
  const x = half(s.x, seed);
  const w = half(s.w, seed + 1);
  const b = s.bias ? half([s.w[s.transposed ? 1 : 0]], seed + 2) : undefined;
  const opts = s.opts ?? {};
  const conv = { stride: opts.stride, padding: opts.padding };
  const kernel = s.w.slice(2) as Triple;
  const y = s.transposed ? R.convTranspose3dRef(x, w, b, opts) : R.conv3dRef(x, w, b, opts);
  const gy = half(y.shape, seed + 3);
  const dx = s.transposed
    ? R.conv3dRef(gy, w, undefined, conv)
    : R.conv3dInputGradRef(gy, w, s.x.slice(2) as Triple, conv);
  const dw = s.transposed
    ? R.conv3dWeightGradRef(gy, x, kernel, conv)
    : R.conv3dWeightGradRef(x, gy, kernel, conv);
  // reduction lengths of each result, at most (for the f32 accumulation allowance)
  const kvol = numel(kernel);
  const terms = {
    y: s.x[1] * kvol,
    dx: y.shape[1] * kvol,
    dw: numel(gy.shape) / gy.shape[1],
    db: numel(gy.shape) / gy.shape[1],
  };
  return { inputs: { x, w, b, gy }, ref: { y, dx, dw, db: R.channelSumRef(gy) }, terms };
}

type Results = { y: Float64Array; dx: Float64Array; dw: Float64Array; db?: Float64Array; dtypes: string[] };

/** Runs the op and its backward rule (seeded with gy) on `gpu` in `dtype`; returns everything as float64. */
async function run(gpu: Gpu, s: Spec, dtype: "f32" | "f16", p: ReturnType<typeof problem>): Promise<Results> {
  const { x, w, b, gy } = p.inputs;
  const opts = s.opts ?? {};
  const got = ops.scope(() => {
    const make = (t: RefTensor) => ops.tensor(t.data, t.shape, { gpu, dtype, requiresGrad: true });
    const [xt, wt] = [make(x), make(w)];
    const bt = b ? make(b) : undefined;
    const y = s.transposed
      ? ops.convTranspose3d(xt, wt, { bias: bt, ...opts })
      : ops.conv3d(xt, wt, { bias: bt, stride: opts.stride, padding: opts.padding });
    const seed = ops.tensor(gy.data, gy.shape, { gpu, dtype });
    const grads = ops.noGrad(() => y.node!.backward(seed));
    return [y, ...grads];
  });
  try {
    const [y, dx, dw, db] = got;
    return {
      y: await y!.toFloat64(),
      dx: await dx!.toFloat64(),
      dw: await dw!.toFloat64(),
      db: db ? await db.toFloat64() : undefined,
      dtypes: got.filter((t) => t).map((t) => t!.dtype),
    };
  } finally {
    got.forEach((t) => t?.dispose());
  }
}

/** Checks f16 results against the float64 reference: one f16 rounding plus the f32 accumulation error. */
function checkAgainstReference(half: Results, p: ReturnType<typeof problem>, label: string): void {
  const f32 = (n: number, ref: Float64Array) => (i: number) =>
    1e-4 * Math.abs(ref[i]) + 2e-6 * Math.sqrt(n) + 1e-5;
  const { ref, terms } = p;
  assertUlp16(half.y, ref.y.data, { extra: f32(terms.y, ref.y.data), label: `${label}: y vs reference` });
  assertUlp16(half.dx, ref.dx.data, {
    extra: f32(terms.dx, ref.dx.data),
    label: `${label}: dx vs reference`,
  });
  assertUlp16(half.dw, ref.dw.data, {
    extra: f32(terms.dw, ref.dw.data),
    label: `${label}: dw vs reference`,
  });
  if (half.db) {
    assertUlp16(half.db, ref.db.data, {
      extra: f32(terms.db, ref.db.data),
      label: `${label}: db vs reference`,
    });
  }
}

/** f16 against f32 on the same device (same plan): at most one f16 ulp apart; then against the reference. */
async function checkHalfAgainstF32(gpu: Gpu, s: Spec, label: string): Promise<void> {
  const p = problem(s, 41);
  const full = await run(gpu, s, "f32", p);
  const halfRes = await run(gpu, s, "f16", p);
  assert(
    halfRes.dtypes.every((d) => d === "f16"),
    `${label}: output and gradients are f16: ${halfRes.dtypes}`,
  );
  for (const key of ["y", "dx", "dw", "db"] as const) {
    if (!full[key]) continue;
    assertUlp16(halfRes[key]!, full[key]!, { label: `${label}: ${key} f16 vs f32` });
  }
  checkAgainstReference(halfRes, p, label);
}

const specs: [string, Spec][] = [
  ["3³ kernel, padding 1, bias, odd sizes", {
    x: [1, 3, 5, 4, 6],
    w: [5, 3, 3, 3, 3],
    bias: true,
    opts: { padding: 1 },
  }],
  ["stride 2 on odd inputs, batch 2", {
    x: [2, 2, 7, 5, 6],
    w: [3, 2, 3, 3, 3],
    opts: { stride: 2, padding: 1 },
  }],
  ["1³ pointwise, batch 3 (vec4 loads and stores)", { x: [3, 8, 2, 4, 4], w: [4, 8, 1, 1, 1], bias: true }],
  ["8³ patch embedding with stride 8 (vec4 along K)", {
    x: [1, 2, 16, 8, 8],
    w: [5, 2, 8, 8, 8],
    bias: true,
    opts: { stride: 8 },
  }],
  ["per-axis kernel [3,1,2], stride [2,1,1]", {
    x: [1, 3, 6, 5, 7],
    w: [7, 3, 3, 1, 2],
    bias: true,
    opts: { stride: [2, 1, 1], padding: [1, 0, 0] },
  }],
  ["32→32 channels, 9³, batch 2 (vec4 weights, split-K weight gradient)", {
    x: [2, 32, 9, 9, 9],
    w: [32, 32, 3, 3, 3],
    bias: true,
    opts: { padding: 1 },
  }],
  ["70 output channels cross N tiles", {
    x: [3, 5, 7, 9, 6],
    w: [70, 5, 3, 3, 3],
    bias: true,
    opts: { padding: 1 },
  }],
  ["transposed 2³ stride 2 (decoder upsampling, vec4 phases)", {
    transposed: true,
    x: [2, 8, 4, 4, 4],
    w: [8, 4, 2, 2, 2],
    bias: true,
    opts: { stride: 2 },
  }],
  ["transposed 3³ stride 2, padding 1, outputPadding 1", {
    transposed: true,
    x: [1, 3, 3, 4, 2],
    w: [3, 2, 3, 3, 3],
    opts: { stride: 2, padding: 1, outputPadding: 1 },
  }],
];

for (const [name, spec] of specs) {
  gpuTest(
    `${spec.transposed ? "convTranspose3d" : "conv3d"} on f16 storage: ${name}: values and gradients ` +
      `within one f16 rounding of the f32 path and of the reference`,
    { requires: ["shader-f16"] },
    async (gpu) => {
      await checkHalfAgainstF32(gpu, spec, name);
    },
  );
}

gpuTest(
  "conv3d and convTranspose3d on f16 storage split K with f32 partials",
  { requires: ["shader-f16"] },
  async (gpu) => {
    const saved = { ...CONV_TUNING };
    CONV_TUNING.minKPerSplit = 16;
    try {
      await checkHalfAgainstF32(gpu, {
        x: [1, 3, 5, 6, 7],
        w: [6, 3, 3, 3, 3],
        bias: true,
        opts: { stride: 2, padding: 1 },
      }, "split-K conv");
      await checkHalfAgainstF32(gpu, {
        transposed: true,
        x: [2, 9, 3, 4, 3],
        w: [9, 5, 3, 3, 3],
        bias: true,
        opts: { stride: 2, padding: 1, outputPadding: 1 },
      }, "split-K transposed");
    } finally {
      Object.assign(CONV_TUNING, saved);
    }
  },
);

// ---------------------------------------------------------------------------------------------------
// Chunked paths: f16 tensors above a tiny binding limit (limits in bytes: f16 chunks hold twice the
// elements), with reductions split over dispatches accumulating in f32 windows.

const chunked: [number, string, Spec][] = [
  [2048, "batch, channels and weight, all three passes accumulating in f32", {
    x: [3, 5, 7, 6, 5],
    w: [9, 5, 3, 3, 3],
    bias: true,
    opts: { stride: 2, padding: 1 },
  }],
  [2048, "depth slices when one channel exceeds the limit", {
    x: [1, 2, 13, 9, 10],
    w: [3, 2, 3, 3, 3],
    bias: true,
    opts: { padding: 1 },
  }],
  [3072, "an 8³ patch embedding", {
    x: [1, 2, 16, 8, 8],
    w: [5, 2, 8, 8, 8],
    bias: true,
    opts: { stride: 8 },
  }],
  [2048, "transposed 2³ stride 2", {
    transposed: true,
    x: [2, 6, 5, 4, 6],
    w: [6, 4, 2, 2, 2],
    bias: true,
    opts: { stride: 2 },
  }],
  [2048, "transposed 3³ stride 2, padding 1, outputPadding 1", {
    transposed: true,
    x: [2, 5, 4, 3, 5],
    w: [5, 3, 3, 3, 3],
    bias: true,
    opts: { stride: 2, padding: 1, outputPadding: 1 },
  }],
];

for (const [cap, name, spec] of chunked) {
  const testName = `${spec.transposed ? "convTranspose3d" : "conv3d"} on f16 storage splits ${name} ` +
    `(binding limit ${cap} bytes)`;
  Deno.test({
    name: testName,
    ignore: lacksGpuFeatures(testName, ["shader-f16"]),
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      const gpu = await createGpu({ maxStorageBindingBytes: cap });
      try {
        assert(gpu.hasF16, "a device like the probed one has shader-f16");
        const kernels: string[] = [];
        const dispatch = gpu.dispatch.bind(gpu);
        gpu.dispatch = (kernel, ...rest) => {
          kernels.push(kernel.name);
          return dispatch(kernel, ...rest);
        };
        const p = problem(spec, 43);
        assert(
          Math.max(numel(spec.x), numel(p.ref.y.shape)) * 2 > cap,
          "an f16 activation must exceed the binding limit for this test to mean anything",
        );
        checkAgainstReference(await run(gpu, spec, "f16", p), p, name);
        assert(
          kernels.some((k) => k.includes(",f16>f32")) && kernels.includes("conv3d_accumulator_to_f16"),
          `some pass accumulates a chunked reduction in f32 (kernels: ${[...new Set(kernels)].join(" ")})`,
        );
        assertEquals(gpu.pool.stats().buffersInUse, 0, "accumulators and scratch return to the pool");
      } finally {
        gpu.destroy();
      }
    },
  });
}

// ---------------------------------------------------------------------------------------------------
// Devices without shader-f16.

Deno.test({
  name: "conv3d launchers refuse f16 on a device without shader-f16 with a clear error",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const gpu = await createGpu({ disableFeatures: ["shader-f16"] });
    try {
      const [x, w, y] = ops.scope(() => [
        ops.zeros([1, 1, 4, 4, 4], { gpu }),
        ops.zeros([1, 1, 3, 3, 3], { gpu }),
        ops.zeros([1, 1, 2, 2, 2], { gpu }),
      ]);
      const geo = {
        batch: 1,
        cin: 1,
        cout: 1,
        in: [4, 4, 4],
        out: [2, 2, 2],
        kernel: [3, 3, 3],
        stride: [1, 1, 1],
        padding: [0, 0, 0],
      } as const;
      assertThrows(
        () => runConv3dForward(gpu, geo, { x: x.binding, w: w.binding, y: y.binding }, "f16"),
        TypeError,
        "shader-f16",
      );
      [x, w, y].forEach((t) => t.dispose());
    } finally {
      gpu.destroy();
    }
  },
});
