/**
 * Rotary position embedding (core/tensor/ops/rope.ts, kernels/rope.ts): the table's layout against
 * hand-computed entries and the step-by-step reference (core/tensor/reference/rope.ts), applyRope against
 * the reference with finite-difference gradients, f16, split bindings, and the relative-position property.
 */
import { createGpu } from "../../../core/gpu/mod.ts";
import {
  applyRope,
  matmul,
  ropeSinCos,
  ropeSinCosAt,
  ropeSinCosValues,
  scope,
  tensor,
  transpose,
} from "../../../core/tensor/mod.ts";
import type { RefTensor } from "../../../core/tensor/reference/ops.ts";
import { applyRopeRef, ropeTableRef } from "../../../core/tensor/reference/rope.ts";
import { assert, assertEquals, assertThrows } from "../../assert.ts";
import { assertClose, gpuTest, randomArray } from "../../helpers.ts";
import { checkOp, type OpCase } from "../../op_harness.ts";

Deno.test("ropeSinCosValues() lays out [sin | cos], axis-major, band-minor, each angle on a channel pair", () => {
  // grid (4, 5, 6), head dim 12: 2 bands per axis (1 and 10000^(-1/2) = 0.01), R = 12
  const { values, tokens, rotaryDim } = ropeSinCosValues([4, 5, 6], 12);
  assertEquals([tokens, rotaryDim], [120, 12]);
  const n = (1 * 5 + 2) * 6 + 3; // token at (d, h, w) = (1, 2, 3), row-major
  const row = values.slice(n * 24, n * 24 + 24);
  const angles = [1, 0.01, 2, 0.02, 3, 0.03]; // (axis d: 1·1, 1·0.01), (h: 2·1, 2·0.01), (w: 3·1, 3·0.01)
  const expected = [
    ...angles.flatMap((a) => [Math.sin(a), Math.sin(a)]),
    ...angles.flatMap((a) => [Math.cos(a), Math.cos(a)]),
  ];
  assertClose(row, expected, { rtol: 1e-14, atol: 1e-15, label: "token (1,2,3)" });
  // token 0 has all positions 0: sin 0, cos 1
  assertClose(values.slice(0, 24), [...new Array(12).fill(0), ...new Array(12).fill(1)], {
    atol: 0,
    rtol: 0,
  });
});

Deno.test("ropeSinCosValues() matches the step-by-step timm reference (Primus head dims, refGrid)", () => {
  for (
    const [grid, dh, ref] of [
      [[2, 3, 4], 72, undefined], // Primus-M head dim: 12 bands per axis, R = 72 (whole head)
      [[3, 1, 5], 66, undefined], // Primus-S/B/L: 11 bands, R = 66
      [[4, 4, 2], 64, [8, 8, 4]], // 10 bands, R = 60 < 64; positions rescaled to a reference grid
    ] as [number[], number, number[] | undefined][]
  ) {
    const bands = Math.floor(dh / 6);
    const got = ropeSinCosValues(grid, dh, { refGrid: ref });
    const want = ropeTableRef(grid, bands, { refGrid: ref });
    assertEquals(got.rotaryDim, 6 * bands);
    assertClose(got.values, want.data, { rtol: 1e-12, atol: 1e-12, label: `grid [${grid}] dh ${dh}` });
  }
});

Deno.test("ropeSinCosValues() rejects grids and band counts that do not fit", () => {
  assertThrows(() => ropeSinCosValues([2, 0, 2], 12), RangeError, "grid");
  assertThrows(() => ropeSinCosValues([2, 2, 2], 12, { bandsPerAxis: 3 }), RangeError, "head dim is 12");
  assertThrows(() => ropeSinCosValues([2, 2, 2], 5), RangeError, "bands");
});

gpuTest("ropeSinCos() uploads the table as f32 [N, 2R]", async () => {
  const t = ropeSinCos([2, 3, 2], 18);
  assertEquals([...t.shape], [12, 36]);
  assertEquals(t.dtype, "f32");
  assertClose(await t.toFloat64(), Float32Array.from(ropeSinCosValues([2, 3, 2], 18).values), {
    rtol: 0,
    atol: 0,
  });
  t.dispose();
});

/** A table input with arbitrary (not sin/cos) entries, so both formulas are checked in general. */
function table(shape: number[], seed: number): RefTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return { shape, data: Float64Array.from(Float32Array.from(randomArray(n, seed, -1, 1))) };
}

function ropeCase(name: string, xShape: number[], tableShape: number[]): OpCase {
  const t = table(tableShape, xShape.length * 31 + tableShape[tableShape.length - 1]);
  return {
    name,
    inputs: [{ shape: xShape }],
    gpu: ([x]) => applyRope(x, tensor(t.data, t.shape)),
    ref: ([x]) => applyRopeRef(x, t),
  };
}

const cases: OpCase[] = [
  ropeCase("applyRope [2,3,7,12], table [7,24] (whole head)", [2, 3, 7, 12], [7, 24]),
  ropeCase("applyRope [1,2,5,15], table [5,24] (R 12 < Dh 15)", [1, 2, 5, 15], [5, 24]),
  ropeCase("applyRope [1,2,9,8], table [6,16] (3 prefix tokens pass)", [1, 2, 9, 8], [6, 16]),
  ropeCase("applyRope [2,3,5,6], per-batch table [2,5,8]", [2, 3, 5, 6], [2, 5, 8]),
  ropeCase("applyRope rank 3 [4,6,4], table [6,8]", [4, 6, 4], [6, 8]),
];

for (const c of cases) gpuTest(`${c.name}: values and finite-difference gradients`, () => checkOp(c));

gpuTest("applyRope() with a Primus table: q·k depends only on relative position", async () => {
  // 1D positions along the last axis of a (1, 1, 12) grid, head dim 72 (R 72); the same q at positions m
  // and m + s against the same k at n and n + s gives the same score.
  const dh = 72;
  const sinCos = ropeSinCos([1, 1, 12], dh, { bandsPerAxis: 12 });
  const q = randomArray(dh, 5);
  const k = randomArray(dh, 6);
  const data = new Float64Array(12 * dh);
  for (let i = 0; i < 12; i++) data.set(i % 2 === 0 ? q : k, i * dh);
  const scores = scope(() => {
    const x = applyRope(tensor(data, [1, 1, 12, dh]), sinCos);
    return matmul(x, transpose(x, 2, 3)); // [12, 12]
  });
  const s = await scores.toFloat64();
  // pairs (q at 0, k at 3), (q at 4, k at 7), (q at 8, k at 11): all offset 3
  const pairs = [[0, 3], [4, 7], [8, 11]].map(([i, j]) => s[i * 12 + j]);
  assertClose(pairs.slice(1), [pairs[0], pairs[0]], { rtol: 1e-5, atol: 1e-5, label: "offset 3" });
  // and rotation preserves norms: |R q| = |q|
  const qq = q.reduce((a, v) => a + v * v, 0);
  assertClose([s[0], s[4 * 12 + 4]], [qq, qq], { rtol: 1e-5, atol: 0, label: "norm" });
  // the scores are not all equal: the positions matter (offset 1 differs from offset 3)
  assert(Math.abs(s[0 * 12 + 1] - pairs[0]) > 1e-3, "different offsets give different scores");
  scores.dispose();
  sinCos.dispose();
});

gpuTest("ropeSinCosAt() gathers kept tokens: rope then keep equals keep then rope", async () => {
  const grid = [2, 3, 4]; // 24 tokens, head dim 12
  const keep = [[3, 0, 17, 23, 8], [1, 2, 20, 11, 5]];
  const x = randomArray(2 * 2 * 24 * 12, 21);
  const [viaFull, viaKept] = scope(() => {
    const full = applyRope(tensor(x, [2, 2, 24, 12]), ropeSinCos(grid, 12));
    // gather the kept tokens of x and of the rotated x on the host side of the test
    const kept = new Float64Array(2 * 2 * 5 * 12);
    keep.forEach((idx, b) =>
      [0, 1].forEach((h) =>
        idx.forEach((t, k) =>
          kept.set(
            x.subarray(((b * 2 + h) * 24 + t) * 12, ((b * 2 + h) * 24 + t + 1) * 12),
            ((b * 2 + h) * 5 + k) * 12,
          )
        )
      )
    );
    return [full, applyRope(tensor(kept, [2, 2, 5, 12]), ropeSinCosAt(grid, 12, keep))];
  });
  const f = await viaFull.toFloat64();
  const g = await viaKept.toFloat64();
  const expected = new Float64Array(g.length);
  keep.forEach((idx, b) =>
    [0, 1].forEach((h) =>
      idx.forEach((t, k) =>
        expected.set(
          f.subarray(((b * 2 + h) * 24 + t) * 12, ((b * 2 + h) * 24 + t + 1) * 12),
          ((b * 2 + h) * 5 + k) * 12,
        )
      )
    )
  );
  assertClose(g, expected, { rtol: 0, atol: 0, label: "kept tokens" });
  assertThrows(() => ropeSinCosAt(grid, 12, [[1, 2], [3]]), RangeError, "keeps 1 tokens");
  assertThrows(() => ropeSinCosAt(grid, 12, [[24]]), RangeError, "outside");
  viaFull.dispose();
  viaKept.dispose();
});

gpuTest(
  "applyRope() on f16 agrees with f32 within one f16 rounding",
  { requires: ["shader-f16"] },
  async () => {
    const x = Float16Array.from(randomArray(2 * 3 * 10 * 66, 8, -2, 2));
    const [a, b] = scope(() => {
      const sinCos = ropeSinCos([2, 5, 1], 66);
      return [
        applyRope(tensor(x, [2, 3, 10, 66]), sinCos),
        applyRope(tensor(x, [2, 3, 10, 66], { dtype: "f16" }), sinCos),
      ];
    });
    assertEquals(b.dtype, "f16");
    // each output is computed in f32 from the same inputs and rounded once to f16 (≤ 2⁻¹¹ relative)
    assertClose(await b.toFloat64(), await a.toFloat64(), { rtol: 4.9e-4, atol: 1e-7, label: "f16 vs f32" });
    a.dispose();
    b.dispose();
  },
);

Deno.test({
  name: "applyRope() splits bindings above maxStorageBufferBindingSize over heads",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const gpu = await createGpu({ maxStorageBindingBytes: 4096 });
    try {
      const x: RefTensor = { shape: [3, 4, 9, 10], data: randomArray(3 * 4 * 9 * 10, 12) }; // 360 B per head
      const t = table([3, 9, 8], 13);
      const out = scope(() => applyRope(tensor(x.data, x.shape, { gpu }), tensor(t.data, t.shape, { gpu })));
      assertClose(await out.toFloat64(), applyRopeRef(x, t).data, {
        rtol: 1e-6,
        atol: 1e-6,
        label: "chunked",
      });
      out.dispose();
    } finally {
      gpu.destroy();
    }
  },
});

gpuTest("applyRope() rejects tables that do not fit x", () => {
  scope(() => {
    const x = tensor(new Float32Array(2 * 5 * 8), [1, 2, 5, 8]);
    assertThrows(() => applyRope(x, tensor(new Float32Array(5 * 20), [5, 20])), RangeError, "head dim");
    assertThrows(() => applyRope(x, tensor(new Float32Array(5 * 6), [5, 6])), RangeError, "R even");
    assertThrows(() => applyRope(x, tensor(new Float32Array(6 * 8), [6, 8])), RangeError, "6 tokens");
    assertThrows(() => applyRope(x, tensor(new Float32Array(2 * 5 * 8), [2, 5, 8])), RangeError, "batch 1");
    assertThrows(
      () => applyRope(x, tensor(new Int32Array(5 * 8), [5, 8], { dtype: "i32" })),
      TypeError,
      "f32",
    );
  });
});
