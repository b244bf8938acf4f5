/**
 * The fused attention backward (`fusedBackward: true`: dK, dV and dQ from one kernel that computes q·k
 * and dO·v once, 5 Lq·Lk·Dh passes instead of 7) against the float64 reference: several key blocks,
 * lengths off the tiles, causal, a bias with its gradient (one slice per head and shared), a key mask,
 * f16 storage; the kernels each path launches (a regression to the 7-pass path fails); determinism.
 */
import { createGpu, type Gpu } from "../../../core/gpu/mod.ts";
import { attentionBackward, attentionForward, scope, type Tensor, tensor } from "../../../core/tensor/mod.ts";
import { attentionBackwardRef } from "../../../core/tensor/reference/attention.ts";
import type { RefTensor } from "../../../core/tensor/reference/ops.ts";
import { attentionBackwardPlan } from "../../../kernels/mod.ts";
import { assert, assertEquals } from "../../assert.ts";
import { assertClose, gpuTest, randomArray } from "../../helpers.ts";

const FUSED = { fusedBackward: true };

/** A case: [B, H, Lq, Lk, Dh], causal, optional bias (shape) with gradient, optional key mask [B, Lk]. */
interface Case {
  shape: [number, number, number, number, number];
  causal?: boolean;
  bias?: number[];
  keyMask?: boolean;
  f16?: boolean;
}

function ref(shape: number[], seed: number, lo: number, hi: number, f16 = false): RefTensor {
  const a = randomArray(shape.reduce((x, y) => x * y, 1), seed, lo, hi);
  return { shape, data: Float64Array.from(f16 ? Float16Array.from(a) : Float32Array.from(a)) };
}

/** Runs forward and backward with `kernelOptions`; returns dq, dk, dv (and dbias) as float64. */
async function grads(gpu: Gpu, c: Case, xs: RefTensor[], extras: Extras, kernelOptions = FUSED) {
  const dtype = c.f16 ? "f16" : "f32";
  const ts = scope(() => {
    const [q, k, v, g] = xs.map((x) => tensor(x.data, x.shape, { gpu, dtype }));
    const bias = extras.bias &&
      tensor(extras.bias.data, extras.bias.shape, { gpu, dtype, requiresGrad: true });
    const keyMask = extras.keyMask &&
      tensor(extras.keyMask.data, extras.keyMask.shape, { gpu, dtype: "u32" });
    const options = { causal: c.causal, bias, keyMask };
    const { out, lse } = attentionForward(q, k, v, options, kernelOptions);
    return attentionBackward(q, k, v, out, lse, g, options, kernelOptions) as Tensor[];
  });
  try {
    return await Promise.all(ts.map((t) => t.toFloat64()));
  } finally {
    ts.forEach((t) => t.dispose());
  }
}

interface Extras {
  bias?: RefTensor;
  keyMask?: RefTensor;
}

function setup(c: Case, seed: number): { xs: RefTensor[]; extras: Extras } {
  const [b, h, lq, lk, dh] = c.shape;
  const xs = [
    ref([b, h, lq, dh], seed, -1.5, 1.5, c.f16),
    ref([b, h, lk, dh], seed + 1, -1.5, 1.5, c.f16),
    ref([b, h, lk, dh], seed + 2, -1, 1, c.f16),
    ref([b, h, lq, dh], seed + 3, -1, 1, c.f16),
  ];
  const extras: Extras = {};
  if (c.bias) extras.bias = ref(c.bias, seed + 4, -1, 1, c.f16);
  if (c.keyMask) {
    // key 0 of sample 0 and every third key are masked
    const data = Float64Array.from(
      { length: b * lk },
      (_, i) => (i % lk === 0 && i < lk) || i % 3 === 2 ? 0 : 1,
    );
    extras.keyMask = { shape: [b, lk], data };
  }
  return { xs, extras };
}

const CASES: [string, Case][] = [
  ["3 key blocks, lengths off the tiles", { shape: [1, 2, 37, 300, 16] }],
  ["causal, Lq > Lk, head dim 72 (lanes and padded slots)", { shape: [1, 2, 150, 140, 72], causal: true }],
  ["bias per head with its gradient, key mask", {
    shape: [2, 2, 33, 150, 8],
    bias: [2, 2, 33, 150],
    keyMask: true,
  }],
  ["shared bias [1, H] with its gradient, causal", {
    shape: [2, 2, 70, 130, 16],
    causal: true,
    bias: [1, 2, 70, 130],
  }],
  ["f16 storage", { shape: [1, 2, 40, 200, 16], f16: true }],
];

for (const [i, [name, c]] of CASES.entries()) {
  gpuTest(`fused attention backward: ${name} matches the float64 reference`, async (gpu) => {
    const [b, h, lq, lk, dh] = c.shape;
    const plan = attentionBackwardPlan(gpu, {
      heads: b * h,
      lq,
      lk,
      headDim: dh,
      scale: 1,
      causal: !!c.causal,
    }, FUSED);
    assert(plan.fused, `${name}: the fused backward runs on this device`);
    const { xs, extras } = setup(c, 100 + 10 * i);
    const [q, k, v, g] = xs;
    const options = { causal: c.causal, bias: extras.bias, keyMask: extras.keyMask };
    const want = attentionBackwardRef(q, k, v, g, options);
    const got = await grads(gpu, c, xs, extras);
    const tol = c.f16 ? { rtol: 2e-3, atol: 2e-3 } : { rtol: 1e-5, atol: 1e-5 };
    for (const [j, key] of (["dq", "dk", "dv", "dbias"] as const).entries()) {
      const w = want[key];
      if (!w) continue;
      assertClose(got[j], w.data, { ...tol, label: `${name}: ${key}` });
    }
  });
}

Deno.test({
  name: "attention backward launches: 7 Lq·Lk·Dh passes unfused, 5 fused; fused results are deterministic",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const gpu = await createGpu();
    const names: string[] = [];
    const dispatch = gpu.dispatch.bind(gpu);
    gpu.dispatch = (kernel, ...rest) => {
      names.push(kernel.name.replace(/\[.*$/, ""));
      return dispatch(kernel, ...rest);
    };
    // Lq·Lk·Dh multiply-add passes of each kernel (q·k, dO·v, then dQ, dK and dV as they accumulate)
    const macs: Record<string, number> = { "attention-dq": 3, "attention-dkdv": 4, "attention-dkdvq": 5 };
    const passes = () => names.reduce((n, k) => n + (macs[k] ?? 0), 0);
    try {
      const c: Case = { shape: [1, 2, 37, 300, 16], causal: true };
      const { xs, extras } = setup(c, 7);
      names.length = 0;
      await grads(gpu, c, xs, extras, { fusedBackward: false });
      const unfused = names.filter((n) => n !== "attention-forward");
      assertEquals(unfused, ["attention-stats", "attention-dq", "attention-dkdv"]);
      assertEquals(passes(), 7);
      names.length = 0;
      const a = await grads(gpu, c, xs, extras);
      assertEquals(names.filter((n) => n !== "attention-forward"), [
        "attention-stats",
        "attention-dkdvq",
        "attention-dqsum",
      ]);
      assertEquals(passes(), 5);
      const b = await grads(gpu, c, xs, extras);
      for (let j = 0; j < 3; j++) assertEquals(b[j], a[j], "the same inputs give the same bits");
    } finally {
      gpu.destroy();
    }
  },
});
