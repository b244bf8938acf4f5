/**
 * Fused attention forward and backward (GFLOP/s, fraction of the FMA f32 ceiling) side by side with the
 * unfused composition matmul → scale → softmax → matmul through voxssl's own ops, in the same run; f16
 * storage and the path without subgroups where the device allows; and applyRope (GB/s of the copy
 * ceiling).
 *
 * FLOPs use the algorithm's count for both engines (forward 4·B·H·L²·Dh, backward 10·B·H·L²·Dh: the
 * default fused backward executes 10, computing q·k and dO·v once; the 7-pass backward
 * (`fusedBackward: false`, timed in its own row) executes 14, recomputing them in its two kernels). The unfused backward is timed as
 * (forward + autograd backward) − forward. At Primus-M length the unfused scores
 * (B·H·L² floats, 6 GB at B 2, H 12, L 8000) exceed any binding, so the side-by-side pair runs on as many
 * heads as the device can hold a score matrix for, and that shape is printed in the rows.
 */
import type { AttentionKernelOptions } from "../kernels/mod.ts";
import { attentionFlops } from "../kernels/mod.ts";
import {
  applyRope,
  attentionBackward,
  attentionForward,
  backward,
  Generator,
  matmul,
  mul,
  ropeSinCos,
  scope,
  softmax,
  type Tensor,
} from "../core/tensor/mod.ts";
import { type BenchContext, type BenchSuite, measure } from "./harness.ts";

/** [B, H, L, Dh] */
type Shape = [number, number, number, number];

const SHAPES: Record<"lavapipe" | "gpu", Shape[]> = {
  lavapipe: [[1, 2, 384, 72], [1, 2, 384, 66], [1, 2, 384, 64], [1, 1, 384, 128]],
  gpu: [[2, 12, 8000, 72], [2, 12, 8000, 66], [2, 12, 8000, 64], [2, 6, 8000, 128]],
};

const REPEATS = { lavapipe: { warmup: 2, repeats: 9 }, gpu: { warmup: 2, repeats: 5 } };

function shapeText([b, h, l, dh]: Shape): string {
  return `B${b} H${h} L${l} Dh${dh}`;
}

/** Times fused forward and backward on one shape; returns the medians in ms. */
async function timeFused(
  ctx: BenchContext,
  shape: Shape,
  dtype: "f32" | "f16",
  kernel: AttentionKernelOptions,
  rng: Generator,
): Promise<{ forward: number; backward: number }> {
  const [q, k, v, g] = scope(() => [0, 1, 2, 3].map(() => rng.normal(shape, 0, 1, dtype)));
  const { out, lse } = attentionForward(q, k, v, {}, kernel);
  const options = REPEATS[ctx.preset];
  const forward = await measure(ctx.gpu, () => {
    scope(() => {
      attentionForward(q, k, v, {}, kernel);
    });
  }, options);
  const backwardTime = await measure(ctx.gpu, () => {
    scope(() => {
      attentionBackward(q, k, v, out, lse, g, {}, kernel);
    });
  }, options);
  [q, k, v, g, out, lse].forEach((t) => t.dispose());
  return { forward: forward.medianMs, backward: backwardTime.medianMs };
}

function unfused(q: Tensor, k: Tensor, v: Tensor): Tensor {
  const scores = mul(matmul(q, k, { transposeB: true }), 1 / Math.sqrt(q.shape[3]));
  return matmul(softmax(scores, -1), v);
}

/** Times the unfused composition's forward and (forward + backward) − forward. */
async function timeUnfused(ctx: BenchContext, shape: Shape, rng: Generator) {
  const [q, k, v, g] = scope(() => [0, 1, 2, 3].map(() => rng.normal(shape, 0, 1)));
  const options = REPEATS[ctx.preset];
  const forward = await measure(ctx.gpu, () => {
    scope(() => {
      unfused(q, k, v);
    });
  }, options);
  [q, k, v].forEach((t) => (t.requiresGrad = true));
  const both = await measure(ctx.gpu, () => {
    scope(() => {
      backward(unfused(q, k, v), g);
      [q, k, v].forEach((t) => {
        t.grad?.dispose();
        t.grad = undefined;
      });
    });
  }, options);
  [q, k, v, g].forEach((t) => t.dispose());
  return { forward: forward.medianMs, backward: Math.max(0, both.medianMs - forward.medianMs) };
}

/** The attention suite. */
export const attentionSuite: BenchSuite = {
  name: "attention",
  gpuSeconds: 20,
  async run(ctx) {
    const rng = new Generator(7, ctx.gpu);
    const ceiling = ctx.ceilings.fmaF32Gflops;
    const row = (name: string, shape: Shape, ms: number, pass: "forward" | "backward", note?: string) => {
      const flops = attentionFlops({
        heads: shape[0] * shape[1],
        lq: shape[2],
        lk: shape[2],
        headDim: shape[3],
        scale: 1,
        causal: false,
      }, pass);
      const gflops = flops / (ms * 1e6);
      ctx.report({
        suite: "attention",
        name: `${name} ${pass === "forward" ? "fwd" : "bwd"}`,
        shape: shapeText(shape),
        medianMs: ms,
        gflops,
        fractionOfCeiling: gflops / ceiling,
        note,
      });
    };
    for (const shape of SHAPES[ctx.preset]) {
      const fused = await timeFused(ctx, shape, "f32", {}, rng);
      row("fused f32", shape, fused.forward, "forward");
      row("fused f32", shape, fused.backward, "backward");
      if (ctx.gpu.hasF16) {
        const half = await timeFused(ctx, shape, "f16", {}, rng);
        row("fused f16", shape, half.forward, "forward", "f16 storage, f32 math");
        row("fused f16", shape, half.backward, "backward", "f16 storage, f32 math");
      }
      const seven = await timeFused(ctx, shape, "f32", { fusedBackward: false }, rng);
      row("fused f32 7-pass", shape, seven.backward, "backward", "dQ kernel recomputes q·k and dO·v");
      if (ctx.gpu.hasSubgroups) {
        const plain = await timeFused(ctx, shape, "f32", { subgroups: false }, rng);
        row("fused f32 no-subgroups", shape, plain.forward, "forward");
        row("fused f32 no-subgroups", shape, plain.backward, "backward");
      }
      // the unfused composition on as many heads as one score matrix binding can hold
      const [b, h, l, dh] = shape;
      const limit = Math.min(ctx.gpu.limits.maxStorageBufferBindingSize, 1 << 30);
      const heads = Math.min(b * h, Math.floor(limit / (l * l * 4)));
      if (heads < 1) {
        ctx.log(`  unfused ${shapeText(shape)}: one ${l}×${l} score matrix exceeds a binding; skipped`);
        continue;
      }
      const part: Shape = [1, heads, l, dh];
      const same = heads === b * h ? fused : await timeFused(ctx, part, "f32", {}, rng);
      const plain = await timeUnfused(ctx, part, rng);
      for (const pass of ["forward", "backward"] as const) {
        row(
          "unfused f32",
          part,
          plain[pass],
          pass,
          `fused/unfused time ×${(same[pass] / plain[pass]).toFixed(2)} on this shape`,
        );
      }
    }
    // RoPE on q (memory bound): bytes = read x + write out (+ the table, read once per head)
    const [b, h, l, dh] = SHAPES[ctx.preset][0];
    const grid = ctx.preset === "gpu" ? [20, 20, 20] : [8, 8, 6];
    const x = rng.normal([b, h, l, dh]);
    const sinCos = ropeSinCos(grid, dh, { gpu: ctx.gpu });
    const t = await measure(ctx.gpu, () => {
      scope(() => {
        applyRope(x, sinCos);
      });
    }, REPEATS[ctx.preset]);
    const gbps = (2 * x.byteLength + sinCos.byteLength) / (t.medianMs * 1e6);
    ctx.report({
      suite: "attention",
      name: "applyRope f32",
      shape: `B${b} H${h} grid ${grid.join("×")} Dh${dh}`,
      medianMs: t.medianMs,
      gbps,
      fractionOfCeiling: gbps / ctx.ceilings.copyGBps,
    });
    x.dispose();
    sinCos.dispose();
  },
};
