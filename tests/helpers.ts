/**
 * Shared test helpers: one GPU per test process (lavapipe on CI); seeded random inputs and tolerances
 * come from the testing entry point (core/testing/numeric.ts) and are re-exported here.
 */
import { type Gpu, type GpuFeature, initGpu } from "../core/gpu/mod.ts";

/**
 * The optional features of the default test GPU, probed once when this module loads (top-level await), so
 * that a test needing one is registered with `ignore:` and reported as ignored where it is missing. Empty
 * when there is no GPU (GPU tests then fail in `initGpu()` with the reason). `VOXSSL_GPU_DISABLE_FEATURES`
 * applies: `VOXSSL_GPU_DISABLE_FEATURES=shader-f16 deno task test` runs the tests as on a device without f16.
 */
export const testGpuFeatures: ReadonlySet<GpuFeature> = await initGpu().then(
  (gpu) => gpu.features,
  () => new Set<GpuFeature>(),
);

/**
 * Whether a test needing `requires` must be ignored on the test GPU; says so (test name and the missing
 * features) when it must. For `Deno.test({ ignore: lacksGpuFeatures(name, [...]) })`.
 */
export function lacksGpuFeatures(name: string, requires: readonly GpuFeature[]): boolean {
  const missing = requires.filter((f) => !testGpuFeatures.has(f));
  if (missing.length > 0) console.log(`ignoring "${name}": the test GPU has no ${missing.join(", ")}`);
  return missing.length > 0;
}

/** Options of {@link gpuTest}. */
export interface GpuTestOptions {
  /** Optional features the test needs: on a GPU without one of them the test is reported as ignored. */
  requires?: GpuFeature[];
}

type GpuTestFn = (gpu: Gpu) => Promise<void> | void;

/** `Deno.test` for tests that need the default GPU. WebGPU keeps internal promises alive, so the op and
 * resource sanitizers are off for these tests; memory leaks are checked through the pool counters. */
export function gpuTest(name: string, fn: GpuTestFn): void;
/** `Deno.test` for tests that need the default GPU with optional features (`{ requires: ["shader-f16"] }`). */
export function gpuTest(name: string, options: GpuTestOptions, fn: GpuTestFn): void;
export function gpuTest(name: string, a: GpuTestOptions | GpuTestFn, b?: GpuTestFn): void {
  const [options, fn] = typeof a === "function" ? [{}, a] : [a, b!];
  const requires = options.requires ?? [];
  Deno.test({
    name,
    ignore: lacksGpuFeatures(name, requires),
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      const gpu = await initGpu();
      const lost = requires.filter((f) => !gpu.features.has(f));
      if (lost.length > 0) {
        throw new Error(`the test GPU has no ${lost.join(", ")}, unlike what the probe found`);
      }
      await fn(gpu);
      await gpu.sync();
    },
  });
}

export * from "../core/testing/numeric.ts";
