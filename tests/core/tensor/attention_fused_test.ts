/**
 * The fused attention backward (the default: dK, dV and dQ from one kernel that computes q·k and dO·v
 * once, 5 Lq·Lk·Dh passes instead of 7) against the float64 reference: several key blocks, lengths off
 * the tiles, causal, a bias with its gradient (one slice per head and shared), a key mask, f16 storage,
 * fewer dQ slabs than key blocks (workgroups looping over blocks); the kernels each path launches (a
 * regression to the 7-pass path fails); determinism; the slab plan's bounds; the autotuner's choice.
 */
import { createGpu, type Gpu } from "../../../core/gpu/mod.ts";
import { attentionBackward, attentionForward, scope, type Tensor, tensor } from "../../../core/tensor/mod.ts";
import { attentionBackwardRef } from "../../../core/tensor/reference/attention.ts";
import type { RefTensor } from "../../../core/tensor/reference/ops.ts";
import {
  attachAutotuner,
  ATTENTION_TUNING,
  attentionBackwardPlan,
  type AttentionKernelOptions,
  attentionTiling,
  Autotuner,
  detachAutotuner,
  type TuneTimer,
} from "../../../kernels/mod.ts";
import { assert, assertEquals } from "../../assert.ts";
import { assertClose, gpuTest, randomArray } from "../../helpers.ts";
import { withSmallBindings } from "../../chunked_harness.ts";
import { spanLimitBytes } from "../../../kernels/launch_plan.ts";

const FUSED = {};

/** A case: [B, H, Lq, Lk, Dh], causal, optional bias (shape) with gradient, optional key mask [B, Lk]. */
interface Case {
  shape: [number, number, number, number, number];
  causal?: boolean;
  bias?: number[];
  keyMask?: boolean;
  f16?: boolean;
  /** Cap on dQ slabs per head (fewer than the key blocks: a workgroup runs several blocks). */
  slabs?: number;
  /** Without subgroup operations (one invocation per row). */
  noSubgroups?: boolean;
}

function ref(shape: number[], seed: number, lo: number, hi: number, f16 = false): RefTensor {
  const a = randomArray(shape.reduce((x, y) => x * y, 1), seed, lo, hi);
  return { shape, data: Float64Array.from(f16 ? Float16Array.from(a) : Float32Array.from(a)) };
}

/** Runs forward and backward with `kernelOptions`; returns dq, dk, dv (and dbias) as float64. */
async function grads(
  gpu: Gpu,
  c: Case,
  xs: RefTensor[],
  extras: Extras,
  kernelOptions: AttentionKernelOptions = FUSED,
) {
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

const kernelOptions = (c: Case): AttentionKernelOptions => ({
  dqSlabs: c.slabs,
  ...(c.noSubgroups ? { subgroups: false } : {}),
});

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
  ["1 slab for 3 key blocks", { shape: [1, 2, 37, 300, 16], slabs: 1 }],
  ["f16, head dim 72, causal, 1 slab for 2 key blocks", {
    shape: [1, 2, 150, 200, 72],
    causal: true,
    f16: true,
    slabs: 1,
  }],
  ["no subgroups, head dim 72, 2 slabs for 4 key blocks", {
    shape: [1, 2, 40, 230, 72],
    slabs: 2,
    noSubgroups: true,
  }],
  ["2 slabs for 3 key blocks, causal, shared bias with its gradient, key mask", {
    shape: [2, 1, 300, 290, 8],
    causal: true,
    bias: [1, 1, 300, 290],
    keyMask: true,
    slabs: 2,
  }],
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
    }, kernelOptions(c));
    assert(plan.fused, `${name}: the fused backward runs on this device`);
    const t = attentionTiling(gpu, dh, kernelOptions(c));
    const keyBlocks = Math.ceil(lk / ((t.workgroup / t.lanes) * t.rowsPerInvocation));
    assertEquals(plan.slabs, Math.min(c.slabs ?? keyBlocks, keyBlocks), `${name}: slabs`);
    const { xs, extras } = setup(c, 100 + 10 * i);
    const [q, k, v, g] = xs;
    const options = { causal: c.causal, bias: extras.bias, keyMask: extras.keyMask };
    const want = attentionBackwardRef(q, k, v, g, options);
    const got = await grads(gpu, c, xs, extras, kernelOptions(c));
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

gpuTest("fused attention backward: the dQ slabs are bounded whatever Lk, by parallelism and bytes", (gpu) => {
  const shape = { heads: 24, lq: 8000, lk: 8000, headDim: 72, scale: 1, causal: false };
  const slab = shape.lq * shape.headDim; // f32 elements of one slab
  const at = (lk: number, options = {}) => attentionBackwardPlan(gpu, { ...shape, lk }, options);
  // Primus-M at 160³, batch 2: 63 key blocks; ⌈512/24⌉ = 22 slabs for the target workgroups, but 1 GiB
  // of scratch holds 19 (24 heads · 2.3 MB per slab), if one head's slabs fit a binding
  const byBinding = Math.floor(spanLimitBytes(gpu.limits, 4) / (slab * 4));
  const want = Math.min(19, byBinding);
  assertEquals(at(8000).slabs, want);
  assertEquals(at(8000).dqPartials, shape.heads * want * slab);
  // ten times the keys: the same scratch (the workgroups run more key blocks each)
  assertEquals(at(80000).dqPartials, at(8000).dqPartials);
  // a byte budget below one slab per head: the 7-pass backward, no scratch
  assertEquals(at(8000, { dqScratchBytes: shape.heads * slab * 4 - 1 }), {
    fused: false,
    slabs: 0,
    dqPartials: 0,
  });
  assertEquals(at(8000, { dqScratchBytes: 3 * shape.heads * slab * 4 }).slabs, Math.min(3, want));
  // few keys: one slab per key block; the default budget holds the target's slabs at this shape
  assertEquals(at(200).slabs, 2);
  assert(at(8000).dqPartials * 4 <= ATTENTION_TUNING.dqScratchBytes);
  assertEquals(at(8000, { fusedBackward: false }).fused, false);
});

gpuTest(
  "attention backward: an attached autotuner measures the slab counts and the 7-pass path",
  async (gpu) => {
    const c: Case = { shape: [1, 2, 37, 300, 16], causal: true };
    const { xs, extras } = setup(c, 31);
    const [q, k, v, g] = xs;
    const want = attentionBackwardRef(q, k, v, g, { causal: true });
    const timed: string[] = [];
    // a fake timer that makes the 7-pass path fastest: the tuner must then pick it
    const timer: TuneTimer = async (record, candidate) => {
      record();
      await gpu.sync();
      timed.push(candidate);
      return { ms: candidate === "7-pass" ? 1 : 2, source: "fake" };
    };
    const tuner = new Autotuner(gpu, { cachePath: null, timer, warn: (m) => console.warn(m) });
    attachAutotuner(gpu, tuner);
    try {
      const s = { heads: 2, lq: 37, lk: 300, headDim: 16, scale: 0.25, causal: true };
      assert(attentionBackwardPlan(gpu, s).fused, "before tuning: the reasoned default, fused");
      await grads(gpu, c, xs, extras); // meets the class
      assertEquals(tuner.pending.length, 1);
      assertEquals(tuner.pending[0].candidates, ["slabs", "quarter-slabs", "7-pass"]);
      await tuner.tunePending();
      assertEquals(timed, ["slabs", "quarter-slabs", "7-pass"]);
      assertEquals(attentionBackwardPlan(gpu, s), { fused: false, slabs: 0, dqPartials: 0 });
      const got = await grads(gpu, c, xs, extras);
      for (const [j, key] of (["dq", "dk", "dv"] as const).entries()) {
        assertClose(got[j], want[key].data, { rtol: 1e-5, atol: 1e-5, label: `tuned 7-pass ${key}` });
      }
    } finally {
      detachAutotuner(gpu);
    }
  },
);

Deno.test({
  name: "fused attention backward: one head's dQ slabs a whole binding large still split over heads",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    // 8,192-byte bindings; slabs of 128 queries × Dh 8 f32 are 4,096 bytes and 200 keys make 2 key
    // blocks: a cap of maxStorageBufferBindingSize / slab would plan 2 slabs, one head's 8,192 bytes,
    // which the head chunks cannot bind with their window's alignment slack
    withSmallBindings(8192, async (gpu) => {
      const c: Case = { shape: [1, 3, 128, 200, 8] };
      const { xs } = setup(c, 77);
      const [q, k, v, g] = xs;
      const s = { heads: 3, lq: 128, lk: 200, headDim: 8, scale: 1 / Math.sqrt(8), causal: false };
      const plan = attentionBackwardPlan(gpu, s);
      assert(plan.fused, "expected the fused backward");
      assert(
        plan.dqPartials * 4 > gpu.limits.maxStorageBufferBindingSize,
        "expected dQ partials split over heads",
      );
      const want = attentionBackwardRef(q, k, v, g, {});
      const got = await grads(gpu, c, xs, {});
      for (const [j, key] of (["dq", "dk", "dv"] as const).entries()) {
        assertClose(got[j], want[key].data, { rtol: 1e-5, atol: 1e-5, label: key });
      }
    }),
});

gpuTest(
  "attention backward: a measured choice holds for every shape of its class (keyed by role, not count)",
  async (gpu) => {
    // the fake timer prefers a quarter of the slabs
    const timer: TuneTimer = async (record, candidate) => {
      record();
      await gpu.sync();
      return { ms: candidate === "quarter-slabs" ? 1 : 2, source: "fake" };
    };
    const tuner = new Autotuner(gpu, { cachePath: null, timer, warn: (m) => console.warn(m) });
    attachAutotuner(gpu, tuner);
    try {
      const at = (lk: number) =>
        attentionBackwardPlan(gpu, { heads: 2, lq: 37, lk, headDim: 16, scale: 0.25, causal: false });
      assertEquals(at(1000).slabs, 8, "before tuning: one slab per key block");
      await tuner.tunePending();
      assertEquals(at(1000).slabs, 2, "8 key blocks: a quarter");
      // 600 keys are in the same class (Lk bucketed to 1024) with 5 key blocks: a quarter is 1 slab
      assertEquals(tuner.pending.length, 0);
      assertEquals(at(600).slabs, 1);
    } finally {
      detachAutotuner(gpu);
    }
  },
);
