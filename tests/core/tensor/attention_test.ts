/**
 * scaledDotProductAttention (core/tensor/ops/attention.ts, kernels/attention.ts) against the float64
 * reference with materialised softmax (core/tensor/reference/attention.ts), against finite differences,
 * against the unfused composition matmul → scale → softmax → matmul, f16 against f32, with and without
 * subgroups, and with bindings split over heads.
 */
import { createGpu, type Gpu } from "../../../core/gpu/mod.ts";
import {
  add,
  attentionBackward,
  attentionForward,
  backward,
  matmul,
  mul,
  scaledDotProductAttention,
  scope,
  softmax,
  sum,
  type Tensor,
  tensor,
} from "../../../core/tensor/mod.ts";
import {
  attentionBackwardRef,
  attentionForwardRef,
  attentionRef,
} from "../../../core/tensor/reference/attention.ts";
import type { RefTensor } from "../../../core/tensor/reference/ops.ts";
import { attentionTiling } from "../../../kernels/mod.ts";
import { assert, assertEquals, assertThrows } from "../../assert.ts";
import { assertClose, gpuTest, randomArray } from "../../helpers.ts";
import { checkOp, type OpCase } from "../../op_harness.ts";

/** [B, H, Lq, Lk, Dh, causal] */
type Config = [number, number, number, number, number, boolean];

function label([b, h, lq, lk, dh, causal]: Config): string {
  return `B${b} H${h} Lq${lq} Lk${lk} Dh${dh}${causal ? " causal" : ""}`;
}

/** Random f32-representable inputs (optionally f16-representable) for one configuration. */
function inputs([b, h, lq, lk, dh]: Config, seed: number, f16 = false): RefTensor[] {
  const round = (a: Float64Array) => Float64Array.from(f16 ? Float16Array.from(a) : Float32Array.from(a));
  return [
    { shape: [b, h, lq, dh], data: round(randomArray(b * h * lq * dh, seed, -1.5, 1.5)) },
    { shape: [b, h, lk, dh], data: round(randomArray(b * h * lk * dh, seed + 1, -1.5, 1.5)) },
    { shape: [b, h, lk, dh], data: round(randomArray(b * h * lk * dh, seed + 2, -1, 1)) },
    { shape: [b, h, lq, dh], data: round(randomArray(b * h * lq * dh, seed + 3, -1, 1)) },
  ];
}

interface GpuResult {
  out: Float64Array;
  lse: Float64Array;
  dq: Float64Array;
  dk: Float64Array;
  dv: Float64Array;
}

/** Runs the fused forward and backward on `gpu` (f32 or f16 storage). */
async function runFused(
  gpu: Gpu,
  c: Config,
  xs: RefTensor[],
  dtype: "f32" | "f16" = "f32",
  forwardOnly = false,
): Promise<GpuResult> {
  const causal = c[5];
  const ts = scope(() => {
    const [q, k, v, g] = xs.map((x) => tensor(x.data, x.shape, { gpu, dtype }));
    const { out, lse } = attentionForward(q, k, v, { causal });
    if (out.dtype !== dtype || lse.dtype !== "f32") throw new Error(`attention output ${out}, lse ${lse}`);
    if (forwardOnly) return [out, lse];
    return [out, lse, ...attentionBackward(q, k, v, out, lse, g, { causal })];
  });
  try {
    const [out, lse, dq, dk, dv] = await Promise.all(ts.map((t) => t.toFloat64()));
    return { out, lse, dq, dk, dv };
  } finally {
    ts.forEach((t) => t.dispose());
  }
}

/** Compares the fused kernels with the float64 reference: values, lse and the three gradients. */
async function checkAgainstReference(gpu: Gpu, c: Config, seed: number, forwardOnly = false): Promise<void> {
  const xs = inputs(c, seed);
  const causal = c[5];
  const got = await runFused(gpu, c, xs, "f32", forwardOnly);
  const ref = attentionForwardRef(xs[0], xs[1], xs[2], { causal });
  const name = label(c);
  // f32 accumulation over L terms of O(1) values: measured worst errors are 2e-7 (out), 1.7e-6 (lse ≈ 7,
  // gradients summed over 1030 queries); the bounds leave a few times that and catch a 1e-4 relative slip
  assertClose(got.out, ref.out.data, { rtol: 1e-5, atol: 1e-6, label: `${name}: out` });
  assertClose(got.lse, ref.lse.data, { rtol: 1e-6, atol: 1e-6, label: `${name}: lse` });
  if (forwardOnly) return;
  const grads = attentionBackwardRef(xs[0], xs[1], xs[2], xs[3], { causal });
  assertClose(got.dq, grads.dq.data, { rtol: 1e-5, atol: 4e-6, label: `${name}: dq` });
  assertClose(got.dk, grads.dk.data, { rtol: 1e-5, atol: 4e-6, label: `${name}: dk` });
  assertClose(got.dv, grads.dv.data, { rtol: 1e-5, atol: 4e-6, label: `${name}: dv` });
}

const CONFIGS: Config[] = [
  [2, 3, 7, 7, 64, false],
  [1, 2, 65, 65, 66, true],
  [2, 2, 65, 200, 72, false],
  [1, 1, 200, 200, 128, true],
  [1, 2, 200, 65, 72, true],
  [3, 1, 1, 1, 5, false],
  [1, 3, 1, 200, 33, false],
  [1, 2, 200, 7, 5, true],
  [1, 1, 65, 7, 128, false],
  [1, 2, 7, 65, 33, true],
];

gpuTest("scaledDotProductAttention() matches the float64 reference (values, lse, dQ/dK/dV)", async (gpu) => {
  for (const [i, c] of CONFIGS.entries()) await checkAgainstReference(gpu, c, 100 + i);
});

gpuTest(
  "scaledDotProductAttention() is exact on a long sequence (1030 tokens, not a tile multiple)",
  async (gpu) => {
    await checkAgainstReference(gpu, [1, 1, 1030, 1030, 72, true], 7);
    await checkAgainstReference(gpu, [1, 1, 1030, 1030, 64, false], 8, true);
  },
);

Deno.test({
  name: "scaledDotProductAttention() without subgroups (one invocation per row) matches the reference",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const gpu = await createGpu({ disableFeatures: ["subgroups"] });
    try {
      assert(!gpu.hasSubgroups, "device without subgroups");
      assert(attentionTiling(gpu, 72).lanes === 1, "no-subgroup path has one lane per row");
      for (const [i, c] of CONFIGS.slice(0, 6).entries()) await checkAgainstReference(gpu, c, 200 + i);
    } finally {
      gpu.destroy();
    }
  },
});

gpuTest(
  "attention subgroup path splits rows over lanes and agrees with the no-subgroup path",
  async (gpu) => {
    if (!gpu.hasSubgroups) {
      console.log("  (device has no subgroups: the subgroup path is not exercised here)");
      return;
    }
    const t = attentionTiling(gpu, 72);
    assert(t.subgroups && t.lanes > 1, `head dim 72 uses ${t.lanes} lanes per row with subgroups`);
    const c: Config = [1, 2, 65, 33, 72, true];
    const xs = inputs(c, 31);
    const plain = await createGpu({ disableFeatures: ["subgroups"] });
    try {
      const a = await runFused(gpu, c, xs);
      const b = await runFused(plain, c, xs);
      for (const key of ["out", "lse", "dq", "dk", "dv"] as const) {
        assertClose(a[key], b[key], { rtol: 1e-5, atol: 1e-6, label: `subgroups vs none: ${key}` });
      }
    } finally {
      plain.destroy();
    }
  },
);

gpuTest("attention f16 storage agrees with the f32 path within f16 rounding", async (gpu) => {
  if (!gpu.hasF16) {
    console.log("  (device has no shader-f16: skipped)");
    return;
  }
  for (const [i, c] of ([[2, 2, 65, 40, 72, true], [1, 1, 33, 200, 66, false]] as Config[]).entries()) {
    const xs = inputs(c, 300 + i, true); // inputs exactly representable in f16: both paths see the same values
    const full = await runFused(gpu, c, xs, "f32");
    const half = await runFused(gpu, c, xs, "f16");
    // Outputs are rounded to f16 once (relative error ≤ 2⁻¹¹ ≈ 4.9e-4); D = dO·O in the backward reads the
    // f16-rounded O, which shifts every ds by ≈ p·|dO|·|O|·5e-4: hence a small absolute term.
    for (const key of ["out", "dq", "dk", "dv"] as const) {
      assertClose(half[key], full[key], {
        rtol: 1.5e-3,
        atol: 1e-3,
        label: `${label(c)} f16 vs f32: ${key}`,
      });
    }
    assertClose(half.lse, full.lse, { rtol: 1e-6, atol: 1e-6, label: `${label(c)} f16 vs f32: lse (f32)` });
  }
});

Deno.test({
  name: "attention splits bindings above maxStorageBufferBindingSize over heads (unaligned offsets)",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const gpu = await createGpu({ maxStorageBindingBytes: 4096 });
    try {
      // 20·9·4 = 720 bytes per head: chunks of 5 heads whose starts are not binding-aligned
      await checkAgainstReference(gpu, [3, 5, 20, 13, 9, true], 41);
      await checkAgainstReference(gpu, [2, 4, 11, 30, 9, false], 42);
    } finally {
      gpu.destroy();
    }
  },
});

/** The unfused composition: softmax(scale·q·kᵀ + mask)·v with voxssl's own ops. */
function unfused(q: Tensor, k: Tensor, v: Tensor, causal: boolean): Tensor {
  const [lq, lk] = [q.shape[q.rank - 2], k.shape[k.rank - 2]];
  let scores = mul(matmul(q, k, { transposeB: true }), 1 / Math.sqrt(q.shape[q.rank - 1]));
  if (causal) {
    const mask = new Float32Array(lq * lk);
    for (let i = 0; i < lq; i++) for (let j = i + 1; j < lk; j++) mask[i * lk + j] = -1e9;
    scores = add(scores, tensor(mask, [lq, lk], { gpu: q.gpu }));
  }
  return matmul(softmax(scores, -1), v);
}

gpuTest(
  "fused attention agrees with the unfused composition (values and autograd gradients)",
  async () => {
    for (const [i, c] of ([[2, 3, 33, 33, 66, true], [1, 2, 19, 70, 72, false]] as Config[]).entries()) {
      const xs = inputs(c, 400 + i);
      const results = (fn: (q: Tensor, k: Tensor, v: Tensor) => Tensor) =>
        scope(() => {
          const [q, k, v] = xs.slice(0, 3).map((x) => tensor(x.data, x.shape, { requiresGrad: true }));
          const y = fn(q, k, v);
          backward(sum(mul(y, tensor(xs[3].data, xs[3].shape))));
          const grads = [q.grad!, k.grad!, v.grad!];
          [q, k, v].forEach((t) => (t.grad = undefined));
          return [y, ...grads];
        });
      const fused = results((q, k, v) => scaledDotProductAttention(q, k, v, { causal: c[5] }));
      const plain = results((q, k, v) => unfused(q, k, v, c[5]));
      for (let j = 0; j < 4; j++) {
        assertClose(await fused[j].toFloat64(), await plain[j].toFloat64(), {
          rtol: 1e-4,
          atol: 1e-5,
          label: `${label(c)}: fused vs unfused ${["out", "dq", "dk", "dv"][j]}`,
        });
      }
      [...fused, ...plain].forEach((t) => t.dispose());
    }
  },
);

gpuTest("scaledDotProductAttention() never stores the Lq×Lk matrix", async (gpu) => {
  const [l, dh] = [1024, 16];
  const xs = inputs([1, 1, l, l, dh, false], 9);
  const [q, k, v, g] = xs.map((x) => tensor(x.data, x.shape));
  const inputBytes = [q, k, v, g].reduce((n, t) => n + t.buffer.size, 0);
  await gpu.sync();
  const before = gpu.pool.stats().bytesInUse;
  gpu.pool.resetPeak();
  const { out, lse } = attentionForward(q, k, v);
  const grads = attentionBackward(q, k, v, out, lse, g);
  await gpu.sync();
  const extra = gpu.pool.stats().peakBytesInUse - before;
  // out, lse, three gradients and D: ≈ 4·64 KiB + 8 KiB; the score matrix alone would be 4 MiB
  assert(extra < 512 * 1024, `peak extra memory ${extra} bytes`);
  [q, k, v, g, out, lse, ...grads].forEach((t) => t.dispose());
  assertEquals(gpu.pool.stats().bytesInUse, before - inputBytes);
});

const R = (xs: RefTensor[], causal = false, scale?: number) =>
  attentionRef(xs[0], xs[1], xs[2], { causal, scale });

const cases: OpCase[] = [
  {
    name: "scaledDotProductAttention [1,2,7,5]",
    inputs: [{ shape: [1, 2, 7, 5] }, { shape: [1, 2, 7, 5] }, { shape: [1, 2, 7, 5] }],
    gpu: ([q, k, v]) => scaledDotProductAttention(q, k, v),
    ref: (xs) => R(xs),
  },
  {
    name: "scaledDotProductAttention causal, Lq 6 > Lk 4",
    inputs: [{ shape: [2, 1, 6, 3] }, { shape: [2, 1, 4, 3] }, { shape: [2, 1, 4, 3] }],
    gpu: ([q, k, v]) => scaledDotProductAttention(q, k, v, { causal: true }),
    ref: (xs) => R(xs, true),
  },
  {
    name: "scaledDotProductAttention Lq 3 < Lk 9, scale 0.7, rank 3",
    inputs: [{ shape: [2, 3, 8] }, { shape: [2, 9, 8] }, { shape: [2, 9, 8] }],
    gpu: ([q, k, v]) => scaledDotProductAttention(q, k, v, { scale: 0.7 }),
    ref: (xs) => R(xs, false, 0.7),
  },
  {
    name: "scaledDotProductAttention head dim 33, causal, subgroup lanes",
    inputs: [{ shape: [1, 1, 5, 33] }, { shape: [1, 1, 5, 33] }, { shape: [1, 1, 5, 33] }],
    gpu: ([q, k, v]) => scaledDotProductAttention(q, k, v, { causal: true }),
    ref: (xs) => R(xs, true),
  },
];

for (const c of cases) gpuTest(`${c.name}: values and finite-difference gradients`, () => checkOp(c));

gpuTest("scaledDotProductAttention() rejects mismatched operands with clear errors", () => {
  scope(() => {
    const q = tensor(new Float32Array(2 * 3 * 4), [1, 2, 3, 4]);
    const kBadDim = tensor(new Float32Array(2 * 3 * 5), [1, 2, 3, 5]);
    const kBadHeads = tensor(new Float32Array(3 * 3 * 4), [1, 3, 3, 4]);
    const vShort = tensor(new Float32Array(2 * 2 * 4), [1, 2, 2, 4]);
    const empty = tensor([], [1, 2, 0, 4]);
    assertThrows(() => scaledDotProductAttention(q, kBadDim, kBadDim), RangeError, "head dims differ");
    assertThrows(() => scaledDotProductAttention(q, kBadHeads, kBadHeads), RangeError, "batch/head");
    assertThrows(() => scaledDotProductAttention(q, q, vShort), RangeError, "same length");
    assertThrows(() => scaledDotProductAttention(q, empty, empty), RangeError, "no keys");
    assertThrows(() => scaledDotProductAttention(tensor([1, 2], [2]), q, q), RangeError, "rank");
  });
});
