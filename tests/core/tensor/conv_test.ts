/**
 * conv3d and convTranspose3d (core/tensor/ops/conv.ts, kernels/conv3d_*.ts) against the float64
 * reference (core/tensor/reference/conv.ts): values and finite-difference gradients on small odd shapes
 * through tests/op_harness.ts; values and reference-adjoint gradients on ResEnc-L-like shapes, on the
 * split-K paths and on the chunked paths of a device with a tiny binding limit.
 */
import { assert, assertEquals, assertThrows } from "../../assert.ts";
import { createGpu, type Gpu } from "../../../core/gpu/mod.ts";
import * as ops from "../../../core/tensor/mod.ts";
import type { RefTensor } from "../../../core/tensor/reference/ops.ts";
import * as R from "../../../core/tensor/reference/conv.ts";
import { chooseTile, CONV_TUNING } from "../../../kernels/mod.ts";
import { checkOp, finiteDifference, type OpCase } from "../../op_harness.ts";
import { assertClose, gpuTest, randomArray } from "../../helpers.ts";

type Conv3dTriple = [number, number, number];

// ---------------------------------------------------------------------------------------------------
// Small cases: values and finite-difference gradients of input, weight and bias.

function convCase(
  name: string,
  x: Conv3dTriple | number[],
  w: number[],
  bias: boolean,
  opts: R.ConvRefOptions,
): OpCase {
  return {
    name: `conv3d ${name}`,
    inputs: [{ shape: x }, { shape: w }, ...(bias ? [{ shape: [w[0]] }] : [])],
    gpu: ([x, w, b]) => ops.conv3d(x, w, { bias: b, stride: opts.stride, padding: opts.padding }),
    ref: ([x, w, b]) => R.conv3dRef(x, w, b, opts),
    rtol: 1e-4,
    atol: 1e-5,
  };
}

function transposedCase(
  name: string,
  x: number[],
  w: number[],
  bias: boolean,
  opts: R.ConvRefOptions,
): OpCase {
  return {
    name: `convTranspose3d ${name}`,
    inputs: [{ shape: x }, { shape: w }, ...(bias ? [{ shape: [w[1]] }] : [])],
    gpu: ([x, w, b]) =>
      ops.convTranspose3d(x, w, {
        bias: b,
        stride: opts.stride,
        padding: opts.padding,
        outputPadding: opts.outputPadding,
      }),
    ref: ([x, w, b]) => R.convTranspose3dRef(x, w, b, opts),
    rtol: 1e-4,
    atol: 1e-5,
  };
}

const smallCases: OpCase[] = [
  convCase("3³ kernel, padding 1, bias, odd sizes", [1, 3, 5, 4, 6], [5, 3, 3, 3, 3], true, { padding: 1 }),
  convCase("stride 2 on odd inputs, batch 2, no bias", [2, 2, 7, 5, 6], [3, 2, 3, 3, 3], false, {
    stride: 2,
    padding: 1,
  }),
  convCase(
    "stride 2 without padding leaves the last input rows unread",
    [1, 2, 6, 6, 5],
    [3, 2, 3, 3, 3],
    false,
    {
      stride: 2,
    },
  ),
  convCase("1³ pointwise, batch 3 (vec4 loads)", [3, 6, 2, 4, 4], [5, 6, 1, 1, 1], true, {}),
  convCase(
    "1³ kernel with stride 2 (unread inputs get zero gradient)",
    [1, 4, 5, 5, 5],
    [3, 4, 1, 1, 1],
    true,
    {
      stride: 2,
    },
  ),
  convCase("8³ patch embedding with stride 8", [1, 2, 16, 8, 8], [5, 2, 8, 8, 8], true, { stride: 8 }),
  convCase(
    "per-axis kernel [3,1,2], stride [2,1,1], padding [1,0,0]",
    [1, 3, 6, 5, 7],
    [7, 3, 3, 1, 2],
    true,
    {
      stride: [2, 1, 1],
      padding: [1, 0, 0],
    },
  ),
  convCase(
    "padding 2 > kernel/2: border outputs see only padding (bias)",
    [1, 2, 3, 4, 3],
    [2, 2, 3, 3, 3],
    true,
    {
      padding: 2,
    },
  ),
  transposedCase(
    "2³ kernel, stride 2 (decoder upsampling), batch 2, bias",
    [2, 4, 3, 2, 3],
    [4, 3, 2, 2, 2],
    true,
    {
      stride: 2,
    },
  ),
  transposedCase("3³ kernel, stride 2, padding 1, outputPadding 1", [1, 3, 3, 4, 2], [3, 2, 3, 3, 3], false, {
    stride: 2,
    padding: 1,
    outputPadding: 1,
  }),
  transposedCase("8³ patch decoder with stride 8", [1, 3, 2, 1, 1], [3, 2, 8, 8, 8], true, { stride: 8 }),
  transposedCase("3³ kernel, stride 1, padding 1", [1, 2, 4, 3, 5], [2, 3, 3, 3, 3], true, { padding: 1 }),
  transposedCase("per-axis stride [2,1,3], outputPadding [1,0,2]", [1, 2, 3, 3, 2], [2, 3, 3, 2, 3], true, {
    stride: [2, 1, 3],
    outputPadding: [1, 0, 2],
  }),
  transposedCase("padding 2 crops the output, stride 2", [1, 3, 3, 4, 3], [3, 2, 3, 3, 3], true, {
    stride: 2,
    padding: 2,
  }),
];

for (const c of smallCases) {
  gpuTest(`${c.name} matches the reference (values and gradients)`, () => checkOp(c));
}

// ---------------------------------------------------------------------------------------------------
// The reference adjoints used for large shapes are themselves the gradients of the reference.

function refInput(shape: number[], seed: number): RefTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return { shape, data: Float64Array.from(Float32Array.from(randomArray(n, seed))) };
}

Deno.test("conv3dInputGradRef() and conv3dWeightGradRef() are the gradients of conv3dRef()", () => {
  const opts = { stride: [2, 1, 2] as Conv3dTriple, padding: [1, 1, 0] as Conv3dTriple };
  const x = refInput([2, 2, 5, 4, 6], 1);
  const w = refInput([3, 2, 3, 2, 3], 2);
  const c: OpCase = {
    name: "adjoint",
    inputs: [],
    gpu: () => undefined as never,
    ref: ([x, w]) => R.conv3dRef(x, w, undefined, opts),
  };
  const y = R.conv3dRef(x, w, undefined, opts);
  const g = refInput(y.shape, 3);
  const dx = R.conv3dInputGradRef(g, w, [5, 4, 6], opts);
  const dw = R.conv3dWeightGradRef(x, g, [3, 2, 3], opts);
  assertEquals(dx.shape, x.shape);
  assertClose(dx.data, finiteDifference(c, [x, w], 0, g.data), { rtol: 1e-6, atol: 1e-7, label: "dx" });
  assertClose(dw.data, finiteDifference(c, [x, w], 1, g.data), { rtol: 1e-6, atol: 1e-7, label: "dw" });
  const sums = R.channelSumRef(g);
  const cb: OpCase = { ...c, ref: ([b]) => R.conv3dRef(x, w, b, opts) };
  assertClose(sums.data, finiteDifference(cb, [refInput([3], 4)], 0, g.data), { rtol: 1e-6, atol: 1e-7 });
});

// ---------------------------------------------------------------------------------------------------
// Larger shapes: values and all gradients against the reference adjoints.

interface Spec {
  transposed?: boolean;
  x: number[];
  w: number[];
  bias?: boolean;
  opts?: R.ConvRefOptions;
}

/** Reference output and gradients of Σ y·gy for every input. */
function reference(s: Spec, x: RefTensor, w: RefTensor, b: RefTensor | undefined) {
  const opts = s.opts ?? {};
  const conv = { stride: opts.stride, padding: opts.padding };
  const kernel = s.w.slice(2) as Conv3dTriple;
  const y = s.transposed ? R.convTranspose3dRef(x, w, b, opts) : R.conv3dRef(x, w, b, opts);
  const gy = refInput(y.shape, 99);
  const dx = s.transposed
    ? R.conv3dRef(gy, w, undefined, conv)
    : R.conv3dInputGradRef(gy, w, s.x.slice(2) as Conv3dTriple, conv);
  const dw = s.transposed
    ? R.conv3dWeightGradRef(gy, x, kernel, conv)
    : R.conv3dWeightGradRef(x, gy, kernel, conv);
  return { y, gy, dx, dw, db: R.channelSumRef(gy) };
}

/**
 * Runs the op on `gpu` and compares output and gradients with the reference. The gradients come from the
 * op's own backward rule with seed gy (not from `backward()`, whose gradient accumulation copies whole
 * tensors and so needs them below the binding limit).
 */
async function checkLarge(gpu: Gpu, s: Spec): Promise<void> {
  const x = refInput(s.x, 11);
  const w = refInput(s.w, 12);
  const b = s.bias ? refInput([s.w[s.transposed ? 1 : 0]], 13) : undefined;
  const want = reference(s, x, w, b);
  const opts = s.opts ?? {};
  const got = ops.scope(() => {
    const make = (t: RefTensor) =>
      ops.tensor(Float32Array.from(t.data), t.shape, { gpu, requiresGrad: true });
    const [xt, wt] = [make(x), make(w)];
    const bt = b ? make(b) : undefined;
    const y = s.transposed
      ? ops.convTranspose3d(xt, wt, { bias: bt, ...opts })
      : ops.conv3d(xt, wt, { bias: bt, stride: opts.stride, padding: opts.padding });
    const seed = ops.tensor(Float32Array.from(want.gy.data), want.gy.shape, { gpu });
    const grads = ops.noGrad(() => y.node!.backward(seed));
    return [y, ...grads];
  });
  const [y, dx, dw, db] = got;
  try {
    // f32 sums of K terms of size ≤ 1: tolerance grows with the reduction length
    const terms = s.transposed ? s.x[1] : s.x[1] * s.w.slice(2).reduce((a, v) => a * v, 1);
    const tol = (n: number) => ({ rtol: 1e-4, atol: 2e-6 * Math.sqrt(n) + 1e-5 });
    assertEquals(y!.shape, want.y.shape);
    assertClose(await y!.toFloat64(), want.y.data, { ...tol(terms), label: "y" });
    assertClose(await dx!.toFloat64(), want.dx.data, { ...tol(want.gy.shape[1] * terms), label: "dx" });
    const reduction = want.gy.data.length / want.gy.shape[1];
    assertClose(await dw!.toFloat64(), want.dw.data, { ...tol(reduction * 27), label: "dw" });
    if (b) assertClose(await db!.toFloat64(), want.db.data, { ...tol(reduction), label: "db" });
  } finally {
    got.forEach((t) => t?.dispose());
  }
}

const large: [string, Spec][] = [
  [
    "ResEnc-L downsampling scaled down: 32→64 channels, 17³, stride 2",
    { x: [1, 32, 17, 17, 17], w: [64, 32, 3, 3, 3], bias: true, opts: { stride: 2, padding: 1 } },
  ],
  [
    "ResEnc-L block scaled down: 32→32 channels, 9³, batch 2 (split-K)",
    { x: [2, 32, 9, 9, 9], w: [32, 32, 3, 3, 3], bias: true, opts: { padding: 1 } },
  ],
  [
    "ResEnc-L decoder upsampling scaled down: 64→32 channels, 9³ → 18³",
    { transposed: true, x: [1, 64, 9, 9, 9], w: [64, 32, 2, 2, 2], bias: true, opts: { stride: 2 } },
  ],
  [
    "70 output channels cross N tiles, batch 3, odd sizes",
    { x: [3, 5, 7, 9, 6], w: [70, 5, 3, 3, 3], bias: true, opts: { padding: 1 } },
  ],
];

for (const [name, spec] of large) {
  gpuTest(
    `${spec.transposed ? "convTranspose3d" : "conv3d"} ${name} matches the reference`,
    (gpu) => checkLarge(gpu, spec),
  );
}

gpuTest("conv3d and convTranspose3d split K when forced to (split-K and finish kernels)", async (gpu) => {
  const saved = { ...CONV_TUNING };
  CONV_TUNING.minKPerSplit = 16;
  try {
    await checkLarge(gpu, {
      x: [1, 3, 5, 6, 7],
      w: [6, 3, 3, 3, 3],
      bias: true,
      opts: { stride: 2, padding: 1 },
    });
    await checkLarge(gpu, {
      transposed: true,
      x: [2, 9, 3, 4, 3],
      w: [9, 5, 3, 3, 3],
      bias: true,
      opts: { stride: 2, padding: 1, outputPadding: 1 },
    });
  } finally {
    Object.assign(CONV_TUNING, saved);
  }
});

// ---------------------------------------------------------------------------------------------------
// Chunked paths: a device whose binding limit is far below the tensors.

const chunked: [number, string, Spec][] = [
  [4096, "batch, channels and a weight above the limit", {
    x: [3, 5, 7, 6, 5],
    w: [9, 5, 3, 3, 3],
    bias: true,
    opts: { stride: 2, padding: 1 },
  }],
  [4096, "depth slices when one channel exceeds the limit", {
    x: [1, 2, 13, 9, 10],
    w: [3, 2, 3, 3, 3],
    bias: true,
    opts: { padding: 1 },
  }],
  [4096, "an 8³ patch embedding", {
    x: [1, 2, 16, 8, 8],
    w: [5, 2, 8, 8, 8],
    bias: true,
    opts: { stride: 8 },
  }],
  [4096, "transposed 2³ stride 2 with output depth slices", {
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
  Deno.test({
    name: `${spec.transposed ? "convTranspose3d" : "conv3d"} splits ${name} (binding limit ${cap} bytes)`,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      const gpu = await createGpu({ maxStorageBindingBytes: cap });
      try {
        const bytes = (shape: number[]) => shape.reduce((a, b) => a * b, 4);
        assert(bytes(spec.x) > cap, "the input must exceed the binding limit for this test to mean anything");
        await checkLarge(gpu, spec);
        assertEquals(gpu.pool.stats().buffersInUse, 0, "scratch buffers are returned to the pool");
      } finally {
        gpu.destroy();
      }
    },
  });
}

Deno.test({
  name: "conv3d and convTranspose3d run with WebGPU's minimum workgroup limits (BK = 8, fewer invocations)",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const gpu = await createGpu();
    try {
      // 16 KiB of workgroup memory: 128 × 128 tiles (70 channels) fall back to K slices of 8
      Object.assign(gpu.limits, { maxComputeWorkgroupStorageSize: 16384 });
      await checkLarge(gpu, { x: [3, 5, 7, 9, 6], w: [70, 5, 3, 3, 3], bias: true, opts: { padding: 1 } });
      // 64 invocations: the large side of the tile shrinks until the workgroup fits
      Object.assign(gpu.limits, { maxComputeInvocationsPerWorkgroup: 64 });
      await checkLarge(gpu, {
        transposed: true,
        x: [1, 70, 3, 4, 3],
        w: [70, 66, 3, 3, 3],
        bias: true,
        opts: { stride: 2, padding: 1, outputPadding: 1 },
      });
    } finally {
      gpu.destroy();
    }
  },
});

Deno.test("chooseTile() respects the device's workgroup limits", async () => {
  const gpu = await createGpu();
  try {
    const limits = {
      ...gpu.limits,
      maxComputeWorkgroupStorageSize: 16384,
      maxComputeInvocationsPerWorkgroup: 64,
    };
    for (const [m, n] of [[100_000, 32], [100_000, 320], [320, 8640], [70, 70], [5, 100_000]]) {
      for (const fast of ["m", "n"] as const) {
        const t = chooseTile(limits, m, n, fast);
        assert(t.threads <= 64 && t.threads === (t.bm / t.tm) * (t.bn / t.tn), JSON.stringify(t));
        assert((t.bm + t.bn + 8) * t.bk * 4 <= 16384, JSON.stringify(t));
      }
    }
    const roomy = chooseTile(gpu.limits, 100_000, 32, "m");
    assertEquals([roomy.bm, roomy.bn, roomy.tm, roomy.tn], [128, 32, 8, 8]);
  } finally {
    gpu.destroy();
  }
});

// ---------------------------------------------------------------------------------------------------
// API behaviour.

gpuTest("conv3d() and convTranspose3d() reject inconsistent operands with clear errors", () => {
  ops.scope(() => {
    const x = ops.zeros([1, 3, 4, 4, 4]);
    assertThrows(() => ops.conv3d(x, ops.zeros([2, 4, 3, 3, 3])), RangeError, "3 channels");
    assertThrows(() => ops.conv3d(x, ops.zeros([2, 3, 5, 5, 5])), RangeError, "gives no output");
    assertThrows(
      () => ops.conv3d(x, ops.zeros([2, 3, 3, 3, 3]), { bias: ops.zeros([3]) }),
      RangeError,
      "bias",
    );
    assertThrows(() => ops.conv3d(x, ops.zeros([2, 3, 3, 3, 3]), { stride: 0 }), RangeError, "stride");
    assertThrows(
      () => ops.conv3d(ops.zeros([3, 4, 4, 4]), ops.zeros([2, 3, 3, 3, 3])),
      RangeError,
      "[N, C, D, H, W]",
    );
    assertThrows(
      () => ops.convTranspose3d(x, ops.zeros([3, 2, 3, 3, 3]), { stride: 2, outputPadding: 2 }),
      RangeError,
      "smaller than the stride",
    );
    assertThrows(
      () => ops.conv3d(ops.cast(x, "f16"), ops.zeros([2, 3, 3, 3, 3], { dtype: "f16" })),
      TypeError,
      "f32",
    );
  });
});

gpuTest("conv3d() and convTranspose3d() accept an empty batch (zero weight and bias gradients)", async () => {
  const [y, yt, dw, db, dwt] = ops.scope(() => {
    const x = ops.tensor([], [0, 3, 4, 4, 4], { requiresGrad: true });
    const w = ops.tensor(randomArray(2 * 3 * 27, 7), [2, 3, 3, 3, 3], { requiresGrad: true });
    const b = ops.tensor([0.5, -1], [2], { requiresGrad: true });
    const wt = ops.tensor(randomArray(3 * 2 * 8, 8), [3, 2, 2, 2, 2], { requiresGrad: true });
    const y = ops.conv3d(x, w, { bias: b, padding: 1 });
    const yt = ops.convTranspose3d(x, wt, { stride: 2 });
    ops.backward(ops.add(ops.sum(y), ops.sum(yt)));
    const grads = [w.grad!, b.grad!, wt.grad!];
    [w, b, wt].forEach((t) => (t.grad = undefined));
    return [y, yt, ...grads];
  });
  assertEquals(y.shape, [0, 2, 4, 4, 4]);
  assertEquals(yt.shape, [0, 2, 8, 8, 8]);
  for (const g of [dw, db, dwt]) assert((await g.toFloat64()).every((v) => v === 0), `${g} is zero`);
  [y, yt, dw, db, dwt].forEach((t) => t.dispose());
});

gpuTest(
  "conv3d() returns its scratch memory to the pool and releases saved tensors after backward",
  async (gpu) => {
    const before = gpu.pool.stats().bytesInUse;
    ops.scope(() => {
      const x = ops.tensor(randomArray(2 * 3 * 5 * 5 * 5, 5), [2, 3, 5, 5, 5], { requiresGrad: true });
      const w = ops.tensor(randomArray(4 * 3 * 27, 6), [4, 3, 3, 3, 3], { requiresGrad: true });
      const y = ops.convTranspose3d(ops.conv3d(x, w, { stride: 2, padding: 1 }), w, {
        stride: 2,
        padding: 1,
      });
      ops.backward(ops.sum(ops.mul(y, y)));
      return [];
    });
    await gpu.sync();
    assertEquals(gpu.pool.stats().bytesInUse, before);
  },
);
