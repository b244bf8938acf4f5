/**
 * The sandbox's plan, unit by unit: what a plugin's package is (never a whole home folder), the flags the
 * child runs with (no prompt, no network), and the refusal of a grant that would contain voxssl's own code.
 */
import { join } from "node:path";
import { assert, assertEquals, assertThrows } from "../assert.ts";
import {
  checkPlan,
  permissionFlags,
  pluginPackageRoot,
  pluginPath,
  SANDBOX_ENV_ALLOW_LIST,
  VOXSSL_ROOT,
} from "../../cli/sandbox.ts";

Deno.test("pluginPackageRoot(): the folder of the plugin's deno.json, or the file alone", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // a package: deno.json beside mod.ts, the module in a subfolder too
    await Deno.mkdir(join(dir, "pkg", "src"), { recursive: true });
    await Deno.writeTextFile(join(dir, "pkg", "deno.json"), '{ "name": "@x/pkg", "version": "1.0.0" }');
    assertEquals(pluginPackageRoot(join(dir, "pkg", "mod.ts")), join(dir, "pkg"));
    assertEquals(pluginPackageRoot(join(dir, "pkg", "src", "a.ts")), join(dir, "pkg"));
    // a lone file in a folder without any config: the file only
    await Deno.mkdir(join(dir, "loose"));
    const lone = join(dir, "loose", "x.ts");
    assertEquals(pluginPackageRoot(lone), lone);
    // a workspace root the plugin is not a member of does not make its folder the plugin's package
    await Deno.mkdir(join(dir, "ws", "member"), { recursive: true });
    await Deno.writeTextFile(join(dir, "ws", "deno.json"), '{ "workspace": ["./member"] }');
    assertEquals(pluginPackageRoot(join(dir, "ws", "other.ts")), join(dir, "ws", "other.ts"));
    assertEquals(pluginPackageRoot(join(dir, "ws", "member", "mod.ts")), join(dir, "ws"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pluginPackageRoot(): a deno.json in the home folder never opens the whole home folder", async () => {
  const home = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(join(home, "deno.json"), "{}");
    await Deno.mkdir(join(home, "scripts"));
    assertEquals(pluginPackageRoot(join(home, "x.ts"), home), join(home, "x.ts"));
    assertEquals(pluginPackageRoot(join(home, "scripts", "y.ts"), home), join(home, "scripts", "y.ts"));
    // the same folder is a package when it is not the home folder
    assertEquals(pluginPackageRoot(join(home, "x.ts"), "/elsewhere"), home);
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("the sandbox runs without prompts, network, subprocesses or FFI, and with a short env list", () => {
  const flags = permissionFlags({
    plugins: ["/p"],
    data: ["/d"],
    out: "/o",
    env: ["DATA_ROOT"],
    startup: [],
  });
  assert(flags.includes("--no-prompt"));
  assert(!flags.some((f) => /^--allow-(net|run|ffi|sys|all|import)/.test(f) || f === "-A"), flags.join(" "));
  assertEquals(flags.find((f) => f.startsWith("--allow-write")), "--allow-write=/o");
  const env = flags.find((f) => f.startsWith("--allow-env="))!.slice("--allow-env=".length).split(",");
  for (const name of [...SANDBOX_ENV_ALLOW_LIST, "DATA_ROOT"]) assert(env.includes(name), name);
  assert(!env.includes("HOME") && !env.includes("PATH"), env.join(","));
  const read = flags.find((f) => f.startsWith("--allow-read="))!;
  for (const p of ["/p", "/d", "/o", VOXSSL_ROOT]) assert(read.split(/[=,]/).includes(p), p);
  // without a run folder nothing is writable
  assert(
    !permissionFlags({ plugins: ["/p"], data: [], env: [], startup: [] }).some((f) =>
      f.startsWith("--allow-write")
    ),
  );
});

Deno.test("checkPlan() refuses data or a run folder that contains voxssl's code; pluginPath() refuses URLs", () => {
  const parent = join(VOXSSL_ROOT, "..");
  assertThrows(
    () => checkPlan({ plugins: [], data: [parent], env: [], startup: [] }),
    Error,
    "contains voxssl's own code",
  );
  assertThrows(
    () => checkPlan({ plugins: [], data: [], out: "/", env: [], startup: [] }),
    Error,
    "run folder",
  );
  checkPlan({ plugins: ["/tmp/x/pkg"], data: ["/tmp/x/data"], out: "/tmp/x/run", env: [], startup: [] });
  assertThrows(() => pluginPath("https://example.org/mod.ts", "/"), Error, "the sandbox has no network");
  assertThrows(() => pluginPath("/no/such/plugin.ts", "/"), Error, "no such file");
});
