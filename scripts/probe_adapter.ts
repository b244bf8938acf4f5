/**
 * Exits 0 and prints the adapter when Deno's WebGPU finds one, 1 otherwise.
 * Used by scripts/setup.sh before anything else of voxssl is loaded.
 */
const adapter = await navigator.gpu?.requestAdapter({ powerPreference: "high-performance" });
if (!adapter) {
  console.error(
    `probe: no WebGPU adapter (DENO_WEBGPU_BACKEND=${Deno.env.get("DENO_WEBGPU_BACKEND") ?? "unset"})`,
  );
  Deno.exit(1);
}
const info = adapter.info;
console.error(`probe: WebGPU adapter: ${info.description || info.device || info.vendor}`);
