/**
 * conv3d and convTranspose3d against PyTorch 1.13 (tests/fixtures/conv_fixtures.json, written by
 * scripts/fixtures/conv_fixtures.py): outputs and the gradients of input, weight and bias for the loss
 * Σ y·gy, on the cases whose semantics are easy to get subtly wrong (per-axis padding and stride, unread
 * input rows, ConvTranspose3d's padding and output_padding). Needs no torch to run.
 */
import { assertEquals } from "../../assert.ts";
import * as ops from "../../../core/tensor/mod.ts";
import * as R from "../../../core/tensor/reference/conv.ts";
import { assertClose, gpuTest } from "../../helpers.ts";

interface Array5 {
  shape: number[];
  data: string;
}

interface FixtureCase {
  name: string;
  op: "conv3d" | "convTranspose3d";
  stride: [number, number, number];
  padding: [number, number, number];
  output_padding?: [number, number, number];
  x: Array5;
  w: Array5;
  gy: Array5;
  y: Array5;
  b?: string;
  dx: string;
  dw: string;
  db?: string;
}

const fixture: { torch: string; cases: FixtureCase[] } = JSON.parse(
  await Deno.readTextFile(new URL("../../fixtures/conv_fixtures.json", import.meta.url)),
);

function numbers(s: string): Float64Array {
  return Float64Array.from(s.split(" ").map(Number));
}

/** Inputs are float32 values written with 9 digits: round them back to exactly those values. */
function float32s(s: string): Float64Array {
  return Float64Array.from(Float32Array.from(numbers(s)));
}

for (const c of fixture.cases) {
  gpuTest(`${c.op}() matches PyTorch ${fixture.torch}: ${c.name}`, async () => {
    const [y, dx, dw, db] = ops.scope(() => {
      const x = ops.tensor(numbers(c.x.data), c.x.shape, { requiresGrad: true });
      const w = ops.tensor(numbers(c.w.data), c.w.shape, { requiresGrad: true });
      const b = c.b ? ops.tensor(numbers(c.b), [numbers(c.b).length], { requiresGrad: true }) : undefined;
      const y = c.op === "conv3d"
        ? ops.conv3d(x, w, { bias: b, stride: c.stride, padding: c.padding })
        : ops.convTranspose3d(x, w, {
          bias: b,
          stride: c.stride,
          padding: c.padding,
          outputPadding: c.output_padding,
        });
      ops.backward(ops.sum(ops.mul(y, ops.tensor(numbers(c.gy.data), c.gy.shape))));
      const grads = [x.grad!, w.grad!, b?.grad];
      [x, w, b].forEach((t) => t && (t.grad = undefined)); // hand the gradients to the scope's result
      return [y, ...grads];
    });
    try {
      assertEquals(y!.shape, c.y.shape, "output shape");
      const tol = { rtol: 1e-5, atol: 2e-5 };
      assertClose(await y!.toFloat64(), numbers(c.y.data), { ...tol, label: "y" });
      assertClose(await dx!.toFloat64(), numbers(c.dx), { ...tol, label: "dx" });
      assertClose(await dw!.toFloat64(), numbers(c.dw), { ...tol, label: "dw" });
      if (c.db) assertClose(await db!.toFloat64(), numbers(c.db), { ...tol, label: "db" });
    } finally {
      [y, dx, dw, db].forEach((t) => t?.dispose());
    }
  });
}

Deno.test("conv3dRef() and convTranspose3dRef() (the test oracle) match PyTorch", () => {
  for (const c of fixture.cases) {
    const x = { shape: c.x.shape, data: float32s(c.x.data) };
    const w = { shape: c.w.shape, data: float32s(c.w.data) };
    const b = c.b ? { shape: [numbers(c.b).length], data: float32s(c.b) } : undefined;
    const opts = { stride: c.stride, padding: c.padding, outputPadding: c.output_padding };
    const y = c.op === "conv3d" ? R.conv3dRef(x, w, b, opts) : R.convTranspose3dRef(x, w, b, opts);
    assertEquals(y.shape, c.y.shape, c.name);
    assertClose(y.data, numbers(c.y.data), { rtol: 1e-9, atol: 1e-9, label: c.name });
  }
});
