/**
 * One rank of the `dist` benchmark suite (bench/dist_bench.ts starts it as `mpiexec -n 2`): host
 * allreduce bandwidth (blocking and non-blocking), the cost of f16 transfer (conversion + half the bytes),
 * and the bucketed gradient averaging of a GPU arena (readback → MPI → upload) against the same three
 * stages run one after another. Rank 0 prints one `ROW <json>` line per result (bench/harness.ts rows).
 *
 * Usage: mpiexec -n 2 ./deno run -A bench/dist_rank.ts <preset>
 */
import { initGpu } from "../core/gpu/mod.ts";
import type { ParameterGroup } from "../core/nn/mod.ts";
import { Tensor } from "../core/tensor/mod.ts";
import { GradientSync, initDistributed } from "../core/dist/mod.ts";
import { runAccumulate, runFill } from "../kernels/mod.ts";
import type { BenchRow } from "./harness.ts";

const preset = Deno.args[0] === "gpu" ? "gpu" : "lavapipe";
const dist = initDistributed();
const mpi = dist.mpi;
if (!mpi) throw new Error("bench/dist_rank.ts: start it with mpiexec -n 2 or more");
const MB = 2 ** 20;
const repeats = preset === "gpu" ? 10 : 5;
const hostSizes = preset === "gpu" ? [1, 16, 100, 409] : [1, 16, 100];
const gpuSizes = preset === "gpu" ? [100, 409] : [16, 64];

function row(r: Omit<BenchRow, "suite">): void {
  if (dist.primary) console.log(`ROW ${JSON.stringify({ suite: "dist", ...r })}`);
}

/** Median over repeats of the slowest rank's time for `fn` (ms), after one warm-up. */
async function timeIt(fn: () => void | Promise<void>): Promise<number> {
  const times: number[] = [];
  for (let i = -1; i < repeats; i++) {
    mpi!.barrier();
    const t0 = performance.now();
    await fn();
    const slowest = new Float64Array([performance.now() - t0]);
    mpi!.allreduce(slowest, "max");
    if (i >= 0) times.push(slowest[0]);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

const n = mpi.size;
const busFactor = (2 * (n - 1)) / n; // bytes each rank sends and receives per byte of a ring allreduce
for (const mb of hostSizes) {
  const data = new Float32Array((mb * MB) / 4).fill(1);
  const bytes = data.byteLength;
  const blocking = await timeIt(() => mpi.allreduce(data));
  row({
    name: "allreduce f32 (blocking)",
    shape: `${mb} MiB, ${n} ranks`,
    medianMs: blocking,
    gbps: (bytes * busFactor) / blocking / 1e6,
    note: `bus bandwidth; algorithm bandwidth ${(bytes / blocking / 1e6).toFixed(2)} GB/s`,
  });
  const nonBlocking = await timeIt(async () => await mpi.iallreduce(data).done());
  row({
    name: "iallreduce f32 (polled)",
    shape: `${mb} MiB, ${n} ranks`,
    medianMs: nonBlocking,
    gbps: (bytes * busFactor) / nonBlocking / 1e6,
    note: "MPI_Test between event-loop turns, as GradientSync waits",
  });
  // f16 on the wire: MPICH 4.0.2's MPIX_C_FLOAT16 sum aborts (yaksa), so the wire time is measured as half
  // as many f32 values, plus the f32 → f16 → f32 conversions on the host a real f16 path would add
  const half = data.subarray(0, data.length / 2);
  const wire = await timeIt(() => mpi.allreduce(half));
  const f16 = new Float16Array(data.length);
  const convert = await timeIt(() => {
    f16.set(data);
    data.set(f16);
  });
  row({
    name: "f16 transfer (wire + convert)",
    shape: `${mb} MiB of f32 gradients`,
    medianMs: wire + convert,
    note: `wire ${wire.toFixed(1)} ms + host conversion ${convert.toFixed(1)} ms vs f32 ${
      blocking.toFixed(1)
    } ms`,
  });
}

// the gradient averaging of a GPU arena: pipelined buckets against the stages run one after another
const gpu = await initGpu();
for (const mb of gpuSizes) {
  const count = (mb * MB) / 4;
  const grads = Tensor.empty(gpu, [count], "f32");
  grads.write(Float32Array.from({ length: count }, (_, i) => (i % 1000) / 1000));
  const groups = [{ params: { parts: [] }, grads: { whole: grads } }] as unknown as ParameterGroup[];
  const pipelined = new GradientSync(mpi, gpu, { bucketBytes: preset === "gpu" ? 25 * MB : 4 * MB });
  const timings: number[] = [];
  const total = await timeIt(async () => {
    await pipelined.allreduce(groups);
    await gpu.sync();
    timings.push(pipelined.last!.exposedReduceMs);
  });
  const read = await timeIt(async () => void await gpu.read(grads.buffer, grads.byteOffset, count * 4));
  const host = new Float32Array(count);
  const reduce = await timeIt(() => mpi.allreduce(host));
  const write = await timeIt(async () => {
    gpu.write(grads.buffer, host, grads.byteOffset);
    await gpu.sync();
  });
  // the 1/N scale GradientSync does on the GPU (fill + accumulate from a staging buffer)
  const bucket = preset === "gpu" ? 25 * MB : 4 * MB;
  const staging = gpu.pool.acquire(bucket);
  const scale = await timeIt(async () => {
    for (let at = 0; at < count * 4; at += bucket) {
      const size = Math.min(bucket, count * 4 - at);
      const target = { buffer: grads.buffer, offset: grads.byteOffset + at, size };
      runFill(gpu, target, size / 4, 0);
      runAccumulate(gpu, "f32", target, { buffer: staging, offset: 0, size }, size / 4, 0.5);
    }
    await gpu.sync();
  });
  gpu.pool.release(staging);
  const serial = read + reduce + write + scale;
  const hidden = Math.max(0, serial - total);
  row({
    name: "gradient sync, pipelined buckets",
    shape: `${mb} MiB arena, ${pipelined.last!.buckets} buckets`,
    medianMs: total,
    gbps: (count * 4) / total / 1e6,
    note: `stages alone: readback ${read.toFixed(1)} + allreduce ${reduce.toFixed(1)} + upload ${
      write.toFixed(1)
    } + GPU scale ${scale.toFixed(1)} = ${serial.toFixed(1)} ms one after another; ${
      hidden.toFixed(1)
    } ms hidden by the pipeline`,
  });
  grads.dispose();
}
dist.finalize();
