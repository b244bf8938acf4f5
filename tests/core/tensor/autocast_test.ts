/**
 * autocast() (core/tensor/autocast.ts): the compute ops return f16 and equal the explicit f16
 * computation exactly, error bounds against the float64 reference derived from f16 rounding, f16
 * activations flowing through the ops that accept them, mixed f16/f32 operands (master weights follow
 * the activation, data promotes to f32), the f32 ops (losses, softmax, sums), gradients in each tensor's
 * dtype (f32 at f32 leaves), nesting, backward and noGrad, f16 operands, and devices without shader-f16.
 *
 * Error bound of an autocast conv or matmul y = Σ x·w (+ b) against float64, with u = 2⁻¹⁰ the largest
 * relative error of one f32 → f16 conversion on the GPU (WGSL may pick either neighbour): each product
 * reads x(1+δ)·w(1+ε), off by ≤ (2u + u²)·|x|·|w|; the bias by ≤ u·|b|; the f32 sum adds ≤ 1e-5 of
 * Σ|x|·|w| at these sizes; the result is rounded to f16 once (one ulp). The bound of each element uses
 * its own Σ|x|·|w| (the reference applied to |x| and |w|). Gradients: the same with the output gradient
 * in place of the other operand (it is cast to f16 by the cast's backward).
 */
import { assert, assertEquals, assertThrows } from "../../assert.ts";
import { createGpu, type Gpu } from "../../../core/gpu/mod.ts";
import * as ops from "../../../core/tensor/mod.ts";
import type { RefTensor } from "../../../core/tensor/reference/ops.ts";
import { matmulRef } from "../../../core/tensor/reference/ops.ts";
import * as R from "../../../core/tensor/reference/conv.ts";
import { assertUlp16, gpuTest, randomArray } from "../../helpers.ts";

const U = 2 ** -10;
const numel = (s: number[]) => s.reduce((a, b) => a * b, 1);
const abs = (t: RefTensor): RefTensor => ({ shape: t.shape, data: t.data.map(Math.abs) });

/** Random f32 values (not f16-representable in general: the casts round). */
function f32Ref(shape: number[], seed: number, scale = 1): RefTensor {
  return {
    shape,
    data: Float64Array.from(Float32Array.from(randomArray(numel(shape), seed, -scale, scale))),
  };
}

function make(t: RefTensor, gpu: Gpu, requiresGrad = false): ops.Tensor {
  return ops.tensor(t.data, t.shape, { gpu, requiresGrad });
}

async function values(ts: ops.Tensor[]): Promise<Float64Array[]> {
  const out = await Promise.all(ts.map((t) => t.toFloat64()));
  ts.forEach((t) => t.dispose());
  return out;
}

function assertSame(a: ArrayLike<number>, b: ArrayLike<number>, label: string): void {
  assertEquals(a.length, b.length, label);
  for (let i = 0; i < a.length; i++) {
    if (!Object.is(a[i], b[i])) {
      throw new Error(`${label}: element ${i} is ${a[i]}, expected ${b[i]} exactly`);
    }
  }
}

function assertDiffers(a: ArrayLike<number>, b: ArrayLike<number>, label: string): void {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return;
  throw new Error(`${label}: identical to the f32 result (autocast did not compute in f16)`);
}

const half = (t: ops.Tensor) => ops.cast(t, "f16");
const full = (t: ops.Tensor) => ops.cast(t, "f32");

gpuTest(
  "autocast() computes conv3d in f16 and returns f16: equal to the explicit casts, within f16 error bounds of the reference",
  { requires: ["shader-f16"] },
  async (gpu) => {
    assertEquals(ops.autocastDtype(gpu), undefined, "off outside a block");
    const x = f32Ref([2, 3, 5, 4, 6], 1);
    const w = f32Ref([4, 3, 3, 3, 3], 2, 0.5);
    const b = f32Ref([4], 3);
    const opts = { stride: 2, padding: 1 } as const;
    const gy = f32Ref([2, 4, 3, 2, 3], 4);
    const run = (mode: "autocast" | "explicit" | "f32") =>
      ops.scope(() => {
        const [xt, wt, bt] = [make(x, gpu, true), make(w, gpu, true), make(b, gpu, true)];
        const g = make(gy, gpu);
        let y: ops.Tensor;
        if (mode === "autocast") {
          // the loss inside the block too: mul(f16 y, f32 data) promotes y to f32 (rule 3)
          const [out, loss] = ops.autocast(() => {
            assertEquals(ops.autocastDtype(gpu), "f16");
            const out = ops.conv3d(xt, wt, { bias: bt, ...opts });
            return [out, ops.sum(ops.mul(out, g))];
          });
          assertEquals([out.dtype, loss.dtype], ["f16", "f32"]);
          ops.backward(loss);
          y = full(out);
        } else {
          const out = mode === "explicit"
            ? full(ops.conv3d(half(xt), half(wt), { bias: half(bt), ...opts }))
            : ops.conv3d(xt, wt, { bias: bt, ...opts });
          ops.backward(ops.sum(ops.mul(out, g)));
          y = out;
        }
        for (const t of [xt, wt, bt]) {
          assertEquals(t.grad!.dtype, "f32", "gradients arrive in f32 at f32 leaves");
        }
        const out = [y, xt.grad!, wt.grad!, bt.grad!];
        [xt, wt, bt].forEach((t) => (t.grad = undefined));
        return out;
      });
    const auto = await values(run("autocast"));
    const explicit = await values(run("explicit"));
    const f32 = await values(run("f32"));
    ["y", "dx", "dw", "db"].forEach((k, i) => {
      assertSame(auto[i], explicit[i], `${k}: autocast equals the explicit f16 casts`);
      assertDiffers(auto[i], f32[i], k);
    });
    // float64 bounds, per element (module comment)
    const y = R.conv3dRef(x, w, b, opts);
    const sy = R.conv3dRef(abs(x), abs(w), undefined, opts).data;
    const channel = (i: number) => Math.floor(i / 18) % 4; // y is [2, 4, 3, 2, 3]
    assertUlp16(auto[0], y.data, {
      extra: (i) => (2 * U + U * U + 1e-5) * sy[i] + U * Math.abs(b.data[channel(i)]),
      label: "y",
    });
    const dx = R.conv3dInputGradRef(gy, w, [5, 4, 6], opts).data;
    const sdx = R.conv3dInputGradRef(abs(gy), abs(w), [5, 4, 6], opts).data;
    assertUlp16(auto[1], dx, { extra: (i) => (2 * U + U * U + 1e-5) * sdx[i], label: "dx" });
    const dw = R.conv3dWeightGradRef(x, gy, [3, 3, 3], opts).data;
    const sdw = R.conv3dWeightGradRef(abs(x), abs(gy), [3, 3, 3], opts).data;
    assertUlp16(auto[2], dw, { extra: (i) => (2 * U + U * U + 1e-5) * sdw[i], label: "dw" });
    const db = R.channelSumRef(gy).data;
    const sdb = R.channelSumRef(abs(gy)).data;
    assertUlp16(auto[3], db, { extra: (i) => (U + 1e-5) * sdb[i], label: "db" });
  },
);

gpuTest(
  "autocast() computes convTranspose3d, matmul and scaledDotProductAttention in f16 and returns f16",
  { requires: ["shader-f16"] },
  async (gpu) => {
    const x = f32Ref([1, 4, 3, 2, 3], 5);
    const wt = f32Ref([4, 3, 2, 2, 2], 6);
    const a = f32Ref([2, 7, 9], 7);
    const b = f32Ref([9, 5], 8);
    const [q, k, v] = [9, 10, 11].map((s) => f32Ref([1, 2, 6, 8], s));
    const ops3 = (mode: "autocast" | "explicit" | "f32") =>
      ops.scope(() => {
        const t = (r: RefTensor) => (mode === "explicit" ? half(make(r, gpu)) : make(r, gpu));
        const compute = () => [
          ops.convTranspose3d(t(x), t(wt), { stride: 2 }),
          ops.matmul(t(a), t(b)),
          ops.scaledDotProductAttention(t(q), t(k), t(v)),
        ];
        const out = mode === "autocast" ? ops.autocast(compute) : compute();
        if (mode === "autocast") {
          assert(out.every((t) => t.dtype === "f16"), `autocast ops return f16: ${out.map((t) => t.dtype)}`);
        }
        return mode === "f32" ? out : out.map(full);
      });
    const auto = ops3("autocast");
    const [av, ev, fv] = [await values(auto), await values(ops3("explicit")), await values(ops3("f32"))];
    ["convTranspose3d", "matmul", "scaledDotProductAttention"].forEach((name, i) => {
      assertSame(av[i], ev[i], `${name}: autocast equals the explicit f16 casts`);
      assertDiffers(av[i], fv[i], name);
    });
    // matmul's bound (module comment)
    const want = matmulRef(a, b).data;
    const s = matmulRef(abs(a), abs(b)).data;
    assertUlp16(av[1], want, { extra: (i) => (2 * U + U * U + 1e-5) * s[i], label: "matmul vs reference" });
  },
);

gpuTest(
  "autocast() leaves f32 inputs of every other op in f32: norms, activations, reductions, elementwise",
  async (gpu) => {
    const x = f32Ref([2, 3, 4, 5], 12);
    const compute = () => {
      const t = make(x, gpu);
      const n = ops.instanceNorm(ops.reshape(t, [2, 3, 4, 5, 1]));
      return [
        ops.add(t, 0.1),
        ops.mul(t, t),
        ops.softmax(t),
        ops.gelu(t),
        ops.sum(t),
        ops.mean(t, 1),
        n,
        ops.layerNorm(t, [5]),
      ];
    };
    const inside = ops.scope(() => ops.autocast(compute));
    assert(inside.every((t) => t.dtype === "f32"), `all f32: ${inside.map((t) => t.dtype)}`);
    const [a, b] = [await values(inside), await values(ops.scope(compute))];
    a.forEach((v, i) => assertSame(v, b[i], `op ${i}: identical inside and outside autocast`));
  },
);

gpuTest(
  "autocast() keeps f16 activations f16, casts master weights to them, promotes data to f32, and computes losses and sums in f32",
  { requires: ["shader-f16"] },
  async (gpu) => {
    const x = f32Ref([2, 3, 4, 5, 2], 21);
    const w = f32Ref([3], 22);
    const target = f32Ref([2, 3, 4, 5, 2], 23);
    const run = (mode: "autocast" | "explicit") =>
      ops.scope(() => {
        const xt = half(make(x, gpu, true)); // an f16 activation in a graph
        const weight = make(w, gpu, true); // a master weight
        const data = make(target, gpu); // data: no grad
        const param = ops.reshape(weight, [1, 3, 1, 1, 1]); // a view of a weight is not a leaf
        const bias = make(f32Ref([2], 24), gpu, true); // a leaf weight
        const compute = (): ops.Tensor[] => {
          if (mode === "autocast") {
            const flow = [
              ops.instanceNormAct(xt, weight, weight, { residual: xt }),
              ops.gelu(xt),
              ops.add(xt, xt),
              ops.avgPool3d(xt, 2),
              ops.mul(xt, param), // not a leaf: f32 wins
              ops.add(ops.reshape(xt, [120, 2]), bias), // a leaf weight: f16
            ];
            return [
              ...flow,
              ops.mseLoss(xt, data),
              ops.sum(xt),
              ops.mean(xt, [2, 3]),
              ops.softmax(xt),
              ops.exp(xt),
              ops.add(xt, data),
            ];
          }
          const f = full;
          return [
            ops.instanceNormAct(xt, weight, weight, { residual: xt }),
            ops.gelu(xt),
            ops.add(xt, xt),
            ops.avgPool3d(xt, 2),
            ops.mul(f(xt), param),
            ops.add(ops.reshape(xt, [120, 2]), half(bias)),
            ops.mseLoss(f(xt), data),
            ops.sum(f(xt)),
            ops.mean(f(xt), [2, 3]),
            ops.softmax(f(xt)),
            ops.exp(f(xt)),
            ops.add(f(xt), data),
          ];
        };
        return mode === "autocast" ? ops.autocast(compute) : compute();
      });
    const auto = run("autocast");
    const dtypes = auto.map((t) => t.dtype);
    assertEquals(
      dtypes,
      ["f16", "f16", "f16", "f16", "f32", "f16", "f32", "f32", "f32", "f32", "f32", "f32"],
      "f16 flow (norm + residual + act, gelu, add, pool), a view of a weight promotes, a leaf weight " +
        "follows the activation, f32 losses, sums, softmax, exp, data promotes",
    );
    const [a, e] = [await values(auto), await values(run("explicit"))];
    a.forEach((v, i) => assertSame(v, e[i], `op ${i}: autocast equals the explicit casts`));
    // outside autocast mixed dtypes stay an error
    ops.scope(() => {
      const h = half(make(x, gpu));
      assertThrows(() => ops.add(h, make(target, gpu)), TypeError, "dtypes differ");
    });
  },
);

gpuTest(
  "gradients under autocast have their tensors' dtypes: f16 activations, f32 master weights and inputs",
  { requires: ["shader-f16"] },
  async (gpu) => {
    const x = f32Ref([2, 3, 4, 4, 4], 25);
    const w = f32Ref([4, 3, 3, 3, 3], 26, 0.3);
    const gamma = f32Ref([4], 27);
    const target = f32Ref([2, 4, 4, 4, 4], 28);
    const grads = (mode: "autocast" | "explicit") =>
      ops.scope(() => {
        const [xt, wt, gt] = [make(x, gpu, true), make(w, gpu, true), make(gamma, gpu, true)];
        const data = make(target, gpu);
        let hidden: ops.Tensor;
        const loss = mode === "autocast"
          ? ops.autocast(() => {
            hidden = ops.conv3d(xt, wt, { padding: 1 });
            const y = ops.instanceNormAct(hidden, gt, gt, { residual: hidden });
            return ops.mseLoss(ops.add(y, ops.reshape(gt, [1, 4, 1, 1, 1])), data);
          })
          : (() => {
            hidden = ops.conv3d(half(xt), half(wt), { padding: 1 });
            const y = ops.instanceNormAct(hidden, gt, gt, { residual: hidden });
            return ops.mseLoss(ops.add(full(y), ops.reshape(gt, [1, 4, 1, 1, 1])), data);
          })();
        assertEquals(hidden!.dtype, "f16");
        ops.backward(loss);
        const out = [xt.grad!, wt.grad!, gt.grad!];
        assertEquals(out.map((t) => t.dtype), ["f32", "f32", "f32"]);
        [xt, wt, gt].forEach((t) => (t.grad = undefined));
        return out;
      });
    const [a, e] = [await values(grads("autocast")), await values(grads("explicit"))];
    ["dx", "dw", "dgamma"].forEach((k, i) =>
      assertSame(a[i], e[i], `${k}: autocast equals the explicit casts`)
    );
  },
);

gpuTest(
  "autocast() nests, restores the previous state after a throw, and refuses async callbacks",
  async (gpu) => {
    const a = f32Ref([6, 10], 13);
    const b = f32Ref([10, 7], 14);
    const mm = () => ops.matmul(make(a, gpu), make(b, gpu));
    const [f32, on, off, inner] = ops.scope(() => [
      mm(),
      ops.autocast(mm),
      ops.autocast(() => ops.autocast(mm, { enabled: false })),
      ops.autocast(() => ops.autocast(() => ops.autocast(mm), { enabled: false })),
    ]);
    assert(!ops.isAutocastEnabled());
    const [vf, von, voff, vin] = await values([f32, on, off, inner]);
    assertSame(voff, vf, "enabled: false inside autocast computes in f32");
    if (gpu.hasF16) {
      assertDiffers(von, vf, "autocast");
      assertSame(vin, von, "an inner autocast turns it back on");
    } else {
      assertSame(von, vf, "without shader-f16 autocast computes in f32");
      assertSame(vin, vf, "without shader-f16 an inner autocast computes in f32");
    }
    assertThrows(
      () =>
        ops.autocast(() => {
          assert(ops.isAutocastEnabled());
          throw new Error("boom");
        }),
      Error,
      "boom",
    );
    assert(!ops.isAutocastEnabled(), "state restored after a throw");
    assertThrows(() => ops.autocast(() => Promise.resolve(1)), Error, "synchronous");
    assert(!ops.isAutocastEnabled(), "state restored after an async callback");
  },
);

gpuTest(
  "backward() inside autocast follows the recorded dtypes: an f32 graph keeps f32 gradients",
  { requires: ["shader-f16"] },
  async (gpu) => {
    const a = f32Ref([6, 10], 15);
    const b = f32Ref([10, 7], 16);
    const grads = (backwardUnderAutocast: boolean) =>
      ops.scope(() => {
        const [at, bt] = [make(a, gpu, true), make(b, gpu, true)];
        const loss = ops.sum(ops.mul(ops.matmul(at, bt), ops.matmul(at, bt))); // recorded in f32
        if (backwardUnderAutocast) ops.autocast(() => ops.backward(loss));
        else ops.backward(loss);
        const out = [at.grad!, bt.grad!];
        at.grad = bt.grad = undefined;
        return out;
      });
    const [inside, outside] = [await values(grads(true)), await values(grads(false))];
    inside.forEach((g, i) => assertSame(g, outside[i], `grad ${i}`));
  },
);

gpuTest(
  "autocast() applies under noGrad() and keeps f16 operands as they are",
  { requires: ["shader-f16"] },
  async (gpu) => {
    const a = f32Ref([5, 12], 17);
    const b = f32Ref([12, 4], 18);
    const [noGradAuto, explicit, halfOps, mixed] = ops.scope(() => {
      const [at, bt] = [make(a, gpu), make(b, gpu)];
      return [
        ops.noGrad(() => ops.autocast(() => ops.matmul(at, bt))),
        ops.matmul(half(at), half(bt)),
        ops.autocast(() => ops.matmul(half(at), half(bt))),
        ops.autocast(() => ops.matmul(at, half(bt))),
      ];
    });
    assertEquals([noGradAuto.dtype, halfOps.dtype, mixed.dtype], ["f16", "f16", "f16"]);
    const [v0, v1, v2, v3] = await values([noGradAuto, explicit, halfOps, mixed]);
    assertSame(v0, v1, "noGrad + autocast");
    assertSame(v2, v1, "f16 operands: the f16 op, f16 result");
    assertSame(v3, v1, "an f32 and an f16 operand: the f32 one is cast");
  },
);

Deno.test({
  name: "autocast() is a no-op on a device without shader-f16 (ops compute and return f32)",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const gpu = await createGpu({ disableFeatures: ["shader-f16"] });
    try {
      assertEquals(ops.autocast(() => ops.autocastDtype(gpu)), undefined);
      const x = f32Ref([1, 2, 4, 4, 4], 19);
      const w = f32Ref([3, 2, 3, 3, 3], 20);
      const run = (auto: boolean) =>
        ops.scope(() => {
          const f = () => [
            ops.conv3d(make(x, gpu), make(w, gpu), { padding: 1 }),
            ops.matmul(make(w, gpu), make(w, gpu)),
          ];
          return auto ? ops.autocast(f) : f();
        });
      const [a, b] = [await values(run(true)), await values(run(false))];
      a.forEach((v, i) => assertSame(v, b[i], `op ${i}`));
    } finally {
      gpu.destroy();
    }
  },
});
