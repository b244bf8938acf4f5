/**
 * Negotiation of voxssl's optional device features (not re-exported by core/gpu/mod.ts: tests import it
 * to run the refusal path with a stand-in adapter). `createGpu` uses it; `Gpu.fallbacks` keeps its reasons.
 */
import type { GpuFeature } from "./device.ts";

/** Optional features voxssl uses when the adapter has them. */
export const OPTIONAL_FEATURES: readonly GpuFeature[] = ["shader-f16", "subgroups", "timestamp-query"];

function envVar(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

/** The features named in `VOXSSL_GPU_DISABLE_FEATURES` (comma-separated). @throws on an unknown name. */
export function disabledByEnvironment(): GpuFeature[] {
  const names = (envVar("VOXSSL_GPU_DISABLE_FEATURES") ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  for (const name of names) {
    if (!OPTIONAL_FEATURES.includes(name as GpuFeature)) {
      throw new RangeError(
        `VOXSSL_GPU_DISABLE_FEATURES: unknown feature "${name}" (known: ${OPTIONAL_FEATURES.join(", ")})`,
      );
    }
  }
  return names as GpuFeature[];
}

/**
 * Requests a device with every optional feature that is not disabled and that the adapter offers, plus
 * "subgroups" (Deno's adapter does not list it although requesting it works: see reference.md). When
 * that request fails, subgroups are dropped and the request is made again. Returns the features the
 * device has and, for each optional feature it lacks, why.
 */
export async function requestDeviceWithFallbacks(
  adapter: Pick<GPUAdapter, "features" | "requestDevice">,
  disabled: ReadonlyMap<GpuFeature, string>,
  requiredLimits: Record<string, number>,
): Promise<{ device: GPUDevice; features: Set<GpuFeature>; fallbacks: Map<GpuFeature, string> }> {
  const fallbacks = new Map<GpuFeature, string>();
  const requested = new Set<GpuFeature>();
  for (const f of OPTIONAL_FEATURES) {
    const why = disabled.get(f);
    if (why) fallbacks.set(f, why);
    else if (adapter.features.has(f) || f === "subgroups") requested.add(f);
    else fallbacks.set(f, "the adapter does not offer it");
  }
  const request = () =>
    adapter.requestDevice({ requiredFeatures: [...requested] as GPUFeatureName[], requiredLimits });
  let device: GPUDevice;
  try {
    device = await request();
  } catch (error) {
    if (!requested.has("subgroups")) throw error;
    requested.delete("subgroups");
    const message = error instanceof Error ? error.message : String(error);
    fallbacks.set("subgroups", `the device request with it failed (${message})`);
    device = await request();
  }
  const features = new Set<GpuFeature>();
  for (const f of requested) {
    if (device.features.has(f)) features.add(f);
    else fallbacks.set(f, "requested, but the device was created without it");
  }
  return { device, features, fallbacks };
}
