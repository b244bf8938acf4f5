/**
 * scaledDotProductAttention (core/tensor/ops/attention.ts, kernels/attention.ts) against the float64
 * reference with materialised softmax (core/tensor/reference/attention.ts), against finite differences,
 * against the unfused composition matmul → scale → softmax → matmul, f16 against f32, with and without
 * subgroups, and with bindings split over heads; with an additive bias (broadcast, −∞ entries, its
 * gradient) and a key mask, including queries left without any key.
 */
import { createGpu, type Gpu, type GpuFeature } from "../../../core/gpu/mod.ts";
import {
  add,
  attentionBackward,
  attentionForward,
  autocast,
  backward,
  full,
  matmul,
  mul,
  noGrad,
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
import { attentionBackwardPlan, attentionTiling } from "../../../kernels/mod.ts";
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
  /** Gradient of the bias, when it required grad. */
  dbias?: Float64Array;
}

/** A bias and/or key mask for the fused op (host values, as the reference sees them). */
interface Extras {
  bias?: RefTensor;
  /** Storage type of the bias (default f32). */
  biasType?: "f32" | "f16";
  /** Whether the bias requires grad (default true). */
  biasGrad?: boolean;
  keyMask?: RefTensor;
  maskType?: "u32" | "f32";
}

/** Runs the fused forward and backward on `gpu` (f32 or f16 storage) for prepared inputs. */
async function runFusedOn(
  gpu: Gpu,
  xs: RefTensor[],
  causal: boolean,
  dtype: "f32" | "f16" = "f32",
  forwardOnly = false,
  extras: Extras = {},
): Promise<GpuResult> {
  const ts = scope(() => {
    const [q, k, v, g] = xs.map((x) => tensor(x.data, x.shape, { gpu, dtype }));
    const bias = extras.bias &&
      tensor(extras.bias.data, extras.bias.shape, {
        gpu,
        dtype: extras.biasType ?? "f32",
        requiresGrad: extras.biasGrad ?? true,
      });
    const keyMask = extras.keyMask &&
      tensor(extras.keyMask.data, extras.keyMask.shape, { gpu, dtype: extras.maskType ?? "u32" });
    const options = { causal, bias, keyMask };
    const { out, lse } = attentionForward(q, k, v, options);
    if (out.dtype !== dtype || lse.dtype !== "f32") throw new Error(`attention output ${out}, lse ${lse}`);
    if (forwardOnly) return [out, lse];
    const grads = attentionBackward(q, k, v, out, lse, g, options);
    if (bias) {
      assertEquals(grads.length, bias.requiresGrad ? 4 : 3, "dBias exactly when the bias requires grad");
      if (grads[3]) {
        assertEquals([grads[3].dtype, grads[3].shape], [bias.dtype, bias.shape], "dBias like bias");
      }
    }
    return [out, lse, ...grads];
  });
  try {
    const [out, lse, dq, dk, dv, dbias] = await Promise.all(ts.map((t) => t.toFloat64()));
    return { out, lse, dq, dk, dv, dbias };
  } finally {
    ts.forEach((t) => t.dispose());
  }
}

/** Runs the fused forward and backward on `gpu` (f32 or f16 storage). */
function runFused(
  gpu: Gpu,
  c: Config,
  xs: RefTensor[],
  dtype: "f32" | "f16" = "f32",
  forwardOnly = false,
): Promise<GpuResult> {
  return runFusedOn(gpu, xs, c[5], dtype, forwardOnly);
}

/** The log-sum-exp with −∞ (queries without keys) as a finite marker, for assertClose. */
function markInf(a: ArrayLike<number>): Float64Array {
  return Float64Array.from(a, (x) => (x === -Infinity ? -12345 : x));
}

/** Compares the fused kernels with the float64 reference: values, lse and the gradients. */
async function checkInputs(
  gpu: Gpu,
  xs: RefTensor[],
  causal: boolean,
  name: string,
  forwardOnly = false,
  extras: Extras = {},
): Promise<void> {
  const got = await runFusedOn(gpu, xs, causal, "f32", forwardOnly, extras);
  const options = { causal, bias: extras.bias, keyMask: extras.keyMask };
  const ref = attentionForwardRef(xs[0], xs[1], xs[2], options);
  // f32 accumulation over L terms of O(1) values: measured worst errors are 2e-7 (out), 1.7e-6 (lse ≈ 7,
  // gradients summed over 1030 queries); the bounds leave a few times that and catch a 1e-4 relative slip
  assertClose(got.out, ref.out.data, { rtol: 1e-5, atol: 1e-6, label: `${name}: out` });
  assertClose(markInf(got.lse), markInf(ref.lse.data), { rtol: 1e-6, atol: 1e-6, label: `${name}: lse` });
  if (forwardOnly) return;
  const grads = attentionBackwardRef(xs[0], xs[1], xs[2], xs[3], options);
  assertClose(got.dq, grads.dq.data, { rtol: 1e-5, atol: 4e-6, label: `${name}: dq` });
  assertClose(got.dk, grads.dk.data, { rtol: 1e-5, atol: 4e-6, label: `${name}: dk` });
  assertClose(got.dv, grads.dv.data, { rtol: 1e-5, atol: 4e-6, label: `${name}: dv` });
  if (extras.bias && (extras.biasGrad ?? true)) {
    // dS carries no 1/√Dh factor (dQ and dK do): measured worst 3.5e-6 at Dh 128, summed over 2 heads
    assertClose(got.dbias!, grads.dbias!.data, { rtol: 1e-5, atol: 1e-5, label: `${name}: dbias` });
  }
}

/** Compares the fused kernels with the float64 reference: values, lse and the three gradients. */
function checkAgainstReference(gpu: Gpu, c: Config, seed: number, forwardOnly = false): Promise<void> {
  return checkInputs(gpu, inputs(c, seed), c[5], label(c), forwardOnly);
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
  "scaledDotProductAttention() is exact on long sequences (1030 and 8001 tokens, not tile multiples)",
  async (gpu) => {
    await checkAgainstReference(gpu, [1, 1, 1030, 1030, 72, true], 7);
    await checkAgainstReference(gpu, [1, 1, 1030, 1030, 64, false], 8, true);
    // 8,001 keys for a few queries, and 8,001 queries over a few keys (Primus-M has 8,000 tokens)
    await checkAgainstReference(gpu, [1, 1, 70, 8001, 16, false], 9);
    await checkAgainstReference(gpu, [1, 1, 8001, 40, 8, true], 10);
  },
);

gpuTest("attention covers batch × heads beyond 65,535 workgroups (split grid)", async (gpu) => {
  // 2 × 33,000 heads of 2 queries: 66,000 workgroups per kernel, more than one grid dimension holds
  await checkAgainstReference(gpu, [2, 33000, 2, 3, 2, true], 51);
});

gpuTest("attention with no queries gives empty outputs and zero dK, dV", async (gpu) => {
  const c: Config = [1, 2, 0, 5, 4, false];
  const got = await runFused(gpu, c, inputs(c, 61));
  assertEquals([got.out.length, got.lse.length, got.dq.length], [0, 0, 0]);
  assertEquals([...got.dk, ...got.dv], new Array(2 * 40).fill(0));
});

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
  { requires: ["subgroups"] },
  async (gpu) => {
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

gpuTest("attention f16 storage agrees with the f32 path within f16 rounding", {
  requires: ["shader-f16"],
}, async (gpu) => {
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
  // out, lse, three gradients and D: ≈ 4·64 KiB + 8 KiB, plus the fused backward's dQ slabs (8 key blocks
  // of 128 keys: 8 slabs of 64 KiB here, bounded whatever Lk: attention_fused_test.ts); the score matrix
  // alone would be 4 MiB
  const slabs = attentionBackwardPlan(gpu, {
    heads: 1,
    lq: l,
    lk: l,
    headDim: dh,
    scale: 0.25,
    causal: false,
  });
  assertEquals(slabs.dqPartials * 4, 512 * 1024);
  assert(extra < 512 * 1024 + slabs.dqPartials * 4, `peak extra memory ${extra} bytes`);
  [q, k, v, g, out, lse, ...grads].forEach((t) => t.dispose());
  assertEquals(gpu.pool.stats().bytesInUse, before - inputBytes);
});

gpuTest(
  "scaledDotProductAttention() in training-step scopes returns the pool to the same bytes",
  async (gpu) => {
    const xs = inputs([1, 2, 9, 11, 8, true], 71);
    const [q, k, v] = xs.slice(0, 3).map((x) => tensor(x.data, x.shape, { requiresGrad: true }));
    const step = () =>
      scope(() => {
        backward(sum(mul(scaledDotProductAttention(q, k, v, { causal: true }), 0.5)));
      });
    step(); // first step allocates the leaves' grads
    await gpu.sync();
    const before = gpu.pool.stats().bytesInUse;
    for (let i = 0; i < 3; i++) step();
    // without grad recording, and outside any scope, the log-sum-exp is released with the call
    noGrad(() => scaledDotProductAttention(q, k, v)).dispose();
    await gpu.sync();
    assertEquals(gpu.pool.stats().bytesInUse, before);
    [q, k, v].forEach((t) => t.dispose());
  },
);

const R = (xs: RefTensor[], causal = false, scale?: number) =>
  attentionRef(xs[0], xs[1], xs[2], { causal, scale });

// a case that names the subgroup path needs subgroups (else it would silently run the one-lane path)
const cases: (OpCase & { requires?: GpuFeature[] })[] = [
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
    requires: ["subgroups"],
    inputs: [{ shape: [1, 1, 5, 33] }, { shape: [1, 1, 5, 33] }, { shape: [1, 1, 5, 33] }],
    gpu: ([q, k, v]) => scaledDotProductAttention(q, k, v, { causal: true }),
    ref: (xs) => R(xs, true),
  },
];

for (const c of cases) {
  gpuTest(`${c.name}: values and finite-difference gradients`, { requires: c.requires }, () => checkOp(c));
}

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

// ---- Additive bias and key mask ----

/** Which leading dimensions a bias has: one slice per (batch, head), per head, per batch element, or one. */
type BiasKind = "full" | "heads" | "batch" | "shared";

/** A configuration, its bias (none: undefined) and whether a key mask applies. */
type MaskConfig = [Config, BiasKind | undefined, boolean];

/**
 * A random bias for a configuration: uniform in [−2, 2] (f16-representable when asked), about 15% −∞
 * entries, and the row of query 1 in slice 0 all −∞ (a query without keys).
 */
function randomBias([b, h, lq, lk]: Config, kind: BiasKind, seed: number, f16 = false): RefTensor {
  const lead = { full: [b, h], heads: [1, h], batch: [b, 1], shared: [1, 1] }[kind];
  return randomBiasShaped([...lead, lq, lk], seed, f16);
}

function randomBiasShaped(shape: number[], seed: number, f16 = false): RefTensor {
  const [lq, lk] = shape.slice(-2);
  const n = shape.reduce((a, d) => a * d, 1);
  const values = randomArray(n, seed, -2, 2);
  const holes = randomArray(n, seed + 1);
  const rounded = f16 ? Float16Array.from(values) : Float32Array.from(values);
  const data = Float64Array.from(rounded, (x, i) => (holes[i] < 0.15 ? -Infinity : x));
  if (lq > 1) data.fill(-Infinity, lk, 2 * lk);
  return { shape, data };
}

/** A random key mask [rows, Lk] with about 25% zeros; `dropRow`: that row all zeros. */
function randomKeyMask(rows: number, lk: number, seed: number, dropRow = -1): RefTensor {
  const r = randomArray(rows * lk, seed);
  const data = Float64Array.from(r, (x, i) => (x < 0.25 || Math.floor(i / lk) === dropRow ? 0 : 1));
  return { shape: [rows, lk], data };
}

/** Random q, k, v, dO for any leading dimensions. */
function shapedInputs(lead: number[], lq: number, lk: number, dh: number, seed: number, f16 = false) {
  const round = (a: Float64Array) => Float64Array.from(f16 ? Float16Array.from(a) : Float32Array.from(a));
  const n = lead.reduce((a, d) => a * d, 1);
  return [
    { shape: [...lead, lq, dh], data: round(randomArray(n * lq * dh, seed, -1.5, 1.5)) },
    { shape: [...lead, lk, dh], data: round(randomArray(n * lk * dh, seed + 1, -1.5, 1.5)) },
    { shape: [...lead, lk, dh], data: round(randomArray(n * lk * dh, seed + 2, -1, 1)) },
    { shape: [...lead, lq, dh], data: round(randomArray(n * lq * dh, seed + 3, -1, 1)) },
  ];
}

function maskLabel([c, bias, mask]: MaskConfig): string {
  return `${label(c)}${bias ? ` bias ${bias}` : ""}${mask ? " keyMask" : ""}`;
}

async function checkMasked(gpu: Gpu, mc: MaskConfig, seed: number, extra: Extras = {}): Promise<void> {
  const [c, bias, mask] = mc;
  const extras: Extras = {
    bias: bias && randomBias(c, bias, seed + 10),
    keyMask: mask ? randomKeyMask(c[0], c[3], seed + 20) : undefined,
    ...extra,
  };
  await checkInputs(gpu, inputs(c, seed), c[5], maskLabel(mc), false, extras);
}

const MASK_CONFIGS: MaskConfig[] = [
  [[2, 3, 7, 7, 64, false], "heads", true],
  [[1, 2, 65, 65, 66, true], "full", false],
  [[2, 2, 65, 200, 72, false], "batch", true],
  [[1, 2, 200, 65, 72, true], "heads", true],
  [[3, 1, 1, 1, 5, false], "full", false],
  [[1, 3, 1, 200, 33, false], "shared", true],
  [[2, 2, 33, 7, 128, true], "batch", true],
  [[3, 2, 40, 33, 33, true], undefined, true],
  [[1, 1, 3, 140, 5, true], "full", false],
];

gpuTest(
  "attention with a bias and a key mask matches the float64 reference (values, lse, dQ/dK/dV/dBias)",
  async (gpu) => {
    for (const [i, mc] of MASK_CONFIGS.entries()) await checkMasked(gpu, mc, 500 + 31 * i);
    // a bias that needs no gradient (the dQ kernel without dBias), and an f32 key mask
    await checkMasked(gpu, MASK_CONFIGS[1], 777, { biasGrad: false });
    await checkMasked(gpu, MASK_CONFIGS[0], 778, { maskType: "f32" });
  },
);

gpuTest(
  "attention bias broadcast over any leading dimensions (rank 3, 5 and 6) matches the reference",
  async (gpu) => {
    // rank 3 [B, L, Dh] with a bias shared by the batch and a per-batch key mask
    await checkInputs(gpu, shapedInputs([3], 10, 11, 8, 801), true, "rank 3", false, {
      bias: randomBiasShaped([1, 10, 11], 802),
      keyMask: randomKeyMask(3, 11, 803),
    });
    // rank 5: per-head, shared, per-head dimensions
    await checkInputs(gpu, shapedInputs([2, 3, 2], 9, 12, 8, 811), true, "rank 5 [2,1,2]", false, {
      bias: randomBiasShaped([2, 1, 2, 9, 12], 812),
      keyMask: randomKeyMask(2, 12, 813),
    });
    // rank 6: four alternating runs of per-head and shared dimensions
    await checkInputs(gpu, shapedInputs([2, 2, 2, 3], 5, 6, 4, 821), false, "rank 6 [2,1,2,1]", false, {
      bias: randomBiasShaped([2, 1, 2, 1, 5, 6], 822),
    });
  },
);

gpuTest("attention queries without keys give output 0, lse −∞ and zero gradients", async (gpu) => {
  // batch element 1's keys all masked; in slice 0 query 1's bias row is all −∞
  const c: Config = [2, 2, 9, 12, 8, true];
  const xs = inputs(c, 851);
  const extras = { bias: randomBias(c, "heads", 852), keyMask: randomKeyMask(2, 12, 853, 1) };
  const got = await runFusedOn(gpu, xs, true, "f32", false, extras);
  const dh = 8;
  // rows of [B, H, Lq]: query 1 of (0, 0), and all 18 of batch element 1
  const emptyRows = [1, ...Array.from({ length: 18 }, (_, i) => 18 + i)];
  for (const r of emptyRows) {
    assertEquals(got.lse[r], -Infinity, `lse of query row ${r}`);
    assertEquals([...got.out.slice(r * dh, (r + 1) * dh)], new Array(dh).fill(0), `output row ${r}`);
    assertEquals([...got.dq.slice(r * dh, (r + 1) * dh)], new Array(dh).fill(0), `dq row ${r}`);
  }
  for (const key of ["out", "lse", "dq", "dk", "dv", "dbias"] as const) {
    assert(got[key]!.every((x) => !Number.isNaN(x)), `${key} has no NaN`);
  }
  await checkInputs(gpu, xs, true, "queries without keys", false, extras);
});

gpuTest(
  "attention dBias is 0 for the keys a causal block never visits (recycled buffers hold NaN)",
  async (gpu) => {
    // 150 keys, blocks of 128 query rows at Dh 16: keys 128..149 are after block 0's last key tile
    for (const kind of ["full", "heads"] as const) {
      const c: Config = [2, 2, 9, 150, 16, true];
      // dBias (full) and the dS scratch (heads) are 2·2·9·150 floats: dirty two buffers of that size
      scope(() => {
        for (let i = 0; i < 2; i++) full([2 * 2 * 9 * 150], NaN, { gpu });
      });
      await checkInputs(gpu, inputs(c, 861), true, `${label(c)} bias ${kind}`, false, {
        bias: randomBias(c, kind, 862),
      });
    }
  },
);

Deno.test({
  name: "attention with a bias and a key mask without subgroups matches the reference",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const gpu = await createGpu({ disableFeatures: ["subgroups"] });
    try {
      for (const i of [0, 1, 3, 6, 7]) await checkMasked(gpu, MASK_CONFIGS[i], 900 + i);
    } finally {
      gpu.destroy();
    }
  },
});

Deno.test({
  name: "attention bias and key mask with bindings split over heads (shared and per-head bias)",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const gpu = await createGpu({ maxStorageBindingBytes: 4096 });
    try {
      // q 720 bytes per head, 15 heads; the dS scratch (1040 bytes per head) is summed chunk by chunk.
      // A per-batch bias (3120 bytes) is bound whole, a full one split over heads.
      const c: Config = [3, 5, 20, 13, 9, true];
      await checkMasked(gpu, [c, "batch", true], 41);
      await checkMasked(gpu, [c, "full", true], 43);
      await checkMasked(gpu, [[4, 3, 11, 9, 9, false], "heads", true], 44);
      // a shared bias larger than one binding: a clear error
      const xs = inputs(c, 45);
      const bias = randomBias(c, "heads", 46); // [1, 5, 20, 13]: 5200 bytes
      assertThrows(
        () =>
          scope(() => {
            const [q, k, v] = xs.slice(0, 3).map((x) => tensor(x.data, x.shape, { gpu }));
            attentionForward(q, k, v, { bias: tensor(bias.data, bias.shape, { gpu }) });
          }),
        RangeError,
        "options.bias [1,5,20,13] is shared by several heads and must fit one storage binding",
      );
    } finally {
      gpu.destroy();
    }
  },
});

gpuTest("attention f16 with f32 and f16 biases matches the reference within f16 rounding", async (gpu) => {
  if (!gpu.hasF16) {
    console.log("  (device has no shader-f16: skipped)");
    return;
  }
  const runs: [Config, BiasKind, "f32" | "f16", boolean][] = [
    [[2, 2, 65, 40, 72, true], "heads", "f32", true],
    [[1, 2, 33, 70, 66, false], "full", "f16", true], // dBias written in f16 directly
    [[2, 2, 20, 9, 33, true], "batch", "f16", false], // dBias summed in f32, then rounded
  ];
  for (const [i, [c, kind, biasType, mask]] of runs.entries()) {
    const xs = inputs(c, 950 + i, true);
    const bias = randomBias(c, kind, 960 + i, biasType === "f16");
    const keyMask = mask ? randomKeyMask(c[0], c[3], 970 + i) : undefined;
    const got = await runFusedOn(gpu, xs, c[5], "f16", false, { bias, biasType, keyMask });
    const options = { causal: c[5], bias, keyMask };
    const ref = attentionForwardRef(xs[0], xs[1], xs[2], options);
    const grads = attentionBackwardRef(xs[0], xs[1], xs[2], xs[3], options);
    const name = `${label(c)} f16, ${biasType} bias ${kind}`;
    // out and gradients are rounded to f16 once (2⁻¹¹ relative); the backward's D reads the f16-rounded
    // O, which shifts every dS by about p·|dO|·|O|·5e-4: hence the absolute term
    assertClose(got.out, ref.out.data, { rtol: 1.5e-3, atol: 1e-3, label: `${name}: out` });
    assertClose(markInf(got.lse), markInf(ref.lse.data), { rtol: 1e-6, atol: 1e-5, label: `${name}: lse` });
    for (const key of ["dq", "dk", "dv"] as const) {
      assertClose(got[key], grads[key].data, { rtol: 1.5e-3, atol: 1e-3, label: `${name}: ${key}` });
    }
    // dBias = dS, up to about 3 here, unscaled: f16 rounding of the stored values adds up to 1e-3
    assertClose(got.dbias!, grads.dbias!.data, { rtol: 2e-3, atol: 1.5e-3, label: `${name}: dbias` });
  }
});

gpuTest(
  "attention under autocast returns f16, keeps an f32 bias f32 and gives f32 gradients",
  async (gpu) => {
    if (!gpu.hasF16) {
      console.log("  (device has no shader-f16: skipped)");
      return;
    }
    const c: Config = [2, 2, 19, 23, 40, true];
    const xs = inputs(c, 980, true); // f16-representable: the casts inside autocast are exact
    const bias = randomBias(c, "heads", 981);
    const keyMask = randomKeyMask(2, 23, 982);
    const ts = scope(() => {
      const [q, k, v] = xs.slice(0, 3).map((x) => tensor(x.data, x.shape, { requiresGrad: true }));
      const b = tensor(bias.data, bias.shape, { requiresGrad: true });
      const mask = tensor(keyMask.data, keyMask.shape, { dtype: "u32" });
      // the loss inside the block: mul(f16 y, f32 data) promotes y to f32 (core/tensor/autocast.ts)
      const [y, loss] = autocast(() => {
        const y = scaledDotProductAttention(q, k, v, { causal: true, bias: b, keyMask: mask });
        return [y, sum(mul(y, tensor(xs[3].data, xs[3].shape)))];
      });
      backward(loss);
      const grads = [q.grad!, k.grad!, v.grad!, b.grad!];
      [q, k, v, b].forEach((t) => (t.grad = undefined));
      return [y, ...grads];
    });
    assert(ts[0].dtype === "f16", "the output in f16");
    assert(ts.slice(1).every((t) => t.dtype === "f32"), "gradients of the f32 leaves in f32");
    const options = { causal: true, bias, keyMask };
    const ref = attentionForwardRef(xs[0], xs[1], xs[2], options);
    const grads = attentionBackwardRef(xs[0], xs[1], xs[2], xs[3], options);
    const expected = [ref.out, grads.dq, grads.dk, grads.dv, grads.dbias!];
    for (const [i, name] of ["out", "dq", "dk", "dv", "dbias"].entries()) {
      assertClose(await ts[i].toFloat64(), expected[i].data, {
        rtol: 1.5e-3,
        atol: 1e-3,
        label: `autocast ${name}`,
      });
    }
    ts.forEach((t) => t.dispose());
  },
);

gpuTest("attention with a bias that needs no gradient adds no backward memory", async (gpu) => {
  const c: Config = [2, 2, 33, 40, 16, true];
  const xs = inputs(c, 990);
  const bias = randomBias(c, "heads", 991);
  const extraBytes = async (withBias: boolean) => {
    const [q, k, v, g] = xs.map((x) => tensor(x.data, x.shape));
    const b = withBias ? tensor(bias.data, bias.shape) : undefined;
    const { out, lse } = attentionForward(q, k, v, { causal: true, bias: b });
    await gpu.sync();
    const before = gpu.pool.stats().bytesInUse;
    gpu.pool.resetPeak();
    const grads = attentionBackward(q, k, v, out, lse, g, { causal: true, bias: b });
    await gpu.sync();
    const extra = gpu.pool.stats().peakBytesInUse - before;
    assertEquals(grads.length, 3, "no dBias");
    [q, k, v, g, out, lse, ...grads].forEach((t) => t.dispose());
    b?.dispose();
    return extra;
  };
  assertEquals(await extraBytes(true), await extraBytes(false));
});

/** Adds −∞ to about 15% of a bias's entries (a fixed pattern), on the GPU and in the reference. */
const HOLES = (shape: readonly number[]) => {
  const r = randomArray(shape.reduce((a, d) => a * d, 1), 1234);
  return Float64Array.from(r, (x) => (x < 0.15 ? -Infinity : 0));
};
const holed = (b: Tensor) => add(b, tensor(HOLES(b.shape), b.shape, { gpu: b.gpu }));
const holedRef = (b: RefTensor): RefTensor => {
  const holes = HOLES(b.shape);
  return { shape: b.shape, data: b.data.map((x, i) => x + holes[i]) };
};
const keyMaskOf = (rows: number, lk: number) => randomKeyMask(rows, lk, 4321);

const biasCases: OpCase[] = [
  {
    name: "scaledDotProductAttention bias [1,2,5,6] broadcast over batch, −∞ entries, key mask",
    inputs: [{ shape: [2, 2, 5, 4] }, { shape: [2, 2, 6, 4] }, { shape: [2, 2, 6, 4] }, {
      shape: [1, 2, 5, 6],
      lo: -2,
      hi: 2,
    }],
    gpu: ([q, k, v, b]) => {
      const keyMask = keyMaskOf(2, 6);
      const mask = tensor(keyMask.data, keyMask.shape, { dtype: "u32" });
      return scaledDotProductAttention(q, k, v, { bias: holed(b), keyMask: mask });
    },
    ref: (xs) => attentionRef(xs[0], xs[1], xs[2], { bias: holedRef(xs[3]), keyMask: keyMaskOf(2, 6) }),
  },
  {
    name: "scaledDotProductAttention causal with bias [2,1,6,4] shared by heads, Lq 6 > Lk 4",
    inputs: [{ shape: [2, 2, 6, 3] }, { shape: [2, 2, 4, 3] }, { shape: [2, 2, 4, 3] }, {
      shape: [2, 1, 6, 4],
      lo: -2,
      hi: 2,
    }],
    gpu: ([q, k, v, b]) => scaledDotProductAttention(q, k, v, { causal: true, bias: holed(b) }),
    ref: (xs) => attentionRef(xs[0], xs[1], xs[2], { causal: true, bias: holedRef(xs[3]) }),
  },
  {
    name: "scaledDotProductAttention full bias, rank 3, head dim 33, Lq 5 < Lk 7, scale 0.3",
    inputs: [{ shape: [2, 5, 33] }, { shape: [2, 7, 33] }, { shape: [2, 7, 33] }, {
      shape: [2, 5, 7],
      lo: -2,
      hi: 2,
    }],
    gpu: ([q, k, v, b]) => scaledDotProductAttention(q, k, v, { bias: holed(b), scale: 0.3 }),
    ref: (xs) => attentionRef(xs[0], xs[1], xs[2], { bias: holedRef(xs[3]), scale: 0.3 }),
  },
];

for (const c of biasCases) {
  gpuTest(`${c.name}: values and finite-difference gradients (dQ, dK, dV, dBias)`, () => checkOp(c));
}

gpuTest("scaledDotProductAttention() rejects a bad bias or key mask with clear errors", (gpu) => {
  scope(() => {
    const q = tensor(new Float32Array(2 * 3 * 4), [1, 2, 3, 4]);
    const k = tensor(new Float32Array(2 * 5 * 4), [1, 2, 5, 4]);
    const sdpa = (options: Record<string, Tensor>) => () => scaledDotProductAttention(q, k, k, options);
    const zeros = (shape: number[], dtype: "f32" | "u32" | "i32" | "f16" = "f32") =>
      tensor(new Array(shape.reduce((a, d) => a * d, 1)).fill(0), shape, { dtype });
    assertThrows(sdpa({ bias: zeros([3, 5]) }), RangeError, "options.bias must have q's rank 4");
    assertThrows(
      sdpa({ bias: zeros([1, 3, 3, 5]) }),
      RangeError,
      "options.bias [1,3,3,5] does not broadcast",
    );
    assertThrows(sdpa({ bias: zeros([1, 2, 5, 3]) }), RangeError, "expected [1, 2 or 1, 3, 5]");
    assertThrows(sdpa({ bias: zeros([1, 2, 3, 5], "u32") }), TypeError, "options.bias must be f32");
    if (gpu.hasF16) {
      assertThrows(sdpa({ bias: zeros([1, 2, 3, 5], "f16") }), TypeError, "(or f16 when q is f16)");
    }
    assertThrows(
      sdpa({ keyMask: zeros([2, 5], "u32") }),
      RangeError,
      "options.keyMask must be [1, 5] or [5]",
    );
    assertThrows(sdpa({ keyMask: zeros([1, 3], "u32") }), RangeError, "got [1,3]");
    assertThrows(sdpa({ keyMask: zeros([1, 5], "i32") }), TypeError, "options.keyMask must be u32 or f32");
  });
});
