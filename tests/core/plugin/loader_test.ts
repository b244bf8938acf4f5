import { assertEquals, assertRejects, assertThrows } from "../../assert.ts";
import { loadPlugin, PluginError, PluginRegistry, validatePlugin } from "../../../core/plugin/mod.ts";
import { affineTarget, voxelMlp } from "../../fixtures/tiny_plugins.ts";

const fixture = (name: string) => new URL(`../../fixtures/${name}`, import.meta.url).pathname;

Deno.test("loadPlugin() imports a plugin by path and validates it", async () => {
  const plugin = await loadPlugin(fixture("affine_target_plugin.ts"), "0.2.3");
  assertEquals(plugin.name, "affine-target");
  assertEquals(plugin.kind, "ssl-method");
});

Deno.test("loadPlugin() lists every manifest problem, not a stack trace", async () => {
  const error = await assertRejects(
    () => loadPlugin(fixture("bad_manifest_plugin.ts"), "0.1.0"),
    PluginError,
  );
  for (const field of ["name:", "version:", "description:", "config:", "build:"]) {
    if (!error.message.includes(field)) throw new Error(`missing ${field} in ${error.message}`);
  }
});

Deno.test("a plugin whose coreApi excludes the running core is refused with both versions", async () => {
  await assertRejects(
    () => loadPlugin(fixture("future_plugin.ts"), "0.1.0"),
    PluginError,
    "requires voxssl core ^9.0.0, but this is core 0.1.0",
  );
  assertThrows(
    () => validatePlugin({ ...affineTarget, coreApi: "~0.0.1" }, "0.1.0", "x"),
    PluginError,
    "~0.0.1",
  );
});

Deno.test("PluginRegistry resolves name-size specs and explains unknown names", () => {
  const registry = new PluginRegistry();
  registry.add(voxelMlp);
  registry.add(affineTarget);
  assertEquals(registry.architecture("voxel-mlp-tiny").size, "tiny");
  assertEquals(registry.architecture("voxel-mlp").size, undefined);
  assertThrows(() => registry.architecture("voxel-mlp-huge"), PluginError, 'no size "huge"; sizes: tiny');
  assertThrows(() => registry.method("nope"), PluginError, "known: affine-target");
  assertThrows(() => registry.add(voxelMlp, "again.ts"), PluginError, "two architecture plugins");
});
