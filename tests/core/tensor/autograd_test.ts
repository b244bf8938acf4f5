import { assert, assertEquals, assertThrows } from "../../assert.ts";
import {
  add,
  backward,
  exp,
  keep,
  matmul,
  mean,
  mul,
  noGrad,
  reshape,
  scope,
  sum,
  type Tensor,
  tensor,
} from "../../../core/tensor/mod.ts";
import { assertClose, gpuTest, randomArray } from "../../helpers.ts";

gpuTest("backward() accumulates into leaf grads across calls", async () => {
  const x = tensor([1, 2, 3], [3], { requiresGrad: true });
  for (let i = 0; i < 2; i++) {
    scope(() => backward(sum(mul(x, x))));
  }
  assertClose(await x.grad!.toFloat64(), [4, 8, 12]); // 2 · 2x
  x.dispose();
});

gpuTest("backward() sums the gradients of a tensor used twice", async () => {
  const x = tensor([0.5, -1], [2], { requiresGrad: true });
  scope(() => backward(sum(add(mul(x, 3), exp(x)))));
  assertClose(await x.grad!.toFloat64(), [3 + Math.exp(0.5), 3 + Math.exp(-1)], { rtol: 1e-6 });
  x.dispose();
});

gpuTest("both leaves of add get their own gradient tensor", async () => {
  const a = tensor([1, 2], [2], { requiresGrad: true });
  const b = tensor([3, 4], [2], { requiresGrad: true });
  scope(() => backward(sum(add(a, b))));
  assert(a.grad !== b.grad);
  scope(() => backward(sum(mul(a, 2))));
  assertClose(await a.grad!.toFloat64(), [3, 3]);
  assertClose(await b.grad!.toFloat64(), [1, 1]);
  a.dispose();
  b.dispose();
});

gpuTest("noGrad() records nothing", () => {
  const x = tensor([1, 2], [2], { requiresGrad: true });
  const y = noGrad(() => mul(x, x));
  assertEquals(y.requiresGrad, false);
  assertEquals(y.node, undefined);
  assertThrows(() => backward(y), Error, "does not require grad");
  y.dispose();
  x.dispose();
});

gpuTest("scope() keeps its result and frees everything else", async (gpu) => {
  await gpu.sync();
  const before = gpu.pool.stats().bytesInUse;
  const y = scope(() => {
    const a = tensor([1, 2, 3, 4], [2, 2]);
    const b = tensor([1, 0, 0, 1], [2, 2]);
    return add(matmul(a, b), a);
  });
  assert(!y.disposed);
  assertClose(await y.toFloat64(), [2, 4, 6, 8]);
  y.dispose();
  assertEquals(gpu.pool.stats().bytesInUse, before);
});

gpuTest("keep() takes a tensor out of the scope", async () => {
  let kept: Tensor | undefined;
  scope(() => {
    kept = keep(tensor([7], [1]));
    tensor([1], [1]);
  });
  assertEquals(await kept!.item(), 7);
  kept!.dispose();
});

gpuTest("training steps in scopes return the pool to the same bytes in use", async (gpu) => {
  const w = tensor(randomArray(24 * 16, 1), [24, 16], { requiresGrad: true });
  const x = tensor(randomArray(5 * 24, 2), [5, 24]);
  const step = () =>
    scope(() => {
      const loss = mean(mul(exp(matmul(x, w)), 0.1));
      backward(loss);
      return loss;
    });
  step().dispose(); // first step allocates the grad
  await gpu.sync();
  const before = gpu.pool.stats();
  for (let i = 0; i < 25; i++) step().dispose();
  await gpu.sync();
  const after = gpu.pool.stats();
  assertEquals(after.bytesInUse, before.bytesInUse, "bytes in use after 25 steps");
  assertEquals(after.allocations, before.allocations, "no new GPU buffers in steady state");
  w.dispose();
  x.dispose();
});

gpuTest("backward() releases saved tensors as it goes", async (gpu) => {
  const w = tensor(randomArray(64 * 64, 3), [64, 64], { requiresGrad: true });
  await gpu.sync();
  scope(() => {
    let h: Tensor = w;
    for (let i = 0; i < 6; i++) h = exp(mul(h, 0.01));
    const loss = sum(h);
    const inUse = gpu.pool.stats().buffersInUse;
    backward(loss);
    // the tape's extra references are gone; only the scope's own tensors and the new grad remain
    assert(gpu.pool.stats().buffersInUse <= inUse + 1, "backward does not hold extra buffers");
  });
  w.dispose();
});

gpuTest("a nested scope keeps the graph its result depends on; the outermost scope ends it", async () => {
  const x = tensor([0.5, -1, 2], [3], { requiresGrad: true });
  scope(() => {
    const inner = scope(() => reshape(exp(mul(x, 2)), [3, 1])); // reshape saves nothing: a pure path
    backward(sum(inner));
  });
  assertClose(await x.grad!.toFloat64(), [0.5, -1, 2].map((v) => 2 * Math.exp(2 * v)), { rtol: 1e-6 });
  const y = scope(() => mul(x, 3));
  assertEquals(y.node, undefined, "outside every scope the graph is gone");
  y.dispose();
  x.dispose();
});
