/** Every op of core/tensor against the float64 CPU reference, values and gradients (tests/op_harness.ts). */
import * as ops from "../../../core/tensor/mod.ts";
import * as R from "../../../core/tensor/reference/ops.ts";
import { checkOp, type OpCase } from "../../op_harness.ts";
import { assert, assertEquals } from "../../assert.ts";
import { assertClose, gpuTest, seededRandom } from "../../helpers.ts";

const positive = { lo: 0.2, hi: 2 };

const unaryCases: OpCase[] = [
  {
    name: "neg",
    inputs: [{ shape: [3, 5, 7] }],
    gpu: ([x]) => ops.neg(x),
    ref: ([x]) => R.unaryRef("neg", x),
  },
  {
    name: "exp",
    inputs: [{ shape: [3, 5, 7] }],
    gpu: ([x]) => ops.exp(x),
    ref: ([x]) => R.unaryRef("exp", x),
  },
  {
    name: "log",
    inputs: [{ shape: [37], ...positive }],
    gpu: ([x]) => ops.log(x),
    ref: ([x]) => R.unaryRef("log", x),
  },
  {
    name: "sqrt",
    inputs: [{ shape: [5, 9], ...positive }],
    gpu: ([x]) => ops.sqrt(x),
    ref: ([x]) => R.unaryRef("sqrt", x),
  },
  {
    name: "rsqrt",
    inputs: [{ shape: [5, 9], ...positive }],
    gpu: ([x]) => ops.rsqrt(x),
    ref: ([x]) => R.unaryRef("rsqrt", x),
  },
  { name: "abs", inputs: [{ shape: [4, 13] }], gpu: ([x]) => ops.abs(x), ref: ([x]) => R.unaryRef("abs", x) },
  {
    name: "clamp",
    inputs: [{ shape: [6, 11] }],
    gpu: ([x]) => ops.clamp(x, -0.3, 0.45),
    ref: ([x]) => R.unaryRef("clamp", x, -0.3, 0.45),
  },
  {
    name: "powScalar(3) on negatives",
    inputs: [{ shape: [2, 17] }],
    gpu: ([x]) => ops.powScalar(x, 3),
    ref: ([x]) => R.unaryRef("powScalar", x, 3),
  },
  {
    name: "powScalar(2.5)",
    inputs: [{ shape: [19], ...positive }],
    gpu: ([x]) => ops.powScalar(x, 2.5),
    ref: ([x]) => R.unaryRef("powScalar", x, 2.5),
  },
  {
    name: "addScalar",
    inputs: [{ shape: [3, 3, 3] }],
    gpu: ([x]) => ops.add(x, 1.5),
    ref: ([x]) => R.unaryRef("addScalar", x, 1.5),
  },
  {
    name: "mulScalar",
    inputs: [{ shape: [3, 3, 3] }],
    gpu: ([x]) => ops.mul(x, -2.25),
    ref: ([x]) => R.unaryRef("mulScalar", x, -2.25),
  },
];

const binaryCases: OpCase[] = [
  {
    name: "add broadcasts [3,1,5] + [4,5]",
    inputs: [{ shape: [3, 1, 5] }, { shape: [4, 5] }],
    gpu: ([a, b]) => ops.add(a, b),
    ref: ([a, b]) => R.binaryRef("add", a, b),
  },
  {
    name: "sub broadcasts [2,3] − [3]",
    inputs: [{ shape: [2, 3] }, { shape: [3] }],
    gpu: ([a, b]) => ops.sub(a, b),
    ref: ([a, b]) => R.binaryRef("sub", a, b),
  },
  {
    name: "mul broadcasts [5,1] · [1,6]",
    inputs: [{ shape: [5, 1] }, { shape: [1, 6] }],
    gpu: ([a, b]) => ops.mul(a, b),
    ref: ([a, b]) => R.binaryRef("mul", a, b),
  },
  {
    name: "div same shape",
    inputs: [{ shape: [7, 9] }, { shape: [7, 9], ...positive }],
    gpu: ([a, b]) => ops.div(a, b),
    ref: ([a, b]) => R.binaryRef("div", a, b),
  },
  {
    name: "pow with tensor exponent",
    inputs: [{ shape: [4, 5], ...positive }, { shape: [5], lo: -1.5, hi: 2 }],
    gpu: ([a, b]) => ops.pow(a, b),
    ref: ([a, b]) => R.binaryRef("pow", a, b),
  },
  {
    name: "maximum",
    inputs: [{ shape: [3, 8] }, { shape: [3, 8] }],
    gpu: ([a, b]) => ops.maximum(a, b),
    ref: ([a, b]) => R.binaryRef("maximum", a, b),
  },
  {
    name: "minimum broadcasts a scalar tensor",
    inputs: [{ shape: [3, 8] }, { shape: [] }],
    gpu: ([a, b]) => ops.minimum(a, b),
    ref: ([a, b]) => R.binaryRef("minimum", a, b),
  },
  // eq and ne: the partly-equal tests at the end of this file (independent random inputs are never equal)
  ...(["lt", "le", "gt", "ge"] as const).map((name): OpCase => ({
    name: `${name} gives a u32 mask`,
    inputs: [{ shape: [4, 6] }, { shape: [6] }],
    gpu: ([a, b]) => ops.cast(ops[name](a, b), "f32"),
    ref: ([a, b]) => R.binaryRef(name, a, b),
    grad: false,
  })),
  {
    name: "where selects with a mask and broadcasts",
    inputs: [{ shape: [3, 4] }, { shape: [3, 4] }, { shape: [4] }],
    gpu: ([c, a, b]) => ops.where(ops.gt(c, ops.zeros([])), a, b),
    ref: ([c, a, b]) => R.whereRef({ shape: c.shape, data: c.data.map((v) => +(v > 0)) }, a, b),
  },
  {
    name: "lerp blends start and end by a broadcast weight, on both sides of ½",
    inputs: [{ shape: [3, 4, 5] }, { shape: [5] }, { shape: [3, 4, 1], lo: -0.5, hi: 1.5 }],
    gpu: ([a, b, w]) => ops.lerp(a, b, w),
    ref: ([a, b, w]) => R.lerpRef(a, b, w),
  },
  {
    name: "cast f32 → f16 → f32 rounds like Float16Array",
    inputs: [{ shape: [33], lo: -100, hi: 100 }],
    gpu: ([x]) => ops.cast(ops.cast(x, "f16"), "f32"),
    ref: ([x]) => ({ shape: x.shape, data: Float64Array.from(Float16Array.from(x.data)) }),
    rtol: 0,
    atol: 0,
    grad: false,
  },
];

const reduceCases: OpCase[] = [
  { name: "sum of all", inputs: [{ shape: [3, 4, 5] }], gpu: ([x]) => ops.sum(x), ref: ([x]) => R.sumRef(x) },
  {
    name: "sum over the middle axis",
    inputs: [{ shape: [3, 4, 5] }],
    gpu: ([x]) => ops.sum(x, 1),
    ref: ([x]) => R.sumRef(x, 1),
  },
  {
    name: "sum over non-adjacent axes with keepDims",
    inputs: [{ shape: [3, 4, 5] }],
    gpu: ([x]) => ops.sum(x, [0, 2], true),
    ref: ([x]) => R.sumRef(x, [0, 2], true),
  },
  {
    name: "mean over the last axis",
    inputs: [{ shape: [6, 7] }],
    gpu: ([x]) => ops.mean(x, -1),
    ref: ([x]) => R.meanRef(x, -1),
  },
  {
    name: "max over axis 0",
    inputs: [{ shape: [5, 3, 2] }],
    gpu: ([x]) => ops.max(x, 0),
    ref: ([x]) => R.maxRef(x, 0),
  },
  {
    name: "min over the last axis",
    inputs: [{ shape: [5, 9] }],
    gpu: ([x]) => ops.min(x, 1, true),
    ref: ([x]) => R.minRef(x, 1, true),
  },
  {
    name: "argmax along the last axis",
    inputs: [{ shape: [7, 300] }],
    gpu: ([x]) => ops.cast(ops.argmax(x, 1), "f32"),
    ref: ([x]) => R.argRef("argmax", x, 1),
    grad: false,
  },
  {
    name: "argmin along a middle axis",
    inputs: [{ shape: [3, 11, 5] }],
    gpu: ([x]) => ops.cast(ops.argmin(x, 1), "f32"),
    ref: ([x]) => R.argRef("argmin", x, 1),
    grad: false,
  },
  {
    name: "sum of a long row splits into chunks",
    inputs: [{ shape: [2, 50_001] }],
    gpu: ([x]) => ops.sum(x, 1),
    ref: ([x]) => R.sumRef(x, 1),
    grad: false,
    atol: 1e-3,
  },
  {
    name: "sum of a long column splits into chunks",
    inputs: [{ shape: [9_001, 3] }],
    gpu: ([x]) => ops.sum(x, 0),
    ref: ([x]) => R.sumRef(x, 0),
    grad: false,
    atol: 1e-3,
  },
];

const shapeCases: OpCase[] = [
  {
    name: "reshape with -1",
    inputs: [{ shape: [4, 6] }],
    gpu: ([x]) => ops.reshape(x, [3, -1]),
    ref: ([x]) => ({ shape: [3, 8], data: x.data }),
  },
  {
    name: "permute [2, 0, 1]",
    inputs: [{ shape: [3, 4, 5] }],
    gpu: ([x]) => ops.permute(x, [2, 0, 1]),
    ref: ([x]) => R.permuteRef(x, [2, 0, 1]),
  },
  {
    name: "transpose of a 4D tensor",
    inputs: [{ shape: [2, 3, 4, 5] }],
    gpu: ([x]) => ops.transpose(x, 1, 3),
    ref: ([x]) => R.permuteRef(x, [0, 3, 2, 1]),
  },
  {
    name: "slice with negative bounds",
    inputs: [{ shape: [5, 7, 3] }],
    gpu: ([x]) => ops.slice(x, [1, -5], [4, -1]),
    ref: ([x]) => R.sliceRef(x, [1, -5], [4, -1]),
  },
  {
    name: "pad with a value",
    inputs: [{ shape: [3, 4] }],
    gpu: ([x]) => ops.pad(x, [[1, 2], [0, 3]], 0.5),
    ref: ([x]) => R.padRef(x, [[1, 2], [0, 3]], 0.5),
  },
  {
    name: "expand [3,1] to [2,3,4]",
    inputs: [{ shape: [3, 1] }],
    gpu: ([x]) => ops.expand(x, [2, 3, 4]),
    ref: ([x]) => R.expandRef(x, [2, 3, 4]),
  },
  {
    name: "concat along axis 1",
    inputs: [{ shape: [2, 3, 4] }, { shape: [2, 1, 4] }, { shape: [2, 5, 4] }],
    gpu: (xs) => ops.concat(xs, 1),
    ref: (xs) => R.concatRef(xs, 1),
  },
];

const softmaxCases: OpCase[] = [
  {
    name: "softmax along the last axis",
    inputs: [{ shape: [4, 9], lo: -3, hi: 3 }],
    gpu: ([x]) => ops.softmax(x),
    ref: ([x]) => R.softmaxRef(x),
  },
  {
    name: "softmax along a middle axis",
    inputs: [{ shape: [2, 5, 3], lo: -3, hi: 3 }],
    gpu: ([x]) => ops.softmax(x, 1),
    ref: ([x]) => R.softmaxRef(x, 1),
  },
  {
    name: "logSoftmax with large logits stays finite",
    inputs: [{ shape: [3, 700], lo: 50, hi: 90 }],
    gpu: ([x]) => ops.logSoftmax(x),
    ref: ([x]) => R.softmaxRef(x, -1, true),
    rtol: 1e-5,
    atol: 2e-4,
    gradAtol: 2e-3,
  },
];

const matmulCases: OpCase[] = [
  {
    name: "matmul [5,7]·[7,3]",
    inputs: [{ shape: [5, 7] }, { shape: [7, 3] }],
    gpu: ([a, b]) => ops.matmul(a, b),
    ref: ([a, b]) => R.matmulRef(a, b),
  },
  {
    name: "matmul crosses tiles at odd sizes [67,33]·[33,70]",
    inputs: [{ shape: [67, 33] }, { shape: [33, 70] }],
    gpu: ([a, b]) => ops.matmul(a, b),
    ref: ([a, b]) => R.matmulRef(a, b),
    grad: false,
  },
  {
    name: "matmul vec4 path [8,36]·[36,12]",
    inputs: [{ shape: [8, 36] }, { shape: [36, 12] }],
    gpu: ([a, b]) => ops.matmul(a, b),
    ref: ([a, b]) => R.matmulRef(a, b),
  },
  {
    name: "matmul batched with a broadcast operand",
    inputs: [{ shape: [3, 6, 9] }, { shape: [9, 5] }],
    gpu: ([a, b]) => ops.matmul(a, b),
    ref: ([a, b]) => R.matmulRef(a, b),
  },
  {
    name: "matmul broadcasts batch dims [2,1,5,4]·[3,4,6]",
    inputs: [{ shape: [2, 1, 5, 4] }, { shape: [3, 4, 6] }],
    gpu: ([a, b]) => ops.matmul(a, b),
    ref: ([a, b]) => R.matmulRef(a, b),
  },
  ...[[false, true], [true, false], [true, true]].map(([ta, tb]): OpCase => ({
    name: `matmul with transposeA=${ta} transposeB=${tb}`,
    inputs: [{ shape: ta ? [2, 7, 5] : [2, 5, 7] }, { shape: tb ? [8, 7] : [7, 8] }],
    gpu: ([a, b]) => ops.matmul(a, b, { transposeA: ta, transposeB: tb }),
    ref: ([a, b]) => R.matmulRef(a, b, ta, tb),
  })),
  {
    name: "matmul with an empty inner dimension gives zeros",
    inputs: [{ shape: [3, 0] }, { shape: [0, 4] }],
    gpu: ([a, b]) => ops.matmul(a, b),
    ref: ([a, b]) => R.matmulRef(a, b),
    grad: false,
  },
];

for (
  const c of [...unaryCases, ...binaryCases, ...reduceCases, ...shapeCases, ...softmaxCases, ...matmulCases]
) {
  gpuTest(
    `op ${c.name} matches the reference${c.grad === false ? "" : " (values and gradients)"}`,
    () => checkOp(c),
  );
}

/**
 * Inputs for eq/ne where equality actually happens: `b` is `a` with a random subset of entries replaced
 * by fresh values or by `a`'s f32 neighbour (one ulp away, so not equal), and a few exact-equality edge
 * cases: −0 against 0 (equal in the reference, `a === b`, as in IEEE 754), and equal large and subnormal values (not ±subnormal pairs: WGSL
 * allows flushing subnormals to zero, which would make them equal).
 * `row` is one row of `a` with some entries changed, to compare against `a` by broadcasting.
 */
function partlyEqualInputs(seed: number): { a: R.RefTensor; b: R.RefTensor; row: R.RefTensor } {
  const next = seededRandom(seed);
  const shape = [4, 6];
  const a = Float32Array.from({ length: 24 }, () => 2 * next() - 1);
  const b = Float32Array.from(a);
  const bits = new Uint32Array(b.buffer);
  for (let i = 0; i < b.length; i++) {
    const u = next();
    if (u < 0.25) b[i] = 2 * next() - 1; // a different value
    else if (u < 0.45) bits[i] += 1; // the f32 neighbour (|a| < 1, so still finite and non-zero)
  }
  // edge cases at fixed places: −0 vs 0 both ways, equal large values, equal subnormal-range f32 values
  [a[0], b[0]] = [-0, 0];
  [a[7], b[7]] = [0, -0];
  [a[13], b[13]] = [3.4e38, 3.4e38];
  [a[20], b[20]] = [1e-40, 1e-40]; // equal whether or not the GPU flushes subnormals
  const row = Float32Array.from(a.subarray(6, 12));
  row[1] = 0.5 * row[1] + 0.25;
  row[4] = -row[4];
  const f64 = (x: Float32Array, s: number[]) => ({ shape: s, data: Float64Array.from(x) });
  return { a: f64(a, shape), b: f64(b, shape), row: f64(row, [6]) };
}

for (const name of ["eq", "ne"] as const) {
  gpuTest(
    `op ${name} gives a u32 mask that matches the reference on partly equal inputs (−0 vs 0, one ulp apart, broadcast row)`,
    async () => {
      const { a, b, row } = partlyEqualInputs(name === "eq" ? 31 : 32);
      for (const [label, other] of [["same shape", b], ["broadcast [4,6] against [6]", row]] as const) {
        const want = R.binaryRef(name, a, other);
        // the inputs must exercise both outcomes, or the comparison could not fail
        assert(want.data.includes(0) && want.data.includes(1), `${label}: reference mask is constant`);
        const [mask, values] = ops.scope(() => {
          const m = ops[name](
            ops.tensor(Float32Array.from(a.data), a.shape),
            ops.tensor(Float32Array.from(other.data), other.shape),
          );
          return [m, ops.cast(m, "f32")];
        });
        assertEquals(mask.dtype, "u32");
        assertEquals([...mask.shape], want.shape);
        assertClose(await values.toFloat64(), want.data, { rtol: 0, atol: 0, label: `${name} ${label}` });
        mask.dispose();
        values.dispose();
      }
    },
  );
}

gpuTest("lerp with a 0/1 weight gives start or end bit for bit (a mask blend)", async () => {
  const next = seededRandom(77);
  const a = Float32Array.from({ length: 24 }, () => 4 * next() - 2);
  const b = Float32Array.from({ length: 6 }, () => 4 * next() - 2);
  const m = Float32Array.from({ length: 4 }, (_, i) => i % 2);
  const y = ops.scope(() => ops.lerp(ops.tensor(a, [4, 6]), ops.tensor(b, [6]), ops.tensor(m, [4, 1])));
  const expected = Float32Array.from(a, (v, i) => (m[Math.floor(i / 6)] ? b[i % 6] : v));
  assertEquals([...await y.toArray()], [...expected]);
  y.dispose();
});
