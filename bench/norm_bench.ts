/**
 * Normalization, activation, pooling, resampling and loss kernels: GB/s and the fraction of the copy
 * ceiling, at ResEnc-L shapes (GPU preset: batch 2, 32 channels of 160³, …) and reduced shapes (lavapipe
 * preset, the whole suite in under a minute on 2 cores).
 *
 * Bytes are the traffic the kernels really move (every pass over a tensor counted: e.g. instance norm
 * forward reads x twice — partial moments, then apply, which merges them — and writes y once: 3 × 4
 * bytes per voxel), so the fraction of the copy ceiling says how close each pass runs to the memory
 * system; the note gives the kernel launches, the tensor passes of that traffic and the ideal
 * one-read-one-write traffic. Backward rows time the op's backward rule alone (called directly on a
 * recorded graph), without the forward.
 * `lerp` (the mask-token blend of a masked ViT) runs beside the five-op composition it replaces.
 * The fused ResEnc path (instance norm + residual + LeakyReLU) runs side by side with the unfused
 * composition (instanceNorm → add → leakyRelu) in the same run, repeats alternating; `peer` holds the
 * unfused time.
 */
import type { Gpu } from "../core/gpu/mod.ts";
import * as ops from "../core/tensor/mod.ts";
import { poolScratch, runNormApply, runNormStats, runRandom } from "../kernels/mod.ts";
import { type BenchContext, type BenchSuite, measure } from "./harness.ts";

type Shape = number[];

const numel = (s: Shape) => s.reduce((a, b) => a * b, 1);

/** Uniform random f32 tensor (runRandom splits tensors above one binding itself). */
function randomTensor(gpu: Gpu, shape: Shape, seed: number, lo = -1, hi = 1): ops.Tensor {
  const t = ops.empty(shape, { gpu });
  runRandom(gpu, "uniform", "f32", t.binding, t.size, seed, 0, lo, hi);
  return t;
}

/** Integer labels in [0, c) (a random tensor cast on the host would be too big: drawn per chunk). */
function labelTensor(gpu: Gpu, shape: Shape, c: number): ops.Tensor {
  const values = new Int32Array(numel(shape));
  for (let i = 0; i < values.length; i++) values[i] = (i * 2654435761) % c;
  return ops.tensor(values, shape, { dtype: "i32", gpu });
}

interface Shapes {
  norm: Shape[];
  pool: Shape[];
  resample: [Shape, Shape][];
  loss: Shape;
  classes: Shape;
  act: Shape;
  /** Tokens [B, N, D] of a mask-token blend (Primus-M at 160³: 8000 tokens of 864). */
  blend: Shape;
}

const SHAPES: Record<"lavapipe" | "gpu", Shapes> = {
  lavapipe: {
    norm: [[2, 8, 32, 32, 32], [2, 32, 16, 16, 16]],
    pool: [[2, 8, 32, 32, 32]],
    resample: [[[2, 8, 16, 16, 16], [32, 32, 32]], [[1, 96, 20, 20, 20], [12, 12, 12]]],
    loss: [2, 1, 48, 48, 48],
    classes: [2, 5, 32, 32, 32],
    act: [2, 8, 32, 32, 32],
    blend: [2, 512, 864],
  },
  gpu: {
    norm: [[2, 32, 160, 160, 160], [2, 64, 80, 80, 80], [2, 128, 40, 40, 40], [2, 320, 10, 10, 10]],
    pool: [[2, 32, 160, 160, 160]],
    resample: [[[2, 32, 80, 80, 80], [160, 160, 160]], [[1, 864, 20, 20, 20], [12, 12, 12]]],
    loss: [2, 1, 160, 160, 160],
    classes: [2, 5, 160, 160, 160],
    act: [2, 32, 160, 160, 160],
    blend: [2, 8000, 864],
  },
};

/**
 * Times `record` and reports it with `bytes` of traffic. With `peer`, the two are timed alternately
 * (repeat by repeat) so that load changes on a shared machine hit both alike; `peer` holds its median.
 */
async function row(
  ctx: BenchContext,
  name: string,
  shape: Shape,
  bytes: number,
  record: () => void,
  note?: string,
  peer?: { name: string; record: () => void },
): Promise<number> {
  const repeats = ctx.preset === "gpu" ? 10 : 7;
  let medianMs: number;
  let peerRow: { name: string; medianMs: number } | undefined;
  if (peer) {
    const ours: number[] = [];
    const theirs: number[] = [];
    await measure(ctx.gpu, record, { warmup: 1, repeats: 1 });
    await measure(ctx.gpu, peer.record, { warmup: 1, repeats: 1 });
    for (let i = 0; i < repeats; i++) {
      ours.push((await ctx.gpu.time(record)).ms);
      theirs.push((await ctx.gpu.time(peer.record)).ms);
    }
    medianMs = median(ours);
    peerRow = { name: peer.name, medianMs: median(theirs) };
  } else {
    medianMs = (await measure(ctx.gpu, record, { warmup: 1, repeats })).medianMs;
  }
  const m = { medianMs };
  const gbps = bytes / (m.medianMs * 1e6);
  ctx.report({
    suite: "norm",
    name,
    shape: shape.join("×"),
    medianMs: m.medianMs,
    gbps,
    fractionOfCeiling: gbps / ctx.ceilings.copyGBps,
    peer: peerRow,
    note,
  });
  return m.medianMs;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** A recorder that keeps only the latest outputs alive (disposing the previous ones). */
function keeping(fn: () => readonly (ops.Tensor | undefined)[]): () => void {
  let last: readonly (ops.Tensor | undefined)[] = [];
  return () => {
    for (const t of last) t?.dispose();
    last = ops.noGrad(() => fn());
  };
}

/** The backward rule of the op that produced `y`, called directly (the graph stays intact). */
function backwardOf(y: ops.Tensor, g: ops.Tensor): () => void {
  const node = y.node!;
  return keeping(() => node.backward(g));
}

/** Releases the graph behind `y` (and what it saved) by running autograd over it once. */
function release(y: ops.Tensor, g: ops.Tensor): void {
  ops.backward(y, g);
  y.dispose();
}

/**
 * Instance norm forward with the separate merge pass (moments, merge into statistics, apply: the kernels
 * channels-first layer norm still uses), the peer of the 2-launch op; writes into buffers of its own.
 */
function threeLaunchForward(
  gpu: Gpu,
  x: ops.Tensor,
  w: ops.Tensor,
  b: ops.Tensor,
): { record: () => void; dispose: () => void } {
  const [n, c] = x.shape;
  const s = x.size / (n * c);
  const y = ops.empty(x.shape, { gpu });
  const stats = ops.empty([n * c, 2], { gpu });
  const geo = { kind: "rows", rows: n * c, len: s } as const;
  const types = { x: "f32", weight: "f32", bias: "f32" } as const;
  const record = () => {
    runNormStats(gpu, "f32", geo, x.binding, stats.binding, 1e-5, poolScratch(gpu));
    runNormApply(gpu, types, geo, { adiv: s, amod: c }, {
      x: x.binding,
      stats: stats.binding,
      weight: w.binding,
      bias: b.binding,
      y: y.binding,
    });
  };
  return { record, dispose: () => [y, stats].forEach((t) => t.dispose()) };
}

async function normRows(ctx: BenchContext, gpu: Gpu, shape: Shape): Promise<void> {
  const n = numel(shape);
  const c = shape[1];
  const b4 = 4 * n;
  const x = randomTensor(gpu, shape, 1, -2, 3);
  x.requiresGrad = true;
  const residual = randomTensor(gpu, shape, 2);
  residual.requiresGrad = true;
  const g = randomTensor(gpu, shape, 3);
  const w = ops.tensor(Float32Array.from({ length: c }, (_, i) => 1 + i / c), [c], {
    gpu,
    requiresGrad: true,
  });
  const b = ops.tensor(Float32Array.from({ length: c }, (_, i) => i / c - 0.5), [c], {
    gpu,
    requiresGrad: true,
  });

  const three = threeLaunchForward(gpu, x, w, b);
  await row(
    ctx,
    "instanceNorm fwd",
    shape,
    3 * b4,
    keeping(() => [ops.instanceNorm(x, w, b)]),
    "2 launches (was 3); traffic 3 tensor passes (ideal 2); peer: the 3-launch kernels",
    { name: "3 launches", record: three.record },
  );
  three.dispose();
  const y = ops.instanceNorm(x, w, b);
  await row(
    ctx,
    "instanceNorm bwd",
    shape,
    5 * b4,
    backwardOf(y, g),
    "3 launches (was 5); traffic 5 tensor passes (ideal 3)",
  );
  release(y, g);

  // fused ResEnc tail vs the unfused composition, forward
  const unfusedFwd = keeping(() => {
    const z = ops.instanceNorm(x, w, b);
    const s = ops.add(z, residual);
    const out = ops.leakyRelu(s, 0.01);
    z.dispose();
    s.dispose();
    return [out];
  });
  await row(
    ctx,
    "instanceNormAct+res fwd",
    shape,
    4 * b4,
    keeping(() => [ops.instanceNormAct(x, w, b, { residual, slope: 0.01 })]),
    `2 launches (was 3); traffic 4 tensor passes (ideal 3); unfused: 8`,
    { name: "unfused", record: unfusedFwd },
  );
  // backward: fused rule vs the chain of the three unfused rules
  const fused = ops.instanceNormAct(x, w, b, { residual, slope: 0.01 });
  const z = ops.instanceNorm(x, w, b);
  const s = ops.add(z, residual);
  const out = ops.leakyRelu(s, 0.01);
  const unfusedBwd = keeping(() => {
    const [gs] = out.node!.backward(g);
    const [gz, gr] = s.node!.backward(gs!);
    const [gx, gw, gb] = z.node!.backward(gz!);
    gs!.dispose();
    return [gx, gw, gb, gr];
  });
  await row(
    ctx,
    "instanceNormAct+res bwd",
    shape,
    7 * b4,
    backwardOf(fused, g),
    "3 launches (was 5); traffic 7 tensor passes (ideal 5); unfused: 8",
    { name: "unfused", record: unfusedBwd },
  );
  release(fused, g);
  release(out, g);
  for (const t of [z, s, x, residual, g, w, b]) t.dispose();
}

/** The norm suite. */
export const normSuite: BenchSuite = {
  name: "norm",
  gpuSeconds: 20,
  async run(ctx) {
    const gpu = ctx.gpu;
    const shapes = SHAPES[ctx.preset];
    for (const shape of shapes.norm) await normRows(ctx, gpu, shape);

    {
      const shape = shapes.norm[0];
      const [nb, c, ...sp] = shape;
      const x = randomTensor(gpu, [nb, c, sp[0] * sp[1], sp[2]], 4);
      const w = ops.ones([c], { gpu });
      await row(
        ctx,
        "layerNormChannelsFirst fwd",
        shape,
        3 * 4 * x.size,
        keeping(() => [ops.layerNormChannelsFirst(x, w, w)]),
      );
      const t = randomTensor(gpu, [numel(shape) / 864 | 0, 864], 5);
      const wt = ops.ones([864], { gpu });
      await row(
        ctx,
        "layerNorm(864) fwd",
        [...t.shape],
        3 * 4 * t.size,
        keeping(() => [ops.layerNorm(t, 864, wt, wt)]),
      );
      for (const v of [x, w, t, wt]) v.dispose();
    }

    {
      const shape = shapes.act;
      const x = randomTensor(gpu, shape, 6, -3, 3);
      x.requiresGrad = true;
      const g = randomTensor(gpu, shape, 7);
      const b4 = 4 * x.size;
      await row(ctx, "gelu fwd", shape, 2 * b4, keeping(() => [ops.gelu(x)]));
      const y = ops.gelu(x);
      await row(ctx, "gelu bwd", shape, 3 * b4, backwardOf(y, g));
      release(y, g);
      const rng = new ops.Generator(1);
      await row(
        ctx,
        "dropout fwd",
        shape,
        2 * b4,
        keeping(() => [ops.dropout(x, 0.2, rng)]),
        "mask drawn in-kernel",
      );
      for (const t of [x, g]) t.dispose();
    }

    {
      // the mask-token blend of a masked ViT: lerp against the five-op composition it replaces
      const shape = shapes.blend;
      const [nb, n, d] = shape;
      const x = randomTensor(gpu, shape, 10);
      const m = ops.cast(ops.gt(randomTensor(gpu, [nb, n, 1], 11), ops.zeros([], { gpu })), "f32");
      const t = randomTensor(gpu, [d], 12);
      await row(
        ctx,
        "lerp (mask-token blend) fwd",
        shape,
        4 * (2 * x.size + m.size + d),
        keeping(() => [ops.lerp(x, t, m)]),
        "1 launch; peer: add(mul(x, 1 − m), mul(m, token)), 5 launches",
        {
          name: "5-op composition",
          record: keeping(() => [ops.add(ops.mul(x, ops.add(ops.mul(m, -1), 1)), ops.mul(m, t))]),
        },
      );
      for (const v of [x, m, t]) v.dispose();
    }

    for (const shape of shapes.pool) {
      const x = randomTensor(gpu, shape, 8);
      x.requiresGrad = true;
      const n = x.size;
      const out = n / 8;
      const g = randomTensor(gpu, [shape[0], shape[1], ...shape.slice(2).map((d) => Math.floor(d / 2))], 9);
      await row(ctx, "avgPool3d(2) fwd", shape, 4 * (n + out), keeping(() => [ops.avgPool3d(x, 2)]));
      const ya = ops.avgPool3d(x, 2);
      await row(ctx, "avgPool3d(2) bwd", shape, 4 * (n + out), backwardOf(ya, g));
      await row(
        ctx,
        "maxPool3d(2) fwd",
        shape,
        4 * (n + 2 * out),
        keeping(() => [ops.maxPool3d(x, 2)]),
        "writes argmax",
      );
      const ym = ops.maxPool3d(x, 2);
      await row(ctx, "maxPool3d(2) bwd", shape, 4 * (n + 2 * out), backwardOf(ym, g));
      await row(ctx, "globalAvgPool fwd", shape, 4 * n, keeping(() => [ops.globalAvgPool(x)]));
      release(ya, g);
      release(ym, g);
      for (const t of [x, g]) t.dispose();
    }

    for (const [shape, size] of shapes.resample) {
      const x = randomTensor(gpu, shape, 10);
      x.requiresGrad = true;
      const outShape = [shape[0], shape[1], ...size];
      const g = randomTensor(gpu, outShape, 11);
      const bytes = 4 * (x.size + numel(outShape));
      const opts = { size, mode: "trilinear" as const };
      await row(
        ctx,
        "interpolate trilinear fwd",
        shape,
        bytes,
        keeping(() => [ops.interpolate(x, opts)]),
        `→ ${size.join("×")}`,
      );
      const y = ops.interpolate(x, opts);
      await row(ctx, "interpolate trilinear bwd", shape, bytes, backwardOf(y, g), `→ ${size.join("×")}`);
      release(y, g);
      for (const t of [x, g]) t.dispose();
    }

    {
      const shape = shapes.loss;
      const p = randomTensor(gpu, shape, 12);
      p.requiresGrad = true;
      const t = randomTensor(gpu, shape, 13);
      const mask = randomTensor(gpu, [shape[0], ...shape.slice(2)], 14, 0, 1);
      const b4 = 4 * p.size;
      const one = ops.ones([], { gpu });
      await row(ctx, "mseLoss masked fwd", shape, 3 * b4, keeping(() => [ops.mseLoss(p, t, { mask })]));
      const l = ops.mseLoss(p, t, { mask });
      await row(ctx, "mseLoss masked bwd", shape, 4 * b4, backwardOf(l, one));
      release(l, one);
      for (const v of [p, t, mask]) v.dispose();

      const cs = shapes.classes;
      const logits = randomTensor(gpu, cs, 15, -3, 3);
      logits.requiresGrad = true;
      const labels = labelTensor(gpu, [cs[0], ...cs.slice(2)], cs[1]);
      const lb = 4 * logits.size;
      const vox = 4 * labels.size;
      await row(ctx, "crossEntropy fwd", cs, lb + 5 * vox, keeping(() => [ops.crossEntropy(logits, labels)]));
      const ce = ops.crossEntropy(logits, labels);
      await row(ctx, "crossEntropy bwd", cs, 2 * lb + 3 * vox, backwardOf(ce, one));
      const probs = randomTensor(gpu, cs, 16, 0, 1);
      probs.requiresGrad = true;
      await row(
        ctx,
        "softDiceLoss fwd",
        cs,
        lb + vox * cs[1],
        keeping(() => [ops.softDiceLoss(probs, labels)]),
      );
      const dice = ops.softDiceLoss(probs, labels);
      await row(ctx, "softDiceLoss bwd", cs, lb + vox * cs[1], backwardOf(dice, one));
      release(ce, one);
      release(dice, one);
      for (const v of [logits, labels, probs, one]) v.dispose();
    }
  },
};
