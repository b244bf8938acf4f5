/**
 * Ceilings of the adapter: FMA throughput (f32, and f16 where the device has shader-f16) and copy
 * bandwidth. Every kernel figure is reported as a fraction of one of them.
 *
 * FMA kernel: each invocation runs 8 independent vec4 FMA chains (enough independent work to hide
 * latency), with the multiplier and addend from the uniform so the compiler cannot fold them.
 * FLOPs = invocations × iterations × 8 chains × 4 lanes × 2. Copy kernel: vec4 loads and stores over a
 * buffer far larger than caches; bytes = 2 × size (read + write).
 */
import { type Gpu, Params } from "../core/gpu/mod.ts";
import { LINEAR_INDEX, specialize } from "../kernels/wgsl.ts";
import { type BenchPreset, type Ceilings, measure } from "./harness.ts";

const fmaSource = /* wgsl */ `
struct P { iterations: u32, m: f32, k: f32 }
@group(0) @binding(0) var<storage, read_write> out: array<vec4<{{T}}>>;
@group(1) @binding(0) var<uniform> p: P;
${LINEAR_INDEX}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = linear_workgroup(wid, nwg) * 256u + lid;
  let m = vec4<{{T}}>({{T}}(p.m));
  let k = vec4<{{T}}>({{T}}(p.k));
  var c0 = vec4<{{T}}>({{T}}(f32(i % 7u) * 0.01));
  var c1 = c0 + k; var c2 = c1 + k; var c3 = c2 + k; var c4 = c3 + k; var c5 = c4 + k; var c6 = c5 + k; var c7 = c6 + k;
  for (var it = 0u; it < p.iterations; it++) {
    c0 = fma(c0, m, k); c1 = fma(c1, m, k); c2 = fma(c2, m, k); c3 = fma(c3, m, k);
    c4 = fma(c4, m, k); c5 = fma(c5, m, k); c6 = fma(c6, m, k); c7 = fma(c7, m, k);
  }
  out[i] = c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7;
}`;

const copySource = /* wgsl */ `
struct P { n: u32 }
@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
@group(1) @binding(0) var<uniform> p: P;
${LINEAR_INDEX}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = linear_workgroup(wid, nwg) * 256u + lid;
  if (i < p.n) { dst[i] = src[i]; }
}`;

/** Measures FMA GFLOP/s for f32 or f16. */
export async function measureFma(gpu: Gpu, type: "f32" | "f16", preset: BenchPreset): Promise<number> {
  const groups = preset === "gpu" ? 8192 : 64;
  const iterations = preset === "gpu" ? 4096 : 256;
  const kernel = gpu.kernel(`ceiling:fma:${type}`, () => ({
    name: `ceiling_fma[${type}]`,
    code: specialize(fmaSource, { T: type }),
    storage: ["read_write"],
    uniform: true,
  }));
  const out = gpu.pool.acquire(groups * 256 * 16);
  const params = new Params().u32(iterations).f32(0.999).f32(0.001);
  const m = await measure(
    gpu,
    () => gpu.dispatch(kernel, [{ buffer: out, size: groups * 256 * 16 }], params, groups),
  );
  gpu.pool.release(out);
  const flops = groups * 256 * iterations * 8 * 4 * 2;
  return flops / (m.medianMs * 1e6);
}

/** Measures copy bandwidth in GB/s (read + write bytes). */
export async function measureCopy(gpu: Gpu, preset: BenchPreset): Promise<number> {
  const bytes = Math.min(
    preset === "gpu" ? 512 * 2 ** 20 : 32 * 2 ** 20,
    gpu.limits.maxStorageBufferBindingSize,
  );
  const n = bytes / 16;
  const kernel = gpu.kernel("ceiling:copy", () => ({
    name: "ceiling_copy",
    code: copySource,
    storage: ["read", "read_write"],
    uniform: true,
  }));
  const src = gpu.pool.acquire(bytes);
  const dst = gpu.pool.acquire(bytes);
  const params = new Params().u32(n);
  const m = await measure(
    gpu,
    () =>
      gpu.dispatch(
        kernel,
        [{ buffer: src, size: bytes }, { buffer: dst, size: bytes }],
        params,
        Math.ceil(n / 256),
      ),
  );
  gpu.pool.release(src);
  gpu.pool.release(dst);
  return (2 * bytes) / (m.medianMs * 1e6);
}

/** Measures all ceilings of the adapter. */
export async function measureCeilings(gpu: Gpu, preset: BenchPreset): Promise<Ceilings> {
  return {
    fmaF32Gflops: await measureFma(gpu, "f32", preset),
    fmaF16Gflops: gpu.hasF16 ? await measureFma(gpu, "f16", preset) : undefined,
    copyGBps: await measureCopy(gpu, preset),
  };
}
