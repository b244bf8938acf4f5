import { assert, assertEquals } from "../assert.ts";

const main = new URL("../../cli/main.ts", import.meta.url).pathname;

async function doctor(env: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", main, "doctor"],
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { code: out.code, text };
}

Deno.test("voxssl doctor prints the adapter, features, limits and passes its self-test", async () => {
  const { code, text } = await doctor();
  assertEquals(code, 0, text);
  for (
    const needle of [
      "adapter:",
      "backend:",
      "shader-f16",
      "subgroups",
      "timestamp-query",
      "maxStorageBufferBindingSize",
    ]
  ) {
    assert(text.includes(needle), `output lacks ${needle}:\n${text}`);
  }
  assert(text.includes("self-test: ok"), text);
});

Deno.test("voxssl doctor exits 1 and says what to install when there is no adapter", async () => {
  const { code, text } = await doctor({ DENO_WEBGPU_BACKEND: "dx12" }); // no such backend on Linux
  assertEquals(code, 1, text);
  assert(text.includes("mesa-vulkan-drivers"), text);
});

Deno.test("voxssl doctor says why an optional feature is missing", async () => {
  const { code, text } = await doctor({ VOXSSL_GPU_DISABLE_FEATURES: "subgroups" });
  assertEquals(code, 0, text);
  const line = text.split("\n").find((l) => l.includes("subgroups"));
  assert(
    line?.trim().startsWith("no") &&
      line.includes("(fallback path: disabled by VOXSSL_GPU_DISABLE_FEATURES)"),
    text,
  );
});
