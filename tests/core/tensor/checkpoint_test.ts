/**
 * checkpoint() (core/tensor/checkpoint.ts): a checkpointed segment's values and gradients against the
 * float64 reference (finite differences), bit-for-bit equality with the uncheckpointed graph (the
 * recomputation runs the same kernels on the same values; dropout replays its generator), less saved
 * memory, autocast replayed in the recomputation, and a clear error for a graph input not passed.
 */
import { assert, assertEquals, assertThrows } from "../../assert.ts";
import * as ops from "../../../core/tensor/mod.ts";
import { savedActivationBytes } from "../../../core/tensor/saved_bytes.ts";
import { activationRef } from "../../../core/tensor/reference/activation.ts";
import { binaryRef, matmulRef } from "../../../core/tensor/reference/ops.ts";
import { checkOp } from "../../op_harness.ts";
import { gpuTest, randomArray } from "../../helpers.ts";

function assertSame(a: ArrayLike<number>, b: ArrayLike<number>, label: string): void {
  assertEquals(a.length, b.length, label);
  for (let i = 0; i < a.length; i++) {
    if (!Object.is(a[i], b[i])) {
      throw new Error(`${label}: element ${i} is ${a[i]}, expected ${b[i]} exactly`);
    }
  }
}

gpuTest(
  "checkpoint(): values and gradients (inputs and parameters) match the float64 reference",
  async () => {
    await checkOp({
      name: "checkpointed gelu(x·w + b)",
      inputs: [{ shape: [5, 6] }, { shape: [6, 4] }, { shape: [4] }],
      // w and b are read from the closure: the checkpoint finds them as parameters
      gpu: ([x, w, b]) => ops.checkpoint((a) => ops.gelu(ops.add(ops.matmul(a, w), b)), [x]),
      ref: ([x, w, b]) => activationRef("gelu", binaryRef("add", matmulRef(x, w), b)),
      gradRtol: 2e-3,
    });
  },
);

/** A two-segment net with dropout; `mode` picks how each segment runs. */
function step(
  gpu: ops.Tensor["gpu"],
  mode: "plain" | "checkpoint",
  mixed: boolean,
): { grads: ops.Tensor[]; saved: number; output: ops.Tensor } {
  return ops.scope(() => {
    const param = (n: number[], seed: number) =>
      ops.tensor(randomArray(n.reduce((a, b) => a * b, 1), seed), n, { gpu, requiresGrad: true });
    const [w1, b1, w2] = [param([16, 32], 1), param([32], 2), param([32, 16], 3)];
    const x = param([8, 16], 4);
    const rng = new ops.Generator(7, gpu);
    const segment = (h: ops.Tensor) =>
      ops.add(h, ops.matmul(ops.dropout(ops.gelu(ops.add(ops.matmul(h, w1), b1)), 0.25, rng), w2));
    const run = (
      h: ops.Tensor,
    ) => (mode === "checkpoint" ? ops.checkpoint(segment, [h], { generators: [rng] }) : segment(h));
    const forward = () => ops.mseLoss(run(run(x)), ops.zerosLike(x));
    const loss = mixed ? ops.autocast(forward) : forward();
    const saved = savedActivationBytes(loss).total;
    ops.backward(loss);
    const grads = [x, w1, b1, w2].map((t) => {
      const g = t.grad!;
      t.grad = undefined;
      return g;
    });
    return { grads, saved, output: loss };
  });
}

gpuTest(
  "checkpoint(): gradients equal the uncheckpointed graph's bit for bit (dropout replayed, f32 and under autocast) and less is saved",
  async (gpu) => {
    for (const mixed of gpu.hasF16 ? [false, true] : [false]) {
      const plain = step(gpu, "plain", mixed);
      const ckpt = step(gpu, "checkpoint", mixed);
      const label = mixed ? "autocast" : "f32";
      assertSame(await ckpt.output.toFloat64(), await plain.output.toFloat64(), `${label}: loss`);
      for (const [i, name] of ["x", "w1", "b1", "w2"].entries()) {
        assertSame(await ckpt.grads[i].toFloat64(), await plain.grads[i].toFloat64(), `${label}: d${name}`);
      }
      // each segment saves its input alone instead of its activations (and the loss saves its input)
      assert(ckpt.saved < plain.saved / 2, `${label}: saved ${ckpt.saved} bytes, plain ${plain.saved}`);
      for (const r of [plain, ckpt]) [...r.grads, r.output].forEach((t) => t.dispose());
    }
  },
);

gpuTest("checkpoint() refuses a graph tensor the segment reads without it being an input", (gpu) => {
  ops.scope(() => {
    const x = ops.tensor(randomArray(6, 1), [2, 3], { gpu, requiresGrad: true });
    const hidden = ops.mul(x, 2); // has a graph
    assertThrows(
      () => ops.checkpoint((a) => ops.add(a, hidden), [ops.tensor(randomArray(6, 2), [2, 3], { gpu })]),
      Error,
      "not one of its inputs",
    );
    // under noGrad() there is no graph: the segment just runs
    const y = ops.noGrad(() => ops.checkpoint((a) => ops.add(a, hidden), [x]));
    assertEquals(y.node, undefined);
  });
});
