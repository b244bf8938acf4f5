/**
 * gatherRows() and scatterRows() against the float64 reference (values, and gradients by finite
 * differences): per-sample and shared (Bx = 1) tables, repeated and out-of-range indices, permutation
 * subsets as token dropping draws them, f16 storage, chunked paths and argument errors.
 */
import { BindingTooLargeError } from "../../../../core/gpu/mod.ts";
import * as ops from "../../../../core/tensor/mod.ts";
import type { RefTensor } from "../../../../core/tensor/reference/ops.ts";
import * as R from "../../../../core/tensor/reference/gather.ts";
import { assert, assertEquals, assertThrows } from "../../../assert.ts";
import { checkOpDirect, withSmallBindings } from "../../../chunked_harness.ts";
import {
  assertClose,
  assertUlp16,
  gpuTest,
  halfValues,
  randomArray,
  seededRandom,
} from "../../../helpers.ts";
import { checkOp, finiteDifference, type OpCase } from "../../../op_harness.ts";

/** Per sample, the first k of a seeded random permutation of [0, n) (distinct, unsorted). */
function keepIndices(seed: number, b: number, n: number, k: number): number[] {
  const next = seededRandom(seed);
  const out: number[] = [];
  for (let i = 0; i < b; i++) {
    const perm = Array.from({ length: n }, (_, j) => j);
    for (let j = 0; j < k; j++) {
      const r = j + Math.floor(next() * (n - j));
      [perm[j], perm[r]] = [perm[r], perm[j]];
    }
    out.push(...perm.slice(0, k));
  }
  return out;
}

/** Seeded indices in [0, n) with repeats inside every sample (the first index recurs at the end). */
function repeatedIndices(seed: number, b: number, n: number, k: number): number[] {
  const next = seededRandom(seed);
  const out: number[] = [];
  for (let i = 0; i < b; i++) {
    const row = Array.from({ length: k }, () => Math.floor(next() * n));
    if (k > 1) row[k - 1] = row[0];
    out.push(...row);
  }
  return out;
}

function indexRef(values: readonly number[], b: number, k: number): RefTensor {
  return { shape: [b, k], data: Float64Array.from(values) };
}

type IndexType = "i32" | "u32";

function indexTensor(values: readonly number[], b: number, k: number, dtype: IndexType = "i32"): ops.Tensor {
  return ops.tensor(dtype === "i32" ? Int32Array.from(values) : Uint32Array.from(values), [b, k], { dtype });
}

function gatherCase(
  name: string,
  xShape: number[],
  index: number[],
  b: number,
  k: number,
  dtype: IndexType = "i32",
): OpCase {
  // the reference reads an u32 index as its unsigned value, an i32 one as signed
  const refValues = index.map((v) => (dtype === "u32" ? v >>> 0 : v | 0));
  return {
    name,
    inputs: [{ shape: xShape }],
    gpu: ([x]) => ops.gatherRows(x, indexTensor(index, b, k, dtype)),
    ref: ([x]) => R.gatherRowsRef(x, indexRef(refValues, b, k)),
  };
}

function scatterCase(name: string, b: number, n: number, c: number, index: number[], k: number): OpCase {
  const refValues = index.map((v) => v | 0);
  return {
    name,
    inputs: [{ shape: [b, n, c] }, { shape: [b, k, c] }],
    gpu: ([base, src]) => ops.scatterRows(base, indexTensor(index, b, k), src),
    ref: ([base, src]) => R.scatterRowsRef(base, indexRef(refValues, b, k), src),
  };
}

const gatherCases: OpCase[] = [
  gatherCase("gatherRows() per sample, distinct indices, C = 7", [2, 13, 7], keepIndices(1, 2, 13, 5), 2, 5),
  gatherCase("gatherRows() per sample, C = 1", [3, 9, 1], keepIndices(2, 3, 9, 4), 3, 4),
  gatherCase(
    "gatherRows() per sample, C = 72, u32 index",
    [2, 11, 72],
    keepIndices(3, 2, 11, 3),
    2,
    3,
    "u32",
  ),
  gatherCase(
    "gatherRows() per sample, repeated indices within samples (K > N)",
    [3, 6, 5],
    repeatedIndices(4, 3, 6, 9),
    3,
    9,
  ),
  gatherCase(
    "gatherRows() one sample, an index repeated three times far apart",
    [1, 7, 3],
    [4, 0, 4, 2, 6, 1, 4],
    1,
    7,
  ),
  gatherCase(
    "gatherRows() shared x (Bx = 1), distinct per sample",
    [1, 11, 9],
    keepIndices(5, 3, 11, 4),
    3,
    4,
  ),
  gatherCase("gatherRows() shared x (Bx = 1), C = 72", [1, 10, 72], keepIndices(6, 2, 10, 3), 2, 3),
  gatherCase(
    "gatherRows() shared x (Bx = 1), C = 1, repeats within and across samples",
    [1, 5, 1],
    repeatedIndices(7, 4, 5, 7),
    4,
    7,
  ),
  gatherCase(
    "gatherRows() out-of-range i32 indices give zero rows and no gradient",
    [2, 6, 3],
    [5, -1, 6, 0, 2, 1000, -7, 2],
    2,
    4,
  ),
  gatherCase(
    "gatherRows() out-of-range u32 indices (N, 2³²−1), shared x",
    [1, 6, 4],
    [6, 0, 0xffffffff, 3, 3, 5],
    2,
    3,
    "u32",
  ),
];

const scatterCases: OpCase[] = [
  scatterCase("scatterRows() permutation subsets, C = 5", 2, 13, 5, keepIndices(11, 2, 13, 4), 4),
  scatterCase("scatterRows() C = 1", 3, 7, 1, keepIndices(12, 3, 7, 3), 3),
  scatterCase("scatterRows() C = 72", 2, 9, 72, keepIndices(13, 2, 9, 2), 2),
  scatterCase("scatterRows() every row replaced (K = N)", 2, 5, 3, keepIndices(14, 2, 5, 5), 5),
  scatterCase("scatterRows() out-of-range indices are skipped", 2, 6, 3, [5, -1, 2, 6, 0, 1], 3),
];

for (const c of [...gatherCases, ...scatterCases]) {
  gpuTest(`${c.name} matches the reference (values and gradients)`, () => checkOp(c));
}

gpuTest("MAE decoder input: scatterRows(expand(maskToken), keep, encoded) matches the reference", () => {
  const [b, n, k, c] = [2, 9, 3, 6];
  const keep = keepIndices(21, b, n, k);
  const keepRef = indexRef(keep, b, k);
  return checkOp({
    name: "scatterRows(expand(maskToken)) ",
    inputs: [{ shape: [1, 1, c] }, { shape: [b, k, c] }],
    gpu: ([token, encoded]) =>
      ops.scatterRows(ops.expand(token, [b, n, c]), indexTensor(keep, b, k), encoded),
    ref: ([token, encoded]) => {
      const base = new Float64Array(b * n * c);
      for (let i = 0; i < b * n; i++) base.set(token.data, i * c);
      return R.scatterRowsRef({ shape: [b, n, c], data: base }, keepRef, encoded);
    },
  });
});

Deno.test("gradient references match finite differences of the forward references", () => {
  const cases: {
    name: string;
    inputs: number[][];
    ref: (xs: RefTensor[]) => RefTensor;
    grads: (g: RefTensor, xs: RefTensor[]) => RefTensor[];
  }[] = [];
  const gIdx = indexRef(repeatedIndices(31, 3, 5, 8), 3, 8);
  cases.push({
    name: "gatherRowsGradRef, per sample",
    inputs: [[3, 5, 2]],
    ref: ([x]) => R.gatherRowsRef(x, gIdx),
    grads: (g) => [R.gatherRowsGradRef(g, gIdx, [3, 5, 2])],
  });
  cases.push({
    name: "gatherRowsGradRef, shared",
    inputs: [[1, 5, 2]],
    ref: ([x]) => R.gatherRowsRef(x, gIdx),
    grads: (g) => [R.gatherRowsGradRef(g, gIdx, [1, 5, 2])],
  });
  const sIdx = indexRef(keepIndices(32, 2, 6, 3), 2, 3);
  cases.push({
    name: "scatterRowsGradRef",
    inputs: [[2, 6, 3], [2, 3, 3]],
    ref: ([base, src]) => R.scatterRowsRef(base, sIdx, src),
    grads: (g) => {
      const { base, src } = R.scatterRowsGradRef(g, sIdx);
      return [base, src];
    },
  });
  for (const c of cases) {
    const op: OpCase = {
      name: c.name,
      inputs: c.inputs.map((shape) => ({ shape })),
      gpu: () => {
        throw new Error("CPU only");
      },
      ref: c.ref,
    };
    const xs = c.inputs.map((shape, i) => {
      const size = shape.reduce((a, v) => a * v, 1);
      return { shape, data: randomArray(size, 40 + i) };
    });
    const y = c.ref(xs);
    const w = randomArray(y.data.length, 50);
    const grads = c.grads({ shape: y.shape, data: w }, xs);
    xs.forEach((_, i) => {
      assertClose(grads[i].data, finiteDifference(op, xs, i, w), {
        rtol: 1e-6,
        atol: 1e-8,
        label: `${c.name}: d/dx${i}`,
      });
    });
  }
});

gpuTest(
  "gatherRows() and scatterRows() on f16 storage: exact copies, gradients within one f16 rounding",
  async (gpu) => {
    if (!gpu.hasF16) return;
    const [b, n, k, c] = [3, 10, 12, 9];
    const idx = repeatedIndices(61, b, n, k);
    const idxRef = indexRef(idx, b, k);
    for (const shared of [false, true]) {
      const xShape = [shared ? 1 : b, n, c];
      const xv = halfValues(randomArray(xShape.reduce((a, v) => a * v, 1), 62, -2, 2));
      const gv = halfValues(randomArray(b * k * c, 63, -2, 2));
      const [y, dx] = ops.scope(() => {
        const x = ops.tensor(xv, xShape, { dtype: "f16", requiresGrad: true });
        const out = ops.gatherRows(x, indexTensor(idx, b, k));
        ops.backward(out, ops.tensor(gv, [b, k, c], { dtype: "f16" }));
        const grad = x.grad!;
        x.grad = undefined;
        return [out, grad];
      });
      assertEquals(y.dtype, "f16");
      assertEquals(dx.dtype, "f16");
      const label = `gatherRows f16 ${shared ? "shared" : "per sample"}`;
      assertEquals(
        Array.from(await y.toFloat64()),
        Array.from(R.gatherRowsRef({ shape: xShape, data: xv }, idxRef).data),
        label,
      );
      const expected = R.gatherRowsGradRef({ shape: [b, k, c], data: gv }, idxRef, xShape).data;
      // f32 sums of ≤ b·k terms of |g| < 2 before the one rounding to f16
      assertUlp16(await dx.toFloat64(), expected, {
        ulps: 1,
        extra: () => b * k * 2 * 2 ** -23,
        label: `${label}: dx`,
      });
      y.dispose();
      dx.dispose();
    }
    // scatterRows: the copies are exact; its gradients are copies too
    const keep = keepIndices(64, b, n, 4);
    const keepRef = indexRef(keep, b, 4);
    const basev = halfValues(randomArray(b * n * c, 65));
    const srcv = halfValues(randomArray(b * 4 * c, 66));
    const gv = halfValues(randomArray(b * n * c, 67));
    const [y, dBase, dSrc] = ops.scope(() => {
      const base = ops.tensor(basev, [b, n, c], { dtype: "f16", requiresGrad: true });
      const src = ops.tensor(srcv, [b, 4, c], { dtype: "f16", requiresGrad: true });
      const out = ops.scatterRows(base, indexTensor(keep, b, 4), src);
      ops.backward(out, ops.tensor(gv, [b, n, c], { dtype: "f16" }));
      const grads = [base.grad!, src.grad!];
      base.grad = src.grad = undefined;
      return [out, ...grads];
    });
    const gRef = R.scatterRowsGradRef({ shape: [b, n, c], data: gv }, keepRef);
    const yRef = R.scatterRowsRef({ shape: [b, n, c], data: basev }, keepRef, {
      shape: [b, 4, c],
      data: srcv,
    });
    assertEquals(Array.from(await y.toFloat64()), Array.from(yRef.data), "scatterRows f16");
    assertEquals(Array.from(await dBase.toFloat64()), Array.from(gRef.base.data), "scatterRows f16: d base");
    assertEquals(Array.from(await dSrc.toFloat64()), Array.from(gRef.src.data), "scatterRows f16: d src");
    for (const t of [y, dBase, dSrc]) t.dispose();
  },
);

Deno.test({
  name: "gatherRows() and scatterRows() split into chunks when tensors exceed the binding limit",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withSmallBindings(2048, async () => {
      // the outputs and gradients are above 2 KiB, one sample of every tensor below
      const chunked: OpCase[] = [
        gatherCase("gatherRows chunked, per sample", [4, 23, 5], repeatedIndices(71, 4, 23, 30), 4, 30),
        // shared: the gradient is summed over groups of samples in several dispatches
        gatherCase("gatherRows chunked, shared x", [1, 17, 7], repeatedIndices(72, 5, 17, 31), 5, 31),
        scatterCase("scatterRows chunked", 4, 37, 5, keepIndices(73, 4, 37, 29), 29),
      ];
      for (const c of chunked) await checkOpDirect(c);
    }),
});

Deno.test({
  name: "gatherRows() names itself when one sample of x does not fit a binding",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withSmallBindings(1024, (gpu) => {
      ops.scope(() => {
        const x = ops.zeros([2, 40, 8], { gpu });
        const index = ops.tensor(Int32Array.from([0, 1, 2, 3]), [2, 2], { dtype: "i32", gpu });
        const error = assertThrows(() => ops.gatherRows(x, index), BindingTooLargeError, "gatherRows[f32]");
        assert(error.message.includes("maxStorageBufferBindingSize"));
      });
      return Promise.resolve();
    }),
});

gpuTest("gatherRows() and scatterRows() reject bad shapes and dtypes, naming the op and the shapes", () => {
  ops.scope(() => {
    const x = ops.zeros([2, 5, 3]);
    const index = ops.tensor(Int32Array.from([0, 1, 2, 3]), [2, 2], { dtype: "i32" });
    assertThrows(
      () => ops.gatherRows(x, ops.zeros([2, 2])),
      TypeError,
      "gatherRows(): index must be i32 or u32",
    );
    assertThrows(
      () => ops.gatherRows(x, ops.tensor(Int32Array.from([0, 1]), [2], { dtype: "i32" })),
      RangeError,
      "gatherRows(): index must be [B, K], got [2]",
    );
    assertThrows(
      () => ops.gatherRows(ops.zeros([3, 5, 3]), index),
      RangeError,
      "gatherRows(): x must be [Bx, N, C] with Bx = 2 (the index's B) or 1; got x [3,5,3], index [2,2]",
    );
    assertThrows(() => ops.gatherRows(ops.zeros([10, 3]), index), RangeError, "got x [10,3]");
    assertThrows(
      () => ops.gatherRows(ops.tensor(Int32Array.from([1]), [1, 1, 1], { dtype: "i32" }), index),
      TypeError,
      "gatherRows(): x must be f32 or f16",
    );
    assertThrows(
      () => ops.scatterRows(x, index, ops.zeros([2, 3, 3])),
      RangeError,
      "scatterRows(): src must be [2, 2, 3] (index [B, K], base's C); got src [2,3,3]",
    );
    assertThrows(
      () => ops.scatterRows(ops.zeros([1, 5, 3]), index, ops.zeros([2, 2, 3])),
      RangeError,
      "scatterRows(): base must be [B, N, C] with B = 2 (the index's B); got base [1,5,3]",
    );
    assertThrows(
      () => ops.scatterRows(x, ops.zeros([2, 2]), ops.zeros([2, 2, 3])),
      TypeError,
      "scatterRows(): index must be i32 or u32",
    );
  });
});

gpuTest("gatherRows() with no indices (K = 0) gives an empty output and a zero gradient", async () => {
  const [y, dx] = ops.scope(() => {
    const x = ops.tensor(randomArray(12, 81), [1, 4, 3], { requiresGrad: true });
    const out = ops.gatherRows(x, ops.tensor(new Int32Array(0), [2, 0], { dtype: "i32" }));
    ops.backward(ops.add(ops.sum(out), ops.sum(ops.mul(x, 0))));
    const grad = x.grad!;
    x.grad = undefined;
    return [out, grad];
  });
  assertEquals(y.shape, [2, 0, 3]);
  assertEquals(Array.from(await dx.toFloat64()), new Array(12).fill(0));
  y.dispose();
  dx.dispose();
});
