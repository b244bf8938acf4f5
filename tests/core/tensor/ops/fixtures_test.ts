/**
 * PyTorch fixtures (tests/fixtures/norm_fixtures.json, made by scripts/fixtures/norm_fixtures.py with
 * torch 1.13) for the semantics that are easy to get subtly wrong: InstanceNorm's eps and biased
 * variance, interpolate's index rules with and without align_corners, exact GELU, pooling floors,
 * cross-entropy's ignore_index mean. Both the GPU ops (values and input gradients) and the float64
 * references are compared with PyTorch.
 */
import * as ops from "../../../../core/tensor/mod.ts";
import * as RA from "../../../../core/tensor/reference/activation.ts";
import * as RL from "../../../../core/tensor/reference/loss.ts";
import * as RN from "../../../../core/tensor/reference/norm.ts";
import type { RefTensor } from "../../../../core/tensor/reference/ops.ts";
import * as RP from "../../../../core/tensor/reference/pool.ts";
import { assert } from "../../../assert.ts";
import { assertClose, gpuTest } from "../../../helpers.ts";

/** Numbers are stored as space-separated strings (compact, and left alone by `deno fmt`). */
type Numbers = string;

interface FixtureTensor {
  shape: number[];
  data: Numbers;
}

interface Fixture {
  name: string;
  inputs: FixtureTensor[];
  output: FixtureTensor;
  seed?: Numbers;
  grads?: (Numbers | null)[];
  labels?: Numbers;
  size?: number[];
  mode?: "nearest" | "trilinear";
  alignCorners?: boolean;
}

const file = new URL("../../../fixtures/norm_fixtures.json", import.meta.url);
const { cases } = JSON.parse(await Deno.readTextFile(file)) as { cases: Fixture[] };

type Impl = {
  gpu: (xs: ops.Tensor[], f: Fixture) => ops.Tensor;
  ref: (xs: RefTensor[], f: Fixture) => RefTensor;
};

const numbers = (s: Numbers): number[] => s.split(" ").map(Number);

const labelsOf = (f: Fixture, shape: number[]) =>
  ops.tensor(Int32Array.from(numbers(f.labels!)), shape, { dtype: "i32" });

const IMPLS: Record<string, Impl> = {
  instance_norm3d_affine: {
    gpu: ([x, w, b]) => ops.instanceNorm(x, w, b),
    ref: ([x, w, b]) => RN.instanceNormRef(x, w, b),
  },
  "instance_norm3d_eps_0.1": {
    gpu: ([x]) => ops.instanceNorm(x, undefined, undefined, 0.1),
    ref: ([x]) => RN.instanceNormRef(x, undefined, undefined, 0.1),
  },
  group_norm_2_groups: {
    gpu: ([x, w, b]) => ops.groupNorm(x, 2, w, b),
    ref: ([x, w, b]) => RN.groupNormRef(x, 2, w, b),
  },
  layer_norm_last_dim: {
    gpu: ([x, w, b]) => ops.layerNorm(x, 13, w, b),
    ref: ([x, w, b]) => RN.layerNormRef(x, 13, w, b),
  },
  instance_norm_add_leaky_relu: {
    gpu: ([x, w, b, s]) => ops.instanceNormAct(x, w, b, { residual: s, slope: 0.01 }),
    ref: ([x, w, b, s]) => RN.groupNormActRef(x, 3, w, b, { residual: s, slope: 0.01 }),
  },
  gelu_exact: { gpu: ([x]) => ops.gelu(x), ref: ([x]) => RA.activationRef("gelu", x) },
  silu: { gpu: ([x]) => ops.silu(x), ref: ([x]) => RA.activationRef("silu", x) },
  leaky_relu_default: {
    gpu: ([x]) => ops.leakyRelu(x),
    ref: ([x]) => RA.activationRef("leakyRelu", x, 0.01),
  },
  avg_pool3d_2: { gpu: ([x]) => ops.avgPool3d(x, 2), ref: ([x]) => RP.avgPool3dRef(x, 2) },
  max_pool3d_2: { gpu: ([x]) => ops.maxPool3d(x, 2), ref: ([x]) => RP.maxPool3dRef(x, 2) },
  cross_entropy_ignore_index: {
    gpu: ([x], f) => ops.crossEntropy(x, labelsOf(f, [x.shape[0], ...x.shape.slice(2)])),
    ref: ([x], f) => RL.crossEntropyRef(x, numbers(f.labels!)),
  },
  cosine_similarity_dim1: {
    gpu: ([a, b]) => ops.cosineSimilarity(a, b, 1),
    ref: ([a, b]) => RL.cosineSimilarityRef(a, b, 1),
  },
  normalize_dim1: { gpu: ([a]) => ops.l2Normalize(a, 1), ref: ([a]) => RL.l2NormalizeRef(a, 1) },
  logsumexp_dim1: { gpu: ([x]) => ops.logSumExp(x, 1), ref: ([x]) => RL.logSumExpRef(x, 1) },
  mse_mean: { gpu: ([a, b]) => ops.mseLoss(a, b), ref: ([a, b]) => RL.mseLossRef(a, b) },
  l1_mean: { gpu: ([a, b]) => ops.l1Loss(a, b), ref: ([a, b]) => RL.l1LossRef(a, b) },
};

const interpolateImpl: Impl = {
  gpu: ([x], f) =>
    ops.interpolate(x, {
      size: f.size!,
      mode: f.mode === "nearest" ? "nearest" : "trilinear",
      alignCorners: f.mode === "nearest" ? undefined : f.alignCorners,
    }),
  ref: ([x], f) => RP.interpolateRef(x, f.size!, f.mode === "nearest" ? "nearest" : "linear", f.alignCorners),
};

Deno.test("the PyTorch fixture covers every case of the table", () => {
  for (const f of cases) {
    assert(f.name in IMPLS || f.name.startsWith("interpolate_"), `no implementation for ${f.name}`);
  }
  assert(cases.length >= 20, `only ${cases.length} fixture cases`);
});

for (const f of cases) {
  const impl = f.name.startsWith("interpolate_") ? interpolateImpl : IMPLS[f.name];
  if (!impl) continue;
  gpuTest(`${f.name} matches PyTorch (GPU values and gradients, float64 reference)`, async () => {
    const tol = { rtol: 2e-5, atol: 2e-5 };
    const refOut = impl.ref(
      f.inputs.map((t) => ({ shape: t.shape, data: Float64Array.from(numbers(t.data)) })),
      f,
    );
    const expected = numbers(f.output.data);
    assertClose(refOut.data, expected, { ...tol, label: `${f.name}: reference vs PyTorch` });
    const { out, grads } = ops.scope(() => {
      const xs = f.inputs.map((t) => ops.tensor(numbers(t.data), t.shape, { requiresGrad: true }));
      const y = impl.gpu(xs, f);
      ops.backward(ops.sum(ops.mul(y, ops.tensor(numbers(f.seed!), y.shape))));
      const gs = xs.map((t) => t.grad);
      xs.forEach((t) => (t.grad = undefined));
      return { out: y, grads: gs };
    });
    assertClose(await out.toFloat64(), expected, { ...tol, label: `${f.name}: GPU vs PyTorch` });
    for (let i = 0; i < grads.length; i++) {
      const grad = f.grads![i];
      if (!grad) continue;
      assertClose(await grads[i]!.toFloat64(), numbers(grad), {
        rtol: 1e-4,
        atol: 3e-5,
        label: `${f.name}: d/dx${i}`,
      });
    }
    out.dispose();
    grads.forEach((g) => g?.dispose());
  });
}
