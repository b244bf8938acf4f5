/**
 * matmul GFLOP/s against the FMA ceiling, side by side with TF.js's WebGPU matMul on the same adapter.
 * The side-by-side columns are both wall-clock (iterations queued, then a one-element readback), so the
 * ratio compares like with like; the GFLOP/s column uses GPU timestamps when available. The "f32 tuned" row
 * is the same matmul with the tile the autotuner measured fastest (bench/tuned.ts), timed in the same run.
 */
import type { Tensor } from "../core/tensor/mod.ts";
import { Generator, matmul, scope, slice } from "../core/tensor/mod.ts";
import { matmulFlops } from "../kernels/mod.ts";
import { type BenchSuite, measure, measureWall } from "./harness.ts";
import { loadTfjs } from "./peers/tfjs.ts";
import { measureTuned } from "./tuned.ts";

const SHAPES = {
  lavapipe: [[1, 256, 256, 256], [1, 333, 200, 301], [4, 128, 72, 128]],
  gpu: [[1, 2048, 2048, 2048], [1, 4096, 4096, 4096], [1, 8000, 2592, 864], [12, 1000, 1000, 72]],
};

/** The matmul suite. */
export const matmulSuite: BenchSuite = {
  name: "matmul",
  gpuSeconds: 20,
  async run(ctx) {
    const tf = await loadTfjs();
    const rng = new Generator(1);
    for (const [batch, m, n, k] of SHAPES[ctx.preset]) {
      const a = rng.uniform([batch, m, k], -1, 1);
      const b = rng.uniform([batch, k, n], -1, 1);
      let out: Tensor | undefined;
      const run = () => {
        out?.dispose();
        out = matmul(a, b);
      };
      const gpuTime = await measure(ctx.gpu, run);
      const ours = await measureWall(async (iterations) => {
        for (let i = 0; i < iterations; i++) run();
        const probe = scope(() => slice(out!, [0, 0, 0], [1, 1, 1]));
        await probe.toArray();
        probe.dispose();
      });
      const ta = tf.randomUniform([batch, m, k], -1, 1);
      const tb = tf.randomUniform([batch, k, n], -1, 1);
      const peer = await measureWall(async (iterations) => {
        let c = tf.matMul(ta, tb);
        for (let i = 1; i < iterations; i++) {
          c.dispose();
          c = tf.matMul(ta, tb);
        }
        const probe = tf.slice(c, [0, 0, 0], [1, 1, 1]);
        await probe.data();
        probe.dispose();
        c.dispose();
      });
      ta.dispose();
      tb.dispose();
      const flops = matmulFlops({ batch, m, n, k });
      const gflops = flops / (gpuTime.medianMs * 1e6);
      ctx.report({
        suite: "matmul",
        name: "f32",
        shape: `${batch}×${m}×${k} · ${k}×${n}`,
        medianMs: gpuTime.medianMs,
        gflops,
        fractionOfCeiling: gflops / ctx.ceilings.fmaF32Gflops,
        note: `wall: voxssl ${ours.medianMs.toFixed(2)} ms, TF.js ${peer.medianMs.toFixed(2)} ms, ` +
          `TF.js/voxssl ×${(peer.medianMs / ours.medianMs).toFixed(2)}`,
      });
      const tuned = await measureTuned(ctx.gpu, run, {});
      const tunedGflops = flops / (tuned.medianMs * 1e6);
      ctx.report({
        suite: "matmul",
        name: "f32 tuned",
        shape: `${batch}×${m}×${k} · ${k}×${n}`,
        medianMs: tuned.medianMs,
        gflops: tunedGflops,
        fractionOfCeiling: tunedGflops / ctx.ceilings.fmaF32Gflops,
        note: `autotuned: ${tuned.choices.join(", ")}; reasoned ${gpuTime.medianMs.toFixed(2)} ms, ` +
          `reasoned/tuned ×${(gpuTime.medianMs / tuned.medianMs).toFixed(2)}`,
      });
      if (ctx.gpu.hasF16) {
        const [a16, b16] = scope(
          () => [rng.uniform([batch, m, k], -1, 1, "f16"), rng.uniform([batch, k, n], -1, 1, "f16")],
        );
        let out16: Tensor | undefined;
        const t16 = await measure(ctx.gpu, () => {
          out16?.dispose();
          out16 = matmul(a16, b16);
        });
        const g16 = flops / (t16.medianMs * 1e6);
        ctx.report({
          suite: "matmul",
          name: "f16 storage",
          shape: `${batch}×${m}×${k} · ${k}×${n}`,
          medianMs: t16.medianMs,
          gflops: g16,
          fractionOfCeiling: g16 / ctx.ceilings.fmaF32Gflops,
          note: "f16 loads, f32 math",
        });
        out16?.dispose();
        a16.dispose();
        b16.dispose();
      }
      out?.dispose();
      a.dispose();
      b.dispose();
    }
  },
};
