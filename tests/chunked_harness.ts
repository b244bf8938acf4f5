/**
 * Op checks on a device with a tiny `maxStorageBufferBindingSize`, so the chunked code paths of the
 * kernels run on lavapipe. Unlike tests/op_harness.ts this harness does not reduce the big output to a
 * scalar loss (the reductions have their own forced-limit test, tests/core/tensor/ops/reduce_split_test.ts),
 * so a failure names the op under test: it calls the output's backward rule directly with the random weights R as the incoming gradient (a vector-Jacobian
 * product), which it compares with central differences of L = Σ ref(x)·R.
 */
import { createGpu, getGpu, type Gpu, setDefaultGpu } from "../core/gpu/mod.ts";
import { noGrad, scope, type Tensor, tensor } from "../core/tensor/mod.ts";
import { assertClose, randomArray } from "./helpers.ts";
import { finiteDifference, makeInputs, type OpCase } from "./op_harness.ts";

/** Creates a device whose bindings are capped at `bytes`, makes it the default while `fn` runs. */
export async function withSmallBindings(bytes: number, fn: (gpu: Gpu) => Promise<void>): Promise<void> {
  let previous: Gpu | undefined;
  try {
    previous = getGpu();
  } catch {
    previous = undefined;
  }
  const gpu = await createGpu({ maxStorageBindingBytes: bytes });
  setDefaultGpu(gpu);
  try {
    await fn(gpu);
    await gpu.sync();
  } finally {
    setDefaultGpu(previous);
    gpu.destroy();
  }
}

/** Runs one case on the current default device: forward values, then each input's gradient. */
export async function checkOpDirect(c: OpCase, seed = 4242): Promise<void> {
  const xs = makeInputs(c, seed);
  const expected = c.ref(xs);
  const w = randomArray(expected.data.length, seed + 1, -1, 1);
  const { out, grads } = scope(() => {
    const inputs = xs.map((x) =>
      tensor(Float32Array.from(x.data), x.shape, { requiresGrad: c.grad !== false })
    );
    const y = c.gpu(inputs);
    if (c.grad === false) return { out: y, grads: [] as (Tensor | undefined)[] };
    const node = y.node;
    if (!node) throw new Error(`${c.name}: the output has no backward rule`);
    const seedGrad = tensor(Float32Array.from(w), y.shape);
    const fromNode = noGrad(() => node.backward(seedGrad));
    const gs = inputs.map((t) => {
      const k = node.inputs.indexOf(t);
      return k >= 0 ? fromNode[k] : undefined;
    });
    return { out: y, grads: gs };
  });
  try {
    const cap = out.gpu.limits.maxStorageBufferBindingSize;
    const biggest = Math.max(out.byteLength, ...xs.map((x) => 4 * x.data.length));
    if (biggest <= cap) throw new Error(`${c.name}: no tensor exceeds the ${cap}-byte binding cap`);
    if (out.shape.join() !== expected.shape.join()) {
      throw new Error(`${c.name}: shape [${out.shape}] != reference [${expected.shape}]`);
    }
    assertClose(await out.toFloat64(), expected.data, {
      rtol: c.rtol ?? 1e-5,
      atol: c.atol ?? 1e-5,
      label: c.name,
    });
    for (let i = 0; i < grads.length; i++) {
      const g = grads[i];
      if (!g) continue;
      assertClose(await g.toFloat64(), finiteDifference(c, xs, i, w), {
        rtol: c.gradRtol ?? 1e-3,
        atol: c.gradAtol ?? 1e-4,
        label: `${c.name}: d/dx${i}`,
      });
    }
  } finally {
    out.dispose();
    for (const g of grads) g?.dispose();
  }
}
