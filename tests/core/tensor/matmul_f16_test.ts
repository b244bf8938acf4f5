/**
 * matmul on f16 storage (kernels/matmul.ts: f16 loads, f32 accumulation, one rounding at the store)
 * against the f32 path and the float64 reference: values, and the gradients of both operands from the
 * op's backward rule.
 *
 * Tolerances. The inputs and the output gradient are rounded to f16 on the host, so both paths read the
 * same values and run the same tiles in the same order with f32 arithmetic: an f16 result is the f32
 * result rounded once to f16, within one f16 ulp of it (WGSL may pick either neighbour). Against the
 * reference it is off by that rounding plus the f32 accumulation error of K terms.
 */
import { assert } from "../../assert.ts";
import * as ops from "../../../core/tensor/mod.ts";
import type { RefTensor } from "../../../core/tensor/reference/ops.ts";
import { matmulRef } from "../../../core/tensor/reference/ops.ts";
import type { Gpu } from "../../../core/gpu/mod.ts";
import { assertUlp16, gpuTest, halfValues, randomArray } from "../../helpers.ts";

interface Case {
  name: string;
  a: number[];
  b: number[];
  transposeA?: boolean;
  transposeB?: boolean;
  /** Whether the op's gradients of both operands are compared (false: b is broadcast over a batch, its
   * gradient sums per-batch products that the f16 path rounds before the sum). */
  grads?: boolean;
}

const cases: Case[] = [
  { name: "[5,7]·[7,3] (scalar loads)", a: [5, 7], b: [7, 3] },
  { name: "[67,33]·[33,70] across tiles at odd sizes", a: [67, 33], b: [33, 70] },
  { name: "[8,36]·[36,12] (vec4 loads and stores)", a: [8, 36], b: [36, 12] },
  { name: "[2,3,9,20]·[2,3,20,16] batched", a: [2, 3, 9, 20], b: [2, 3, 20, 16] },
  { name: "[33,40]ᵀ·[33,24] (transposed A)", a: [33, 40], b: [33, 24], transposeA: true },
  { name: "[10,17]·[13,17]ᵀ (Linear layout)", a: [10, 17], b: [13, 17], transposeB: true },
  { name: "[3,11,12]·[12,7] (b broadcast over the batch)", a: [3, 11, 12], b: [12, 7], grads: false },
];

const numel = (s: number[]) => s.reduce((x, y) => x * y, 1);

async function run(gpu: Gpu, c: Case, dtype: "f32" | "f16", a: RefTensor, b: RefTensor, g: RefTensor) {
  const options = { transposeA: c.transposeA, transposeB: c.transposeB };
  const out = ops.scope(() => {
    const at = ops.tensor(a.data, a.shape, { gpu, dtype, requiresGrad: true });
    const bt = ops.tensor(b.data, b.shape, { gpu, dtype, requiresGrad: true });
    const y = ops.matmul(at, bt, options);
    const grads = ops.noGrad(() => y.node!.backward(ops.tensor(g.data, g.shape, { gpu, dtype })));
    return [y, grads[0]!, grads[1]!];
  });
  const values = await Promise.all(out.map((t) => t.toFloat64()));
  const dtypes = out.map((t) => t.dtype);
  out.forEach((t) => t.dispose());
  return { values, dtypes };
}

for (const c of cases) {
  gpuTest(
    `matmul on f16 storage ${c.name}: within one f16 rounding of the f32 path and the reference`,
    { requires: ["shader-f16"] },
    async (gpu) => {
      const a = { shape: c.a, data: halfValues(randomArray(numel(c.a), 11)) };
      const b = { shape: c.b, data: halfValues(randomArray(numel(c.b), 12)) };
      const want = matmulRef(a, b, c.transposeA, c.transposeB);
      const g = { shape: want.shape, data: halfValues(randomArray(want.data.length, 13)) };
      const full = await run(gpu, c, "f32", a, b, g);
      const half = await run(gpu, c, "f16", a, b, g);
      assert(half.dtypes.every((d) => d === "f16"), `result and gradients are f16: ${half.dtypes}`);
      const k = c.transposeA ? c.a.at(-2)! : c.a.at(-1)!;
      const f32 = (i: number) => 1e-5 * Math.abs(want.data[i]) + 1e-6 * Math.sqrt(k);
      assertUlp16(half.values[0], full.values[0], { label: `${c.name}: y f16 vs f32` });
      assertUlp16(half.values[0], want.data, { extra: f32, label: `${c.name}: y f16 vs reference` });
      const compared = c.grads === false ? [1] : [1, 2];
      for (const i of compared) {
        assertUlp16(half.values[i], full.values[i], { label: `${c.name}: d${"ab"[i - 1]} f16 vs f32` });
      }
      // the f32 gradients themselves agree with the reference adjoints (so the comparison above is with
      // something correct): da = g·bᵀ, db = aᵀ·g in the operands' stored layouts
      if (!c.transposeA && !c.transposeB && c.grads !== false) {
        const da = matmulRef(g, b, false, true);
        const db = matmulRef(a, g, true, false);
        const tol = (ref: RefTensor, n: number) => (i: number) =>
          1e-5 * Math.abs(ref.data[i]) + 1e-6 * Math.sqrt(n);
        assertUlp16(half.values[1], da.data, {
          extra: tol(da, want.shape.at(-1)!),
          label: `${c.name}: da vs reference`,
        });
        assertUlp16(half.values[2], db.data, {
          extra: tol(db, want.shape.at(-2)!),
          label: `${c.name}: db vs reference`,
        });
      }
    },
  );
}
