/** Activation ops, SwiGLU and dropout against the float64 reference (values and gradients). */
import * as ops from "../../../../core/tensor/mod.ts";
import * as R from "../../../../core/tensor/reference/activation.ts";
import { erf, erfc, normalCdf } from "../../../../core/tensor/special.ts";
import { assert, assertEquals } from "../../../assert.ts";
import { checkOp, type OpCase } from "../../../op_harness.ts";
import { assertClose, gpuTest } from "../../../helpers.ts";
import { checkOpDirect, withSmallBindings } from "../../../chunked_harness.ts";

const wide = { lo: -3, hi: 3 };

const cases: OpCase[] = [
  ...(["relu", "gelu", "silu", "sigmoid", "tanh"] as const).map((name): OpCase => ({
    name: `${name}()`,
    inputs: [{ shape: [3, 5, 7], ...wide }],
    gpu: ([x]) => ops[name](x),
    ref: ([x]) => R.activationRef(name, x),
  })),
  {
    name: "leakyRelu() with the default slope 0.01",
    inputs: [{ shape: [2, 3, 11], ...wide }],
    gpu: ([x]) => ops.leakyRelu(x),
    ref: ([x]) => R.activationRef("leakyRelu", x, 0.01),
  },
  {
    name: "leakyRelu() with slope 0.2",
    inputs: [{ shape: [37], ...wide }],
    gpu: ([x]) => ops.leakyRelu(x, 0.2),
    ref: ([x]) => R.activationRef("leakyRelu", x, 0.2),
  },
  ...(["sigmoid", "tanh", "silu", "gelu"] as const).map((name): OpCase => ({
    name: `${name}() stays finite and exact for large |x|`,
    inputs: [{ shape: [64], lo: -90, hi: 90 }],
    gpu: ([x]) => ops[name](x),
    ref: ([x]) => R.activationRef(name, x),
    grad: false,
    atol: 1e-6,
  })),
  {
    name: "swiglu(a, b)",
    inputs: [{ shape: [3, 7], ...wide }, { shape: [3, 7], ...wide }],
    gpu: ([a, b]) => ops.swiglu(a, b),
    ref: ([a, b]) => R.swigluRef(a, b),
  },
  {
    name: "swigluSplit() gates the first half",
    inputs: [{ shape: [2, 3, 10], ...wide }],
    gpu: ([x]) => ops.swigluSplit(x),
    ref: ([x]) => R.swigluSplitRef(x),
  },
  {
    name: "swigluSplit() with gateLast",
    inputs: [{ shape: [5, 6], ...wide }],
    gpu: ([x]) => ops.swigluSplit(x, { gateLast: true }),
    ref: ([x]) => R.swigluSplitRef(x, true),
  },
  {
    name: "dropout(p = 0.3) draws its mask from the generator",
    inputs: [{ shape: [3, 5, 9] }],
    gpu: ([x]) => ops.dropout(x, 0.3, new ops.Generator(11)),
    ref: ([x]) => R.dropoutRef(x, 0.3, 11, 0),
  },
  {
    name: "dropPath(p = 0.5) drops whole samples",
    inputs: [{ shape: [6, 4, 5] }],
    gpu: ([x]) => ops.dropPath(x, 0.5, new ops.Generator(3)),
    ref: ([x]) => R.dropPathRef(x, 0.5, 3, 0),
  },
];

for (const c of cases) {
  gpuTest(
    `${c.name} matches the reference${c.grad === false ? "" : " (values and gradients)"}`,
    () => checkOp(c),
  );
}

Deno.test("erf(), erfc() and normalCdf() match known float64 values", () => {
  assertClose([erf(0.5), erf(1), erf(-2), erf(3)], [
    0.5204998778130465,
    0.8427007929497149,
    -0.9953222650189527,
    0.9999779095030014,
  ], { rtol: 1e-14, atol: 0 });
  assertClose([erfc(3), erfc(5), erfc(-1)], [
    2.209049699858544e-5,
    1.5374597944280349e-12,
    1.8427007929497148,
  ], { rtol: 1e-13, atol: 0 });
  assertClose([normalCdf(-6), normalCdf(1.96)], [9.865876450376946e-10, 0.9750021048517795], {
    rtol: 1e-12,
    atol: 0,
  });
});

gpuTest("gelu() approximates the exact erf form within 2.5e-7·|x| over [-10, 10]", async () => {
  const n = 20001;
  const xs = Float32Array.from({ length: n }, (_, i) => -10 + (20 * i) / (n - 1));
  const y = ops.scope(() => ops.gelu(ops.tensor(xs, [n])));
  const got = await y.toFloat64();
  y.dispose();
  let worst = 0;
  for (let i = 0; i < n; i++) {
    const x = xs[i];
    const cdfError = Math.abs(got[i] - x * normalCdf(x)) / Math.max(Math.abs(x), 1e-3);
    worst = Math.max(worst, cdfError);
  }
  assert(worst < 2.5e-7, `max |Φ error| ${worst}`);
});

gpuTest(
  "dropout() keeps the elements generator.bernoulli(1 − p) would give, scaled by 1/(1 − p)",
  async () => {
    const n = 4099;
    const [y, mask] = ops.scope(() => {
      const x = ops.ones([n]);
      return [ops.dropout(x, 0.25, new ops.Generator(77)), new ops.Generator(77).bernoulli([n], 0.75)];
    });
    const values = await y.toFloat64();
    const expected = (await mask.toFloat64()).map((m) => m / 0.75);
    assertClose(values, expected, { rtol: 1e-7, atol: 0 });
    const kept = values.reduce((s, v) => s + (v > 0 ? 1 : 0), 0) / n;
    assert(Math.abs(kept - 0.75) < 0.03, `kept fraction ${kept}`);
    y.dispose();
    mask.dispose();
  },
);

gpuTest("dropout() is reproducible from the seed and advances the stream", async () => {
  const run = (g: ops.Generator) => ops.scope(() => ops.dropout(ops.ones([300]), 0.5, g));
  const g1 = new ops.Generator(5);
  const g2 = new ops.Generator(5);
  const [a, b, c] = [run(g1), run(g2), run(g1)];
  const [va, vb, vc] = await Promise.all([a.toArray(), b.toArray(), c.toArray()]);
  assertEquals([...va], [...vb]);
  assert([...va].some((v, i) => v !== vc[i]), "a second draw repeated the first mask");
  assertEquals(g1.state.offset, 2 * Math.ceil(300 / 4));
  for (const t of [a, b, c]) t.dispose();
});

gpuTest("dropout() with p = 0 is the identity and with p = 1 gives zeros", async () => {
  const values = Float32Array.from({ length: 50 }, (_, i) => i - 20.5);
  const [same, none] = ops.scope(() => {
    const x = ops.tensor(values, [50]);
    return [ops.dropout(x, 0, new ops.Generator(1)), ops.dropout(x, 1, new ops.Generator(1))];
  });
  assertEquals([...await same.toArray()], [...values]);
  assertEquals([...await none.toArray()].every((v) => v === 0), true);
  same.dispose();
  none.dispose();
});

gpuTest("activations run on f16 storage", { requires: ["shader-f16"] }, async () => {
  const xs = Array.from({ length: 257 }, (_, i) => -4 + (8 * i) / 256);
  const y = ops.scope(() => ops.gelu(ops.tensor(xs, [257], { dtype: "f16" })));
  const expected = xs.map((x) => Float16Array.from([x])[0]).map((x) => x * normalCdf(x));
  assertClose(await y.toFloat64(), expected, { rtol: 2e-3, atol: 2e-3 });
  y.dispose();
});

Deno.test({
  name: "activations split into chunks when tensors exceed the binding limit",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withSmallBindings(2048, async () => {
      for (
        const c of [
          {
            name: "gelu chunked",
            inputs: [{ shape: [3, 7, 41], ...wide }],
            gpu: ([x]) => ops.gelu(x),
            ref: ([x]) => R.activationRef("gelu", x),
          },
          {
            name: "swigluSplit chunked",
            inputs: [{ shape: [41, 22], ...wide }],
            gpu: ([x]) => ops.swigluSplit(x),
            ref: ([x]) => R.swigluSplitRef(x),
          },
          {
            name: "swiglu chunked",
            inputs: [{ shape: [23, 29] }, { shape: [23, 29] }],
            gpu: ([a, b]) => ops.swiglu(a, b),
            ref: ([a, b]) => R.swigluRef(a, b),
          },
          {
            name: "dropout chunked",
            inputs: [{ shape: [9, 131] }],
            gpu: ([x]) => ops.dropout(x, 0.4, new ops.Generator(8)),
            ref: ([x]) => R.dropoutRef(x, 0.4, 8, 0),
          },
          {
            name: "dropPath chunked",
            inputs: [{ shape: [9, 131] }],
            gpu: ([x]) => ops.dropPath(x, 0.4, new ops.Generator(8)),
            ref: ([x]) => R.dropPathRef(x, 0.4, 8, 0),
          },
        ] satisfies OpCase[]
      ) await checkOpDirect(c);
    }),
});
