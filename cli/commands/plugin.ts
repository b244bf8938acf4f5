/**
 * `voxssl plugin new <name>` scaffolds a versioned plugin package (deno.json, mod.ts, README, a test) that,
 * as generated, trains on the built-in synthetic data; `voxssl plugin check <path>` validates a plugin's
 * manifest and version, prints its compatibility with this core, and runs a 2-step smoke training in the
 * sandbox.
 *
 * @module
 */
import type { Command } from "@commander-js/extra-typings";
import { existsSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import semver from "semver";
import { initGpu, VERSION } from "../../mod.ts";
import { loadPlugin, type Plugin } from "../../core/plugin/mod.ts";
import { openBatchSources, resolveRunConfig, RunConfigSchema, runPretraining } from "../../core/train/mod.ts";
import { BUILTIN_PLUGINS, builtinRegistry } from "../builtins.ts";
import { toFileUrl } from "../../core/plugin/file_url.ts";
import { ConfigError } from "../errors.ts";
import {
  isSandboxed,
  lockSandbox,
  pluginPackageRoot,
  pluginPath,
  relaunchSandboxed,
  VOXSSL_ROOT,
} from "../sandbox.ts";
import { closeLoaderWorkers, loaderIsolation, startLoaderWorkers } from "../sandbox_workers.ts";
import { architectureModule, architectureTest } from "../templates/architecture.ts";
import { methodModule, methodTest } from "../templates/method.ts";

/** How to call this voxssl from any folder. */
function voxsslCommand(): string {
  return `${join(VOXSSL_ROOT, "deno")} run -A ${join(VOXSSL_ROOT, "cli", "main.ts")}`;
}

function readme(name: string, kind: string): string {
  const root = VOXSSL_ROOT;
  const voxssl = voxsslCommand();
  const run = kind === "ssl-method"
    ? `${voxssl} pretrain --plugin ./mod.ts --method ${name} --arch resenc-tiny --patch 32`
    : `${voxssl} pretrain --plugin ./mod.ts --arch ${name}-tiny --method mae --patch 32`;
  return `# ${name}

A voxssl ${kind} plugin (made with \`voxssl plugin new\`). It imports voxssl only as \`@voxssl/core\`
(mapped in deno.json to the voxssl it was made with) and runs sandboxed: it may read its own folder, the
data and the run folder, nothing else.

| what | command (from this folder) |
| --- | --- |
| test | \`${root}/deno test -A\` |
| check (manifest, version, 2 sandboxed training steps) | \`${voxssl} plugin check .\` |
| train | \`${run}\` |

Versioning: bump the major version when a config key is removed or changes meaning, or when the same
config and seed train to different results; the minor version for new options whose defaults keep results;
the patch version for fixes that change nothing a run records. \`coreApi\` names the voxssl core versions it
works with (docs/plugins.md in voxssl).
`;
}

/** Writes the package of a new plugin; returns its folder. */
export async function scaffoldPlugin(name: string, kind: string, parent: string): Promise<string> {
  if (!/^[a-z][a-z0-9-]*$/.test(name)) {
    throw new ConfigError(
      `plugin name "${name}": lower-case letters, digits and dashes, starting with a letter`,
    );
  }
  if (kind !== "ssl-method" && kind !== "architecture") {
    throw new ConfigError(`--kind ${kind}: expected ssl-method or architecture`);
  }
  const dir = resolve(parent, name);
  if (existsSync(dir)) throw new ConfigError(`${dir} exists already; choose another name or --dir`);
  await Deno.mkdir(dir, { recursive: true });
  const core = new URL("../../mod.ts", import.meta.url).href;
  const testing = new URL("../../testing.ts", import.meta.url).href;
  const config = JSON.parse(await Deno.readTextFile(join(VOXSSL_ROOT, "deno.json")));
  const imports: Record<string, string> = { "@voxssl/core": core, "@voxssl/core/testing": testing };
  for (const [key, value] of Object.entries(config.imports as Record<string, string>)) {
    if (!key.startsWith("@voxssl/") && !key.startsWith("@tensorflow/")) imports[key] = value;
  }
  const denoJson = { name: `@local/${name}`, version: "0.1.0", exports: "./mod.ts", imports };
  await Deno.writeTextFile(join(dir, "deno.json"), JSON.stringify(denoJson, null, 2) + "\n");
  const isMethod = kind === "ssl-method";
  await Deno.writeTextFile(join(dir, "mod.ts"), isMethod ? methodModule(name) : architectureModule(name));
  await Deno.writeTextFile(join(dir, "mod_test.ts"), isMethod ? methodTest(name) : architectureTest(name));
  await Deno.writeTextFile(join(dir, "README.md"), readme(name, kind));
  return dir;
}

/** The module of a plugin path: a file, or a package folder's `exports` (default mod.ts). */
async function pluginModulePath(path: string, cwd: string): Promise<string> {
  const full = resolve(cwd, path);
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(full);
  } catch {
    throw new ConfigError(`plugin check ${path}: no such file or folder (${full})`);
  }
  if (!info.isDirectory) return pluginPath(full, cwd);
  let entry = "mod.ts";
  for (const name of ["deno.json", "deno.jsonc"]) {
    const file = join(full, name);
    if (!existsSync(file)) continue;
    const exports = JSON.parse(await Deno.readTextFile(file)).exports;
    entry = typeof exports === "string" ? exports : exports?.["."] ?? entry;
  }
  return pluginPath(join(full, entry), cwd);
}

/** The check itself, in the sandbox: manifest, version, compatibility, then a short training run. */
async function checkInSandbox(module: string, out: string, patch: number): Promise<number> {
  const line = (ok: boolean, what: string) => console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  let plugin: Plugin;
  try {
    plugin = await loadPlugin(module, VERSION);
  } catch (error) {
    line(false, `manifest: ${(error as Error).message}`);
    return 1;
  }
  line(true, `manifest: ${plugin.kind} "${plugin.name}" ${plugin.version}`);
  let failures = 0;
  const root = pluginPackageRoot(module);
  if (root !== module) {
    for (const name of ["deno.json", "deno.jsonc"]) {
      const file = join(root, name);
      if (!existsSync(file)) continue;
      const version = JSON.parse(await Deno.readTextFile(file)).version;
      const same = version === undefined || version === plugin.version;
      if (!same) failures++;
      line(same, `version: ${basename(file)} says ${version ?? "nothing"}, the manifest ${plugin.version}`);
    }
  }
  const compatible = semver.satisfies(VERSION, plugin.coreApi, { includePrerelease: true });
  line(compatible, `core: this is voxssl core ${VERSION}; the plugin asks for ${plugin.coreApi}`);
  if (!compatible) return 1;

  const registry = builtinRegistry();
  const builtin = BUILTIN_PLUGINS.find((b) => b.module === toFileUrl(module));
  if (!builtin) registry.add(plugin, module);
  // a method trains a tiny built-in network of a family it supports; an architecture trains with MAE
  const method = plugin.kind === "ssl-method" ? plugin : registry.method("mae");
  const archName = plugin.kind === "ssl-method"
    ? (plugin.supports.includes("cnn") ? "resenc-tiny" : "primus-tiny")
    : plugin.sizes?.tiny
    ? `${plugin.name}-tiny`
    : plugin.name;
  const isMethod = plugin.kind === "ssl-method";
  const parsed = RunConfigSchema.parse({
    arch: archName,
    method: method.name,
    data: "synthetic",
    synthetic: { volumes: 4, size: [patch + 8, patch + 8, patch + 8] },
    patch: [patch, patch, patch],
    batch: 2,
    epochs: 1,
    stepsPerEpoch: 2,
    logEvery: 1,
    validationBatches: 1,
    workers: 1,
    out,
    ...(isMethod ? {} : { methodConfig: { block: Math.max(1, patch / 4) } }),
  });
  const smoke = `2 training steps of ${parsed.arch} with ${method.name} on synthetic ${patch}³ patches`;
  try {
    const arch = registry.architecture(parsed.arch);
    const config = resolveRunConfig(parsed, arch, method);
    const sources = await openBatchSources(config, method, {
      methodModule: isMethod ? module : new URL("../../plugins/ssl/mae/mod.ts", import.meta.url).href,
      isolation: loaderIsolation(),
    });
    const gpu = await initGpu();
    try {
      const summary = await runPretraining({
        config,
        arch: arch.plugin,
        method,
        train: sources.train,
        validation: sources.validation,
        coreVersion: VERSION,
        gpu,
        log: (l) => console.log(`     ${l}`),
      });
      const finite = summary.lastLoss !== null && Number.isFinite(summary.lastLoss) &&
        summary.bestValidationLoss !== null && Number.isFinite(summary.bestValidationLoss);
      if (!finite) failures++;
      line(finite, `${smoke}: loss ${summary.lastLoss}, validation ${summary.bestValidationLoss}`);
    } finally {
      await sources.train.close();
      await sources.validation?.close();
    }
  } catch (error) {
    failures++;
    line(false, `${smoke}: ${(error as Error).message}`);
  }
  return failures > 0 ? 1 : 0;
}

/** Adds `plugin new` and `plugin check` to the program. */
export function registerPlugin(program: Command): void {
  const plugin = program.command("plugin").description("write and check plugins");
  plugin
    .command("new")
    .description("scaffold a plugin package: deno.json, mod.ts, README.md and a test")
    .argument("<name>", "the plugin's name (lower-case letters, digits, dashes)")
    .option("--kind <kind>", "ssl-method or architecture", "ssl-method")
    .option("--dir <folder>", "where to create the package folder", ".")
    .action(async (name, options) => {
      const dir = await scaffoldPlugin(name, options.kind, options.dir);
      console.log(`created ${dir}: deno.json, mod.ts, mod_test.ts, README.md`);
      console.log(`next: ${voxsslCommand()} plugin check ${dir}`);
    });
  plugin
    .command("check")
    .description("validate a plugin, print its compatibility, and train it 2 steps in the sandbox")
    .argument("<path>", "the plugin's package folder or module")
    .option("--patch <size>", "edge of the smoke test's cubic patch", "16")
    .option("--out <dir>", "run folder of the smoke test (default: a temporary folder, removed after)")
    .action(async (path, options) => {
      const cwd = Deno.cwd();
      const patch = Number(options.patch);
      if (!Number.isInteger(patch) || patch < 4) {
        throw new ConfigError(`--patch: expected an integer ≥ 4, got ${options.patch}`);
      }
      const module = await pluginModulePath(path, cwd);
      if (!isSandboxed()) {
        const out = options.out
          ? resolve(cwd, options.out)
          : await Deno.makeTempDir({ prefix: "voxssl-plugin-check-" });
        const plan = { plugins: [pluginPackageRoot(module)], data: [], out, env: [], startup: [] };
        const args = ["plugin", "check", module, "--patch", String(patch), "--out", out];
        const code = await relaunchSandboxed(plan, args);
        if (!options.out) await Deno.remove(out, { recursive: true }).catch(() => {});
        console.log(code === 0 ? `plugin check passed: ${module}` : `plugin check FAILED: ${module}`);
        Deno.exit(code);
      }
      await startLoaderWorkers(2);
      await lockSandbox();
      try {
        Deno.exitCode = await checkInSandbox(module, options.out ?? join(dirname(module), ".check"), patch);
      } finally {
        closeLoaderWorkers();
      }
    });
}
