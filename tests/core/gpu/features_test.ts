/** Optional-feature negotiation: each feature a device lacks comes with the reason (Gpu.fallbacks). */
import { assert, assertEquals, assertRejects } from "../../assert.ts";
import { createGpu, type GpuFeature } from "../../../core/gpu/mod.ts";
import { OPTIONAL_FEATURES, requestDeviceWithFallbacks } from "../../../core/gpu/features.ts";

/** Opens a GPU in a child process with VOXSSL_GPU_DISABLE_FEATURES set; prints what it got as JSON. */
async function gpuUnderEnvironment(value: string): Promise<{ code: number; text: string }> {
  const script = `
    import { createGpu } from ${JSON.stringify(new URL("../../../core/gpu/mod.ts", import.meta.url).href)};
    const gpu = await createGpu();
    console.log(JSON.stringify({
      hasF16: gpu.hasF16, hasSubgroups: gpu.hasSubgroups,
      f16: gpu.fallbacks.get("shader-f16"), subgroups: gpu.fallbacks.get("subgroups"),
    }));
    gpu.destroy();`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", script],
    env: { VOXSSL_GPU_DISABLE_FEATURES: value },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: out.code, text: decode(out.stdout) + decode(out.stderr) };
}

/** A stand-in adapter offering `offered`; its device request fails while `refuse` is among the features. */
function fakeAdapter(
  offered: string[],
  { refuse = "", grantOnly }: { refuse?: string; grantOnly?: string[] } = {},
) {
  const requests: string[][] = [];
  const adapter = {
    features: new Set(offered) as unknown as GPUSupportedFeatures,
    requestDevice: (descriptor?: GPUDeviceDescriptor) => {
      const wanted = [...(descriptor?.requiredFeatures ?? [])] as string[];
      requests.push(wanted);
      if (wanted.includes(refuse)) {
        return Promise.reject(new TypeError(`feature "${refuse}" is not supported`));
      }
      const granted = grantOnly ? wanted.filter((f) => grantOnly.includes(f)) : wanted;
      return Promise.resolve({ features: new Set(granted) } as unknown as GPUDevice);
    },
  };
  return { adapter, requests };
}

Deno.test("a refused device request drops subgroups, asks again, and records the refusal as the reason", async () => {
  const { adapter, requests } = fakeAdapter(["shader-f16", "timestamp-query"], { refuse: "subgroups" });
  const { features, fallbacks } = await requestDeviceWithFallbacks(adapter, new Map(), {});
  assertEquals(requests, [["shader-f16", "subgroups", "timestamp-query"], ["shader-f16", "timestamp-query"]]);
  assertEquals([...features].sort(), ["shader-f16", "timestamp-query"]);
  assertEquals([...fallbacks.keys()], ["subgroups"]);
  const reason = fallbacks.get("subgroups")!;
  assert(
    reason.includes("device request with it failed") && reason.includes('"subgroups" is not supported'),
    reason,
  );
});

Deno.test("disabled features, features the adapter lacks and features the device did not grant each have a reason", async () => {
  const { adapter, requests } = fakeAdapter(["timestamp-query"], { grantOnly: ["timestamp-query"] });
  const disabled = new Map<GpuFeature, string>([["shader-f16", "disabled by the disableFeatures option"]]);
  const { features, fallbacks } = await requestDeviceWithFallbacks(adapter, disabled, {});
  assertEquals(requests, [["subgroups", "timestamp-query"]]);
  assertEquals([...features], ["timestamp-query"]);
  assertEquals(Object.fromEntries(fallbacks), {
    "shader-f16": "disabled by the disableFeatures option",
    subgroups: "requested, but the device was created without it",
  });
  // an adapter without shader-f16 and nothing disabled
  const bare = fakeAdapter([]);
  const r = await requestDeviceWithFallbacks(bare.adapter, new Map(), {});
  assertEquals(r.fallbacks.get("shader-f16"), "the adapter does not offer it");
  assertEquals(r.fallbacks.get("timestamp-query"), "the adapter does not offer it");
  assertEquals([...r.features], ["subgroups"]);
});

Deno.test("a refusal without subgroups in the request is an error, not a silent fallback", async () => {
  const { adapter } = fakeAdapter(["shader-f16"], { refuse: "shader-f16" });
  const disabled = new Map<GpuFeature, string>([["subgroups", "disabled by the disableFeatures option"]]);
  await assertRejects(() => requestDeviceWithFallbacks(adapter, disabled, {}), TypeError, "shader-f16");
});

Deno.test({
  name:
    "createGpu() explains each optional feature it lacks: disableFeatures and VOXSSL_GPU_DISABLE_FEATURES",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const plain = await createGpu({ disableFeatures: ["subgroups"] });
    try {
      assert(!plain.hasSubgroups);
      assertEquals(plain.fallbacks.get("subgroups"), "disabled by the disableFeatures option");
      for (const f of OPTIONAL_FEATURES) {
        assert(plain.features.has(f) !== plain.fallbacks.has(f), `${f}: granted, or missing with a reason`);
      }
      // The variable is read in a child process: `deno test --parallel` runs modules on threads of one
      // process, so setting it here would change the GPU of whatever test runs beside this one.
      const env = await gpuUnderEnvironment(" shader-f16,subgroups ");
      assertEquals(env.code, 0, env.text);
      assertEquals(JSON.parse(env.text.trim().split("\n").at(-1)!), {
        hasF16: false,
        hasSubgroups: false,
        f16: "disabled by VOXSSL_GPU_DISABLE_FEATURES",
        subgroups: "disabled by VOXSSL_GPU_DISABLE_FEATURES",
      });
      const unknown = await gpuUnderEnvironment("shader-f32");
      assert(unknown.code !== 0, unknown.text);
      assert(unknown.text.includes('unknown feature "shader-f32"'), unknown.text);
    } finally {
      plain.destroy();
    }
  },
});
