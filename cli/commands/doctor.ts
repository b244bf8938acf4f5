/**
 * `voxssl doctor`: what WebGPU gives this process (adapter, backend, features, granted limits) and a
 * one-second self-test (a matmul and a reduction on the GPU against the float64 CPU reference). Exits
 * non-zero with the reason when there is no adapter or the self-test fails; `--strict` also fails on
 * a missing optional feature.
 */
import type { Command } from "@commander-js/extra-typings";
import {
  createGpu,
  type Gpu,
  type GpuFeature,
  GpuUnavailableError,
  setDefaultGpu,
} from "../../core/gpu/mod.ts";
import { matmul, scope, sum, tensor } from "../../mod.ts";
import { matmulRef, ref, sumRef } from "../../testing.ts";
import { adapterIdentity, defaultCachePath, readCacheFile } from "../../kernels/mod.ts";
import { describeAutotuneMode } from "./autotune.ts";

/** One line on the autotuner: on or off, and how many shape classes the cache holds for this adapter. */
async function autotuneLine(gpu: Gpu): Promise<string> {
  const path = defaultCachePath();
  const warnings: string[] = [];
  const cache = await readCacheFile(path, (m) => warnings.push(m));
  const n = Object.keys(cache.adapters[adapterIdentity(gpu).key]?.classes ?? {}).length;
  return `autotune:  ${describeAutotuneMode(gpu)}; ${n} shape classes measured for this adapter in ${path}` +
    `${warnings.length ? ` (${warnings.join("; ")})` : ""} (voxssl autotune shows them)`;
}

const FEATURES: { name: GpuFeature; use: string }[] = [
  { name: "shader-f16", use: "f16 storage and mixed precision" },
  { name: "subgroups", use: "subgroup reductions in kernels" },
  { name: "timestamp-query", use: "GPU kernel timing in benchmarks" },
];

async function selfTest(gpu: Gpu): Promise<string[]> {
  const problems: string[] = [];
  const m = 97, k = 131, n = 83;
  const a = Float64Array.from({ length: m * k }, (_, i) => Math.sin(i * 0.37));
  const b = Float64Array.from({ length: k * n }, (_, i) => Math.cos(i * 0.11));
  const [c, s] = scope(() => {
    const ta = tensor(Float32Array.from(a), [m, k], { gpu });
    const tb = tensor(Float32Array.from(b), [k, n], { gpu });
    const tc = matmul(ta, tb);
    return [tc, sum(tc, 1)];
  });
  const expected = matmulRef(ref(Float32Array.from(a), [m, k]), ref(Float32Array.from(b), [k, n]));
  const got = await c.toFloat64();
  const worst = got.reduce((w, v, i) => Math.max(w, Math.abs(v - expected.data[i])), 0);
  if (!(worst < 1e-3)) problems.push(`matmul ${m}×${k}·${k}×${n} differs from the CPU reference by ${worst}`);
  const rows = sumRef(expected, 1).data;
  const gotRows = await s.toFloat64();
  const worstRow = gotRows.reduce(
    (w, v, i) => Math.max(w, Math.abs(v - rows[i]) / (1 + Math.abs(rows[i]))),
    0,
  );
  if (!(worstRow < 1e-4)) problems.push(`row sums differ from the CPU reference by ${worstRow} (relative)`);
  c.dispose();
  s.dispose();
  return problems;
}

/** Adds `doctor` to the program. */
export function registerDoctor(program: Command): void {
  program
    .command("doctor")
    .description("show the WebGPU adapter, features and limits, and run a GPU self-test")
    .option("--strict", "fail when an optional feature is missing")
    .action(async (options) => {
      let gpu: Gpu;
      try {
        gpu = await createGpu();
      } catch (error) {
        if (error instanceof GpuUnavailableError) {
          console.error(`voxssl doctor: ${error.message}`);
          Deno.exit(1);
        }
        throw error;
      }
      setDefaultGpu(gpu);
      const info = gpu.adapterInfo;
      console.log(`adapter:   ${info.description || "(no description)"}`);
      console.log(
        `           vendor ${info.vendor || "?"}, device ${info.device || "?"}, ` +
          `architecture ${info.architecture || "?"}${
            info.isFallbackAdapter ? ", fallback (CPU) adapter" : ""
          }`,
      );
      console.log(`backend:   ${gpu.backend} (DENO_WEBGPU_BACKEND)`);
      const missing: string[] = [];
      console.log("features:");
      for (const f of FEATURES) {
        const has = gpu.features.has(f.name);
        if (!has) missing.push(f.name);
        console.log(
          `  ${has ? "yes" : "no "}  ${f.name.padEnd(16)} ${f.use}${
            has ? "" : ` (fallback path: ${gpu.fallbacks.get(f.name)})`
          }`,
        );
      }
      console.log("limits granted:");
      for (const [name, value] of Object.entries(gpu.limits)) {
        const pretty = value >= 2 ** 20 ? `${value} (${(value / 2 ** 20).toFixed(0)} MiB)` : String(value);
        console.log(`  ${name.padEnd(36)} ${pretty}`);
      }
      const t0 = performance.now();
      const problems = await selfTest(gpu);
      const ms = performance.now() - t0;
      if (problems.length > 0) {
        console.error(`self-test FAILED (${ms.toFixed(0)} ms):\n  ${problems.join("\n  ")}`);
        Deno.exit(1);
      }
      console.log(`self-test: ok (matmul and reduction match the CPU reference, ${ms.toFixed(0)} ms)`);
      console.log(await autotuneLine(gpu));
      if (options.strict && missing.length > 0) {
        console.error(`missing optional features: ${missing.join(", ")} (--strict)`);
        Deno.exit(1);
      }
      gpu.destroy();
    });
}
