/**
 * The convolution launchers' plans at real ResEnc-L / Primus sizes, without a GPU: a recording device
 * with H100-like limits checks every dispatch (binding sizes and alignment, ranges inside their buffers,
 * grid dimensions) and that split-K engages where the tiles alone are few. The kernels' numerics are
 * tested on lavapipe (tests/core/tensor/conv_test.ts); this covers the sizes lavapipe cannot run.
 */
import { assert, assertEquals } from "../assert.ts";
import { type Gpu, type GpuLimits, workgroupGrid } from "../../core/gpu/mod.ts";
import {
  attachAutotuner,
  Autotuner,
  type Conv3dGeometry,
  convCandidates,
  convOutputSize,
  detachAutotuner,
  runConv3dBackwardData,
  runConv3dBackwardWeight,
  runConv3dBiasGrad,
  runConv3dForward,
} from "../../kernels/mod.ts";
import {
  bufferRange as tensorRange,
  H100_LIMITS as LIMITS,
  recordingGpu as recordingDevice,
} from "../_helpers/recording_gpu.ts";

interface Dispatch {
  kernel: string;
  grid: [number, number, number];
}

/** A device that records and validates dispatches instead of running them. */
function recordingGpu(limits: GpuLimits, log: Dispatch[]): Gpu {
  return recordingDevice({
    limits,
    dispatch: (name, bindings, grid) => {
      for (const b of bindings) {
        const offset = b.offset ?? 0;
        assert(b.size <= limits.maxStorageBufferBindingSize, `${name}: binding of ${b.size} bytes`);
        assertEquals(offset % limits.minStorageBufferOffsetAlignment, 0, `${name}: offset ${offset}`);
        assert(
          offset + b.size <= b.buffer.size,
          `${name}: range ${offset}+${b.size} beyond ${b.buffer.size}`,
        );
      }
      // a linear count is split over x/y/z as Gpu.dispatch does (kernels use linear_workgroup)
      const g: [number, number, number] = typeof grid === "number"
        ? workgroupGrid(grid, limits.maxComputeWorkgroupsPerDimension)
        : grid;
      assert(g.every((v) => v <= limits.maxComputeWorkgroupsPerDimension), `${name}: grid ${g}`);
      log.push({ kernel: name, grid: g });
    },
  });
}

function geometry(batch: number, cin: number, cout: number, size: number, k: number, s: number, p: number) {
  const out = convOutputSize(size, k, s, p);
  const t = (v: number) => [v, v, v] as const;
  return { batch, cin, cout, in: t(size), out: t(out), kernel: t(k), stride: t(s), padding: t(p) };
}

const layers: [string, Conv3dGeometry][] = [
  ["stage-1 conv 2×32×160³", geometry(2, 32, 32, 160, 3, 1, 1)],
  ["stage-5 conv 2×320×10³", geometry(2, 320, 320, 10, 3, 1, 1)],
  ["downsampling 2×32×160³ → 64", geometry(2, 32, 64, 160, 3, 2, 1)],
  ["downsampling 2×320×10³ → 320", geometry(2, 320, 320, 10, 3, 2, 1)],
  ["decoder 2× up 64 → 32 to 160³ (as its convolution)", geometry(2, 32, 64, 160, 2, 2, 0)],
  ["Primus patch embedding 2×1×160³ → 864", geometry(2, 1, 864, 160, 8, 8, 0)],
];

for (const [name, g] of layers) {
  Deno.test(`conv3d launchers plan ${name} within H100-like limits`, () => {
    const log: Dispatch[] = [];
    const gpu = recordingGpu(LIMITS, log);
    const sx = g.batch * g.cin * g.in[0] * g.in[1] * g.in[2];
    const sy = g.batch * g.cout * g.out[0] * g.out[1] * g.out[2];
    const kc = g.cout * g.cin * g.kernel[0] * g.kernel[1] * g.kernel[2];
    const [x, y, w, b] = [tensorRange(sx), tensorRange(sy), tensorRange(kc), tensorRange(g.cout)];
    runConv3dForward(gpu, g, { x, w, bias: b, y });
    runConv3dBackwardData(gpu, g, { dy: y, w, dx: x });
    runConv3dBackwardWeight(gpu, g, { x, dy: y, dw: w });
    runConv3dBiasGrad(gpu, y, b, {
      batch: g.batch,
      channels: g.cout,
      spatial: g.out[0] * g.out[1] * g.out[2],
    });
    const weightPass = log.filter((d) => d.kernel.startsWith("conv3d_backward_weight["));
    const workgroups = weightPass.reduce((s, d) => s + d.grid[0] * d.grid[1] * d.grid[2], 0);
    // a batch of 2 still fills the GPU: the weight gradient gets hundreds of workgroups (split-K)
    assert(workgroups >= 100, `weight gradient runs ${workgroups} workgroups: ${JSON.stringify(weightPass)}`);
  });
}

Deno.test("conv3d launchers split 2×32×160³ into binding windows under WebGPU's default 128 MiB limit", () => {
  const log: Dispatch[] = [];
  const gpu = recordingGpu({ ...LIMITS, maxStorageBufferBindingSize: 128 * 2 ** 20 }, log);
  const g = geometry(2, 32, 32, 160, 3, 1, 1); // each activation is 1 GiB
  const n = 2 * 32 * 160 ** 3;
  const [x, y, w] = [tensorRange(n), tensorRange(n), tensorRange(32 * 32 * 27)];
  runConv3dForward(gpu, g, { x, w, y });
  runConv3dBackwardData(gpu, g, { dy: y, w, dx: x });
  runConv3dBackwardWeight(gpu, g, { x, dy: y, dw: w });
  assert(log.filter((d) => d.kernel.startsWith("conv3d_forward[")).length >= 8, "forward in ≥ 8 chunks");
  assert(
    log.filter((d) => d.kernel.startsWith("conv3d_backward_data[")).length >= 8,
    "input gradient in chunks",
  );
});

Deno.test("conv3d launchers plan f16 tensors of 2×32×160³ in byte windows, with f32 accumulators where reductions are chunked", () => {
  const limits = { ...LIMITS, maxStorageBufferBindingSize: 128 * 2 ** 20 };
  const g = geometry(2, 32, 32, 160, 3, 1, 1); // each f16 activation is 512 MiB
  const n = 2 * 32 * 160 ** 3;
  const run = (type: "f32" | "f16") => {
    const log: Dispatch[] = [];
    const gpu = recordingGpu(limits, log);
    const bytes = type === "f16" ? 2 : 4;
    const [x, y, w] = [tensorRange(n, bytes), tensorRange(n, bytes), tensorRange(32 * 32 * 27, bytes)];
    runConv3dForward(gpu, g, { x, w, y }, type);
    runConv3dBackwardData(gpu, g, { dy: y, w, dx: x }, type);
    runConv3dBackwardWeight(gpu, g, { x, dy: y, dw: w }, type);
    runConv3dBiasGrad(gpu, y, tensorRange(32, bytes), { batch: 2, channels: 32, spatial: 160 ** 3 }, type);
    return log;
  };
  const half = run("f16");
  const full = run("f32");
  const count = (log: Dispatch[], prefix: string) => log.filter((d) => d.kernel.startsWith(prefix)).length;
  // one batch item's input (32 × 160³ f16 = 262 MB) exceeds a binding: input channels are chunked, and the
  // f16 output accumulates in f32 windows converted once per output chunk
  assert(half.some((d) => d.kernel.startsWith("conv3d_forward[") && d.kernel.endsWith(",f16>f32]")));
  assert(half.some((d) => d.kernel.startsWith("conv3d_backward_data[") && d.kernel.endsWith(",f16>f32]")));
  assert(half.some((d) => d.kernel.startsWith("conv3d_backward_weight[") && d.kernel.endsWith(",f16>f32]")));
  assert(count(half, "conv3d_accumulator_to_f16") > 0);
  // half the bytes: fewer forward chunks than f32 needs
  assert(
    count(half, "conv3d_forward[") < count(full, "conv3d_forward["),
    `f16 ${count(half, "conv3d_forward[")} forward dispatches, f32 ${count(full, "conv3d_forward[")}`,
  );
});

Deno.test("every autotune candidate plans the ResEnc-L / Primus layers within H100-like limits, and fits WebGPU's minimum limits", () => {
  let forced = 0;
  for (const [name, g] of layers) {
    const log: Dispatch[] = [];
    const gpu = recordingGpu(LIMITS, log);
    const sx = g.batch * g.cin * g.in[0] * g.in[1] * g.in[2];
    const sy = g.batch * g.cout * g.out[0] * g.out[1] * g.out[2];
    const kc = g.cout * g.cin * g.kernel[0] * g.kernel[1] * g.kernel[2];
    const [x, y, w] = [tensorRange(sx), tensorRange(sy), tensorRange(kc)];
    const passes = [
      () => runConv3dForward(gpu, g, { x, w, y }),
      () => runConv3dBackwardData(gpu, g, { dy: y, w, dx: x }),
      () => runConv3dBackwardWeight(gpu, g, { x, dy: y, dw: w }),
    ];
    const tuner = new Autotuner(gpu, { cachePath: null });
    attachAutotuner(gpu, tuner);
    try {
      passes.forEach((pass) => pass()); // leaves every class pending with its candidates
      assert(tuner.pending.length >= 3, `${name}: ${tuner.pending.length} classes`);
      for (const { key, candidates } of tuner.pending) {
        // the recording device asserts every binding and grid of each forced plan
        for (const c of candidates) for (const pass of passes) tuner.withForced(key, c, pass);
        forced += candidates.length;
      }
    } finally {
      detachAutotuner(gpu);
    }
  }
  assert(forced > 6 * layers.length, `${forced} candidates planned`);
  const minimum = {
    ...LIMITS,
    maxComputeWorkgroupStorageSize: 16384,
    maxComputeInvocationsPerWorkgroup: 256,
  };
  for (const [m, n, k] of [[8_192_000, 32, 864], [2000, 320, 8640], [320, 8640, 2000], [70, 70, 600]]) {
    for (const fast of ["m", "n"] as const) {
      for (const { tile: t } of convCandidates(minimum, m, n, k, fast)) {
        assert(t.threads <= 256 && t.threads === (t.bm / t.tm) * (t.bn / t.tn), JSON.stringify(t));
        assert((t.bm + t.bn + 8) * t.bk * 4 <= 16384 && t.threads >= t.bk, JSON.stringify(t));
      }
    }
  }
});
