/**
 * Every tile and split-K candidate the autotuner may choose computes what the float64 references
 * compute: the three convolution passes (core/tensor/reference/conv.ts) and the matmul (a float64 loop
 * here) run once per candidate on lavapipe, each candidate forced through the tuner. Small shapes, but
 * with a reduction long enough (K ≥ 512) for the split-K candidates to split.
 */
import { assert } from "../assert.ts";
import type { Gpu } from "../../core/gpu/mod.ts";
import * as ops from "../../core/tensor/mod.ts";
import * as R from "../../core/tensor/reference/conv.ts";
import {
  attachAutotuner,
  Autotuner,
  type Conv3dGeometry,
  detachAutotuner,
  runConv3dBackwardData,
  runConv3dBackwardWeight,
  runConv3dForward,
  runMatmul,
} from "../../kernels/mod.ts";
import { assertClose, gpuTest, randomArray } from "../helpers.ts";

type Triple = [number, number, number];

/** Runs `launch` once per candidate of each class it meets, forced, and checks each result. */
async function eachCandidate(
  gpu: Gpu,
  launch: () => void,
  check: (label: string) => Promise<void>,
): Promise<string[]> {
  const tuner = new Autotuner(gpu, { cachePath: null, warn: (m) => console.warn(m) });
  attachAutotuner(gpu, tuner);
  const seen: string[] = [];
  try {
    launch(); // the reasoned choice; leaves the class pending with its candidates
    const pending = tuner.pending;
    assert(pending.length > 0, "the launcher asked the tuner");
    for (const { key, candidates } of pending) {
      for (const candidate of candidates) {
        tuner.withForced(key, candidate, launch);
        await check(`${key} ${candidate}`);
        seen.push(candidate);
      }
    }
  } finally {
    detachAutotuner(gpu);
  }
  return seen;
}

const f32 = (data: Float64Array) => Float64Array.from(Float32Array.from(data));

gpuTest(
  "every conv3d autotune candidate (forward, input and weight gradients) matches the float64 reference",
  async (gpu) => {
    const k: Triple = [3, 3, 3];
    const opts = { stride: [1, 1, 1] as Triple, padding: [1, 1, 1] as Triple };
    // K = 20·27 = 540 (forward) and 24·27 = 648 (input gradient): long enough for split-K
    const g: Conv3dGeometry = {
      batch: 1,
      cin: 20,
      cout: 24,
      in: [4, 4, 5],
      out: [4, 4, 5],
      kernel: k,
      stride: opts.stride,
      padding: opts.padding,
    };
    const x = { shape: [1, 20, 4, 4, 5], data: f32(randomArray(1600, 1)) };
    const w = { shape: [24, 20, 3, 3, 3], data: f32(randomArray(24 * 20 * 27, 2)) };
    const bias = { shape: [24], data: f32(randomArray(24, 3)) };
    const gy = { shape: [1, 24, 4, 4, 5], data: f32(randomArray(1920, 4)) };
    const y = R.conv3dRef(x, w, bias, opts);
    const dx = R.conv3dInputGradRef(gy, w, g.in, opts);
    const dw = R.conv3dWeightGradRef(x, gy, k, opts);
    const up = (t: { shape: number[]; data: Float64Array }) =>
      ops.tensor(Float32Array.from(t.data), t.shape, { gpu });
    const [xt, wt, bt, gyt] = [up(x), up(w), up(bias), up(gy)];
    const [yt, dxt, dwt] = [
      ops.zeros(y.shape, { gpu }),
      ops.zeros(x.shape, { gpu }),
      ops.zeros(w.shape, { gpu }),
    ];
    // f32 sums of up to 648 terms of size ≤ 1
    const tol = { rtol: 1e-4, atol: 1e-4 };
    try {
      const passes: [string, () => void, () => Promise<void>][] = [
        [
          "forward",
          () => runConv3dForward(gpu, g, { x: xt.binding, w: wt.binding, bias: bt.binding, y: yt.binding }),
          async () => assertClose(await yt.toFloat64(), y.data, tol),
        ],
        [
          "input gradient",
          () => runConv3dBackwardData(gpu, g, { dy: gyt.binding, w: wt.binding, dx: dxt.binding }),
          async () => assertClose(await dxt.toFloat64(), dx.data, tol),
        ],
        [
          "weight gradient",
          () => runConv3dBackwardWeight(gpu, g, { x: xt.binding, dy: gyt.binding, dw: dwt.binding }),
          async () => assertClose(await dwt.toFloat64(), dw.data, tol),
        ],
      ];
      for (const [name, launch, check] of passes) {
        const seen = await eachCandidate(gpu, launch, async (label) => {
          try {
            await check();
          } catch (error) {
            throw new Error(`${name} ${label}: ${(error as Error).message}`);
          }
        });
        assert(seen.length >= 4, `${name}: only ${seen.length} candidates`);
        if (name !== "weight gradient") {
          assert(seen.some((c) => c.endsWith("|s0")), `${name}: a candidate without split-K`);
        }
      }
    } finally {
      [xt, wt, bt, gyt, yt, dxt, dwt].forEach((t) => t.dispose());
    }
  },
);

function matmulRef(
  a: Float64Array,
  b: Float64Array,
  s: { batch: number; m: number; n: number; k: number; transA: boolean; transB: boolean },
): Float64Array {
  const c = new Float64Array(s.batch * s.m * s.n);
  for (let z = 0; z < s.batch; z++) {
    for (let i = 0; i < s.m; i++) {
      for (let j = 0; j < s.n; j++) {
        let sum = 0;
        for (let p = 0; p < s.k; p++) {
          const av = s.transA ? a[z * s.m * s.k + p * s.m + i] : a[z * s.m * s.k + i * s.k + p];
          const bv = s.transB ? b[z * s.n * s.k + j * s.k + p] : b[z * s.k * s.n + p * s.n + j];
          sum += av * bv;
        }
        c[(z * s.m + i) * s.n + j] = sum;
      }
    }
  }
  return c;
}

gpuTest(
  "every matmul autotune candidate matches the float64 reference (transposes, vec4 and scalar loads)",
  async (gpu) => {
    let tiles = 0;
    // odd sizes (scalar loads, ragged edges) and multiples of 4 (vec4 loads) crossing several tiles; the
    // four layouts cover each loader (A, B; plain, transposed; scalar, vec4) once
    const cases: [number, number, number, boolean, boolean][] = [
      [37, 70, 29, false, false],
      [37, 70, 29, true, true],
      [72, 40, 36, false, true],
      [72, 40, 36, true, false],
    ];
    for (const [m, n, k, transA, transB] of cases) {
      const s = { batch: 2, m, n, k, transA, transB, aBatchStride: m * k, bBatchStride: k * n };
      const a = f32(randomArray(2 * m * k, m + k));
      const b = f32(randomArray(2 * k * n, n + k));
      const want = matmulRef(a, b, s);
      const at = ops.tensor(Float32Array.from(a), [2 * m * k], { gpu });
      const bt = ops.tensor(Float32Array.from(b), [2 * k * n], { gpu });
      const ct = ops.zeros([2 * m * n], { gpu });
      try {
        const seen = await eachCandidate(
          gpu,
          () => runMatmul(gpu, "f32", at.binding, bt.binding, ct.binding, s),
          async (label) => assertClose(await ct.toFloat64(), want, { rtol: 1e-4, atol: 1e-5, label }),
        );
        tiles = Math.max(tiles, seen.length);
      } finally {
        [at, bt, ct].forEach((t) => t.dispose());
      }
    }
    assert(tiles >= 4, `only ${tiles} matmul candidates fit this device`);
  },
);
