/**
 * 3D convolution: forward, backward-data and backward-weight GFLOP/s against the FMA ceiling at
 * ResEnc-L layer shapes ("gpu" preset) or reduced shapes ("lavapipe" preset, the whole suite in about a
 * minute on 2 cores), side by side with TF.js's WebGPU backend on the same adapter: its `conv3d`, and the
 * kernels its Conv3D gradient runs under `tf.grad` (Conv3DBackpropInputV2, Conv3DBackpropFilterV2), called
 * directly so that the forward pass tf.grad would also run is not counted. Transposed convolutions
 * (decoder upsampling) use `conv3dTranspose` and the gradients of its kernel.
 *
 * Timing: the GFLOP/s column is voxssl's kernel time (GPU timestamps when the adapter has them). The
 * side-by-side columns are both wall-clock (iterations queued, then a 4-byte readback), so the ratio
 * compares like with like. TF.js uses NDHWC: its tensors are created in that layout once, outside the
 * timed region. FLOPs = 2 · N · Cout · out voxels · Cin · kernel voxels for each of the three passes.
 * TF.js has only 'same'/'valid' padding: padding 1 maps to 'same' (same output size and work; TF puts an
 * odd padding at the high end), 0 to 'valid'.
 *
 * "tuned" rows: the same pass with tiles and split-K chosen by the autotuner (bench/tuned.ts), timed in the
 * same run as the reasoned row above it (the note has both and the tuner's choices).
 *
 * f16 rows (devices with shader-f16): the same three passes on f16 storage (f16 loads and stores, f32
 * arithmetic and accumulation, as autocast runs them), timed in the same run, with the f32 time of the
 * same pass in the note. Their "% of ceiling" is of the f32 FMA ceiling, the arithmetic they do.
 */
import type { Gpu } from "../core/gpu/mod.ts";
import { cast, Generator, scope, type Tensor } from "../core/tensor/mod.ts";
import {
  type Conv3dGeometry,
  type Conv3dTriple,
  convMacs,
  convOutputSize,
  type ConvType,
  runConv3dBackwardData,
  runConv3dBackwardWeight,
  runConv3dForward,
} from "../kernels/mod.ts";
import { type BenchContext, type BenchSuite, measure, type MeasureOptions, measureWall } from "./harness.ts";
import { loadTfjs, type Tfjs } from "./peers/tfjs.ts";
import { measureTuned } from "./tuned.ts";

/** One benchmark layer: a convolution, or a transposed convolution (decoder upsampling). */
interface Layer {
  label: string;
  batch: number;
  cin: number;
  cout: number;
  size: number;
  kernel: number;
  stride: number;
  padding: number;
  transposed?: boolean;
}

const LAYERS: Record<"lavapipe" | "gpu", Layer[]> = {
  lavapipe: [
    {
      label: "stage-1 conv (reduced)",
      batch: 2,
      cin: 32,
      cout: 32,
      size: 16,
      kernel: 3,
      stride: 1,
      padding: 1,
    },
    {
      label: "stage-2 conv (reduced)",
      batch: 2,
      cin: 64,
      cout: 64,
      size: 8,
      kernel: 3,
      stride: 1,
      padding: 1,
    },
    {
      label: "downsampling (reduced)",
      batch: 2,
      cin: 32,
      cout: 64,
      size: 16,
      kernel: 3,
      stride: 2,
      padding: 1,
    },
    {
      label: "decoder 2× up (reduced)",
      batch: 2,
      cin: 64,
      cout: 32,
      size: 8,
      kernel: 2,
      stride: 2,
      padding: 0,
      transposed: true,
    },
  ],
  gpu: [
    { label: "stage-1 conv", batch: 2, cin: 32, cout: 32, size: 160, kernel: 3, stride: 1, padding: 1 },
    { label: "stage-2 conv", batch: 2, cin: 64, cout: 64, size: 80, kernel: 3, stride: 1, padding: 1 },
    { label: "stage-3 conv", batch: 2, cin: 128, cout: 128, size: 40, kernel: 3, stride: 1, padding: 1 },
    { label: "stage-5 conv", batch: 2, cin: 320, cout: 320, size: 10, kernel: 3, stride: 1, padding: 1 },
    { label: "downsampling 1→2", batch: 2, cin: 32, cout: 64, size: 160, kernel: 3, stride: 2, padding: 1 },
    { label: "downsampling 5→6", batch: 2, cin: 320, cout: 320, size: 10, kernel: 3, stride: 2, padding: 1 },
    {
      label: "decoder 2× up 2→1",
      batch: 2,
      cin: 64,
      cout: 32,
      size: 80,
      kernel: 2,
      stride: 2,
      padding: 0,
      transposed: true,
    },
    {
      label: "decoder 2× up 6→5",
      batch: 2,
      cin: 320,
      cout: 320,
      size: 5,
      kernel: 2,
      stride: 2,
      padding: 0,
      transposed: true,
    },
  ],
};

const t3 = (v: number): Conv3dTriple => [v, v, v];

/** The convolution a layer runs (for a transposed layer: the convolution whose input gradient it is). */
function geometry(l: Layer): Conv3dGeometry {
  if (!l.transposed) {
    const out = convOutputSize(l.size, l.kernel, l.stride, l.padding);
    return {
      batch: l.batch,
      cin: l.cin,
      cout: l.cout,
      in: t3(l.size),
      out: t3(out),
      kernel: t3(l.kernel),
      stride: t3(l.stride),
      padding: t3(l.padding),
    };
  }
  const up = (l.size - 1) * l.stride - 2 * l.padding + l.kernel;
  return {
    batch: l.batch,
    cin: l.cout,
    cout: l.cin,
    in: t3(up),
    out: t3(l.size),
    kernel: t3(l.kernel),
    stride: t3(l.stride),
    padding: t3(l.padding),
  };
}

/** Wall-clock time per run of `run`, ending each batch with a 4-byte readback of `probe`. */
function wallOf(
  gpu: Gpu,
  run: () => void,
  probe: () => Tensor,
  options: MeasureOptions & { inner?: number },
) {
  return measureWall(async (iterations) => {
    for (let i = 0; i < iterations; i++) run();
    await gpu.read(probe().buffer, 0, 4);
  }, options);
}

/** TF.js wall-clock time per run of `run` (which returns its result), ending with a 1-element readback. */
function tfWallOf(
  tf: Tfjs,
  run: () => ReturnType<Tfjs["conv3d"]>,
  options: MeasureOptions & { inner?: number },
) {
  return measureWall(async (iterations) => {
    let out = run();
    for (let i = 1; i < iterations; i++) {
      out.dispose();
      out = run();
    }
    const probe = tf.slice(out, [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]);
    await probe.data();
    probe.dispose();
    out.dispose();
  }, options);
}

async function benchLayer(ctx: BenchContext, tf: Tfjs, l: Layer): Promise<void> {
  const g = geometry(l);
  const rng = new Generator(7);
  // conv geometry tensors (NCDHW): x = conv input, y = conv output, w = [cout, cin, k³]
  const x = rng.uniform([g.batch, g.cin, ...g.in], -1, 1);
  const dy = rng.uniform([g.batch, g.cout, ...g.out], -1, 1);
  const w = rng.uniform([g.cout, g.cin, ...g.kernel], -0.1, 0.1);
  const y = rng.uniform([g.batch, g.cout, ...g.out], 0, 0);
  const dx = rng.uniform([g.batch, g.cin, ...g.in], 0, 0);
  const dw = rng.uniform([g.cout, g.cin, ...g.kernel], 0, 0);
  // the same in TF.js's layout: x NDHWC, filter [k, k, k, cin, cout]
  const tx = tf.randomUniform([g.batch, ...g.in, g.cin], -1, 1);
  const tdy = tf.randomUniform([g.batch, ...g.out, g.cout], -1, 1);
  const tw = tf.randomUniform([...g.kernel, g.cin, g.cout], -0.1, 0.1);
  const pad = l.padding === 0 ? "valid" : "same";
  const strides = t3(l.stride);
  const inputShape = [g.batch, ...g.in, g.cin] as [number, number, number, number, number];
  const filterShape = [...g.kernel, g.cin, g.cout] as [number, number, number, number, number];
  const passesOf = (type: ConvType, t: Record<"x" | "dy" | "w" | "y" | "dx" | "dw", Tensor>) => ({
    forward: () => runConv3dForward(ctx.gpu, g, { x: t.x.binding, w: t.w.binding, y: t.y.binding }, type),
    data: () =>
      runConv3dBackwardData(ctx.gpu, g, { dy: t.dy.binding, w: t.w.binding, dx: t.dx.binding }, type),
    weight: () =>
      runConv3dBackwardWeight(ctx.gpu, g, { x: t.x.binding, dy: t.dy.binding, dw: t.dw.binding }, type),
  });
  const conv = passesOf("f32", { x, dy, w, y, dx, dw });
  const peer = {
    forward: () => tf.conv3d(tx as never, tw as never, [...strides] as [number, number, number], pad),
    data: () =>
      tf.engine().runKernel("Conv3DBackpropInputV2", { dy: tdy, filter: tw }, { strides, pad, inputShape }),
    weight: () =>
      tf.engine().runKernel("Conv3DBackpropFilterV2", { x: tx, dy: tdy }, { strides, pad, filterShape }),
  };
  // a transposed convolution's passes are the convolution's, in another order
  const passes: [string, () => void, () => Tensor, () => unknown][] = l.transposed
    ? [
      ["forward", conv.data, () => dx, peer.data],
      ["backward-data", conv.forward, () => y, peer.forward],
      ["backward-weight", conv.weight, () => dw, peer.weight],
    ]
    : [
      ["forward", conv.forward, () => y, peer.forward],
      ["backward-data", conv.data, () => dx, peer.data],
      ["backward-weight", conv.weight, () => dw, peer.weight],
    ];
  const lavapipe = ctx.preset === "lavapipe";
  const timing = lavapipe ? { warmup: 1, repeats: 3 } : { warmup: 2, repeats: 5 };
  const wall = lavapipe ? { warmup: 1, repeats: 2, inner: 2 } : { warmup: 1, repeats: 3, inner: 3 };
  const flops = 2 * convMacs(g);
  const shape =
    `${l.batch}×${l.transposed ? l.cin : g.cin}×${l.size}³ → ${l.transposed ? l.cout : g.cout}, ` +
    `k${l.kernel} s${l.stride}${l.transposed ? " (transposed)" : ""}`;
  const f32Ms = new Map<string, number>();
  for (const [pass, run, out, peerRun] of passes) {
    const gpuTime = await measure(ctx.gpu, run, timing);
    f32Ms.set(pass, gpuTime.medianMs);
    const ours = await wallOf(ctx.gpu, run, out, wall);
    const theirs = await tfWallOf(tf, peerRun as () => ReturnType<Tfjs["conv3d"]>, wall);
    const gflops = flops / (gpuTime.medianMs * 1e6);
    ctx.report({
      suite: "conv3d",
      name: `${l.transposed ? "convT " : ""}${pass}`,
      shape,
      medianMs: gpuTime.medianMs,
      gflops,
      fractionOfCeiling: gflops / ctx.ceilings.fmaF32Gflops,
      note:
        `${l.label}; wall: voxssl ${ours.medianMs.toFixed(2)} ms, TF.js ${theirs.medianMs.toFixed(2)} ms, ` +
        `TF.js/voxssl ×${(theirs.medianMs / ours.medianMs).toFixed(2)}`,
    });
    // the same pass with tiles chosen by measurement (autotuner), against the reasoned ones above
    const tuned = await measureTuned(ctx.gpu, run, timing);
    const tunedGflops = flops / (tuned.medianMs * 1e6);
    ctx.report({
      suite: "conv3d",
      name: `${l.transposed ? "convT " : ""}${pass} tuned`,
      shape,
      medianMs: tuned.medianMs,
      gflops: tunedGflops,
      fractionOfCeiling: tunedGflops / ctx.ceilings.fmaF32Gflops,
      note: `${l.label}; autotuned: ${tuned.choices.join(", ")}; reasoned ` +
        `${gpuTime.medianMs.toFixed(2)} ms, reasoned/tuned ×${
          (gpuTime.medianMs / tuned.medianMs).toFixed(2)
        }`,
    });
  }
  for (const t of [tx, tdy, tw]) t.dispose();
  if (ctx.gpu.hasF16) {
    const half = scope(() => {
      const [x16, dy16, w16, y16, dx16, dw16] = [x, dy, w, y, dx, dw].map((t) => cast(t, "f16"));
      return { x: x16, dy: dy16, w: w16, y: y16, dx: dx16, dw: dw16 };
    });
    const conv16 = passesOf("f16", half);
    const order: [string, () => void][] = l.transposed
      ? [["forward", conv16.data], ["backward-data", conv16.forward], ["backward-weight", conv16.weight]]
      : [["forward", conv16.forward], ["backward-data", conv16.data], ["backward-weight", conv16.weight]];
    for (const [pass, run] of order) {
      const gpuTime = await measure(ctx.gpu, run, timing);
      const gflops = flops / (gpuTime.medianMs * 1e6);
      const f32 = f32Ms.get(pass)!;
      ctx.report({
        suite: "conv3d",
        name: `${l.transposed ? "convT " : ""}${pass} f16`,
        shape,
        medianMs: gpuTime.medianMs,
        gflops,
        fractionOfCeiling: gflops / ctx.ceilings.fmaF32Gflops,
        note: `${l.label}; f16 storage, f32 arithmetic; f32 ${f32.toFixed(2)} ms in this run, f32/f16 ` +
          `×${(f32 / gpuTime.medianMs).toFixed(2)}`,
      });
    }
    Object.values(half).forEach((t) => t.dispose());
  }
  for (const t of [x, dy, w, y, dx, dw]) t.dispose();
}

/** The convolution suite. */
export const convSuite: BenchSuite = {
  name: "conv3d",
  gpuSeconds: 30,
  async run(ctx) {
    const tf = await loadTfjs();
    for (const layer of LAYERS[ctx.preset]) await benchLayer(ctx, tf, layer);
  },
};
