/**
 * The sandbox of third-party plugins. No line of a third-party plugin runs in a process or Worker that
 * may do more than:
 *
 * - read the plugin's own package (the folder of its `deno.json`, or the single file when it has none);
 * - read the data;
 * - read and write the run folder;
 * - read the environment variables of {@link SANDBOX_ENV_ALLOW_LIST} (and the `$NAME`s a dataset index
 *   uses for its paths).
 *
 * No network, subprocesses, FFI or system information, and a refused access fails instead of prompting.
 *
 * How: a command that would load third-party code (`pretrain`, `plugins`, `plugin check`, `--dry-run`,
 * `--resume`) never imports it in the unrestricted process. It works out the plan from flags, config and
 * checkpoint (no plugin code needed) and re-launches itself under `deno run --no-prompt` with exactly
 * those permissions plus read access to voxssl's own code and Deno's module cache, which the child
 * needs to start. The child starts the data loader's Workers (they load their code too), then
 * revokes those two grants ({@link lockSandbox}) before it imports any plugin; each Worker revokes them
 * for itself before importing the method's data hook.
 *
 * @module
 */
import { dirname, isAbsolute, join, relative, resolve } from "node:path";
import { existsSync, readFileSync, statSync } from "node:fs";
import { loadImageList } from "../core/data/mod.ts";
import { ConfigError } from "./errors.ts";
import { watchChild } from "./launcher_watch.ts";

/** The environment variable carrying the plan into the sandboxed child. */
export const SANDBOX_ENV = "VOXSSL_SANDBOX";

/** Environment variables a sandboxed run may read (GPU backend choice, debugging, colour, terminal). */
export const SANDBOX_ENV_ALLOW_LIST = ["DENO_WEBGPU_BACKEND", "VOXSSL_GPU_DEBUG", "NO_COLOR", "TERM"];

/** voxssl's own folder (code, configs). */
export const VOXSSL_ROOT = resolve(dirname(new URL(import.meta.url).pathname), "..");

/** What a sandboxed run may touch. */
export interface SandboxPlan {
  /** Plugin packages (folders) or single plugin files, readable. */
  plugins: string[];
  /** Data folders and files, readable. */
  data: string[];
  /** The run folder, readable and writable (none for commands that write nothing). */
  out?: string;
  /** Environment variables readable beyond the allow-list (a dataset index's `$NAME` roots). */
  env: string[];
  /** Files read before any plugin loads and then revoked (the `--config` file). */
  startup: string[];
  /** The status file of the completion handshake and the watchdog (cli/watchdog.ts, cli/launcher_watch.ts). */
  status?: string;
}

function denoDir(): string {
  const env = (name: string) => {
    try {
      return Deno.env.get(name);
    } catch {
      return undefined;
    }
  };
  if (env("DENO_DIR")) return resolve(env("DENO_DIR")!);
  if (env("XDG_CACHE_HOME")) return join(env("XDG_CACHE_HOME")!, "deno");
  return join(env("HOME") ?? "/root", ".cache", "deno");
}

function homeFolder(): string | undefined {
  try {
    return Deno.env.get("HOME");
  } catch {
    return undefined;
  }
}

/** Whether `inner` is `outer` or inside it. */
function within(inner: string, outer: string): boolean {
  const r = relative(outer, inner);
  return r === "" || (!r.startsWith("..") && !isAbsolute(r));
}

/**
 * The package of a plugin file: the folder of the nearest `deno.json`/`deno.jsonc`/`package.json` above
 * it, unless that file is a workspace root the plugin is not a member of, or that folder is the home
 * directory (`home`, default $HOME) or the filesystem root (then the plugin is its file alone).
 */
export function pluginPackageRoot(file: string, home: string | undefined = homeFolder()): string {
  let dir = dirname(file);
  while (true) {
    const config = ["deno.json", "deno.jsonc", "package.json"].map((n) => join(dir, n)).find((p) =>
      existsSync(p)
    );
    if (config) {
      if (dir === "/" || (home && resolve(dir) === resolve(home))) return file;
      if (config.endsWith("deno.json") || config.endsWith("deno.jsonc")) {
        try {
          const parsed = JSON.parse(readFileSync(config, "utf8").replace(/^\s*\/\/.*$/gm, ""));
          if (Array.isArray(parsed.workspace)) {
            const member = parsed.workspace.some((m: string) => within(file, resolve(dir, m)));
            if (!member) return file;
          }
        } catch {
          // an unreadable config: treat the folder as the package
        }
      }
      return dir;
    }
    const up = dirname(dir);
    if (up === dir) return file;
    dir = up;
  }
}

/** Resolves a `--plugin` argument to an absolute file path; URLs are refused (the sandbox has no network). */
export function pluginPath(spec: string, cwd: string): string {
  if (/^https?:/.test(spec) || /^(jsr|npm):/.test(spec)) {
    throw new ConfigError(
      `--plugin ${spec}: sandboxed plugins load from a local path (the sandbox has no network); download it first`,
    );
  }
  const path = spec.startsWith("file://")
    ? new URL(spec).pathname
    : isAbsolute(spec)
    ? spec
    : resolve(cwd, spec);
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch {
    throw new ConfigError(`--plugin ${spec}: no such file (${path})`);
  }
  if (!info.isFile) {
    throw new ConfigError(`--plugin ${spec}: not a file (${path}); name the plugin's module, e.g. mod.ts`);
  }
  return path;
}

/** Folders (and `$NAME`s) a data setting reads: a cache folder, or an index and every image it lists. */
export async function dataReadPlan(data: string, cwd: string): Promise<{ read: string[]; env: string[] }> {
  if (data === "synthetic") return { read: [], env: [] };
  const path = isAbsolute(data) ? data : resolve(cwd, data);
  let isDir = false;
  try {
    isDir = statSync(path).isDirectory();
  } catch {
    return { read: [path], env: [] }; // the run will say that it is missing
  }
  if (isDir) return { read: [path], env: [] };
  const env = [
    ...new Set([...readFileSync(path, "utf8").matchAll(/"\$([A-Za-z_][A-Za-z0-9_]*)/g)].map((m) => m[1])),
  ];
  let images: Awaited<ReturnType<typeof loadImageList>> = [];
  try {
    images = await loadImageList(path);
  } catch {
    return { read: [path], env }; // the run will report what is wrong with the index
  }
  const folders = new Set<string>();
  for (const image of images) {
    for (const file of [image.path, image.anatomyMask, image.anonymizationMask]) {
      if (file) folders.add(dirname(file));
    }
  }
  return { read: [path, ...collapse([...folders])], env };
}

/** The smallest set of folders covering `folders` (drops any folder inside another). */
function collapse(folders: string[]): string[] {
  const sorted = [...new Set(folders)].sort((a, b) => a.length - b.length);
  const kept: string[] = [];
  for (const f of sorted) if (!kept.some((k) => within(f, k))) kept.push(f);
  return kept;
}

/** Checks a plan: no grant may contain voxssl's code or Deno's cache (revoking those would revoke it). */
export function checkPlan(plan: SandboxPlan): void {
  const guarded = [VOXSSL_ROOT, denoDir()];
  const grants: [string, string][] = [
    ...plan.plugins.map((p) => ["plugin package", p] as [string, string]),
    ...plan.data.map((p) => ["data", p] as [string, string]),
    ...(plan.out ? [["run folder", plan.out] as [string, string]] : []),
  ];
  for (const [what, path] of grants) {
    for (const g of guarded) {
      if (within(g, path)) {
        throw new ConfigError(
          `the ${what} ${path} contains ${
            g === VOXSSL_ROOT ? "voxssl's own code" : "Deno's module cache"
          } (${g}); ` +
            `a sandboxed plugin may read only its own package, the data and the run folder: name a narrower ${what}`,
        );
      }
    }
  }
}

/** The `deno run` permission flags of a plan (what the child starts with, before it locks itself). */
export function permissionFlags(plan: SandboxPlan): string[] {
  const read = [
    VOXSSL_ROOT,
    denoDir(),
    ...plan.startup,
    ...plan.plugins,
    ...plan.data,
    ...(plan.out ? [plan.out] : []),
    ...(plan.status ? [plan.status] : []),
  ];
  const flags = [
    "--no-prompt",
    `--allow-read=${[...new Set(read)].join(",")}`,
    `--allow-env=${[...new Set([...SANDBOX_ENV_ALLOW_LIST, SANDBOX_ENV, ...plan.env])].join(",")}`,
  ];
  const write = [...(plan.out ? [plan.out] : []), ...(plan.status ? [plan.status] : [])];
  if (write.length > 0) flags.push(`--allow-write=${write.join(",")}`);
  return flags;
}

/** Whether this process is the sandboxed child. */
export function isSandboxed(): boolean {
  return sandboxPlan() !== undefined;
}

/**
 * Re-launches `cli/main.ts <args>` under the plan, forwarding signals and watching the child
 * (cli/launcher_watch.ts); resolves to its exit code, non-zero when it ended without finishing.
 */
export async function relaunchSandboxed(plan: SandboxPlan, args: string[]): Promise<number> {
  checkPlan(plan);
  if (plan.out) await Deno.mkdir(plan.out, { recursive: true });
  const status = await Deno.makeTempFile({ prefix: "voxssl-sandbox-status-" });
  plan = { ...plan, status };
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...permissionFlags(plan),
      `--config=${join(VOXSSL_ROOT, "deno.json")}`,
      join(VOXSSL_ROOT, "cli", "main.ts"),
      ...args,
    ],
    env: { [SANDBOX_ENV]: JSON.stringify(plan) },
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  const watch = watchChild(child, status);
  try {
    return watch.verdict((await child.status).code, plan.plugins);
  } finally {
    watch.dispose();
    await Deno.remove(status).catch(() => {});
  }
}

let childPlan: SandboxPlan | undefined | null = null;

/** The child's side: the plan it was started with (read once, before the lock drops the variable). */
export function sandboxPlan(): SandboxPlan | undefined {
  if (childPlan !== null) return childPlan;
  try {
    const text = Deno.env.get(SANDBOX_ENV);
    childPlan = text ? JSON.parse(text) as SandboxPlan : undefined;
  } catch {
    childPlan = undefined;
  }
  return childPlan;
}

/** Grants the child revokes before any plugin code runs (what {@link lockSandbox} and the Workers drop). */
export function startupGrants(plan: SandboxPlan): string[] {
  return [VOXSSL_ROOT, denoDir(), ...plan.startup];
}

let locked = false;

/**
 * Drops the startup grants of this process: read access to voxssl's code, Deno's cache and the config
 * file, and the plan variable. Call after the Workers are started and before importing a plugin.
 */
export async function lockSandbox(): Promise<void> {
  if (locked) return;
  const plan = sandboxPlan();
  if (!plan) return;
  for (const path of startupGrants(plan)) await Deno.permissions.revoke({ name: "read", path });
  await Deno.permissions.revoke({ name: "env", variable: SANDBOX_ENV });
  locked = true;
}

/** Whether {@link lockSandbox} ran. */
export function isLocked(): boolean {
  return locked;
}
