/**
 * Narrowed permissions for runs that load third-party plugins. A plugin runs inside the voxssl
 * process, so the process itself is narrowed: `voxssl pretrain --plugin …` re-launches itself with
 * read access to the voxssl code, Deno's module cache, the plugins, the data and the run folder;
 * write access to the run folder only; no network (except a plugin's own URL host); a short list of
 * environment variables. Signals are forwarded so a stopped run still saves its checkpoint.
 */
import { dirname, isAbsolute, resolve } from "node:path";

/** The environment variable marking the re-launched process. */
export const SANDBOX_ENV = "VOXSSL_SANDBOXED";

/** Paths and hosts the sandboxed run may use. */
export interface SandboxPlan {
  read: string[];
  write: string[];
  net: string[];
  env: string[];
}

function denoCacheDir(): string | undefined {
  const env = (name: string) => Deno.env.get(name);
  if (env("DENO_DIR")) return env("DENO_DIR");
  if (env("XDG_CACHE_HOME")) return `${env("XDG_CACHE_HOME")}/deno`;
  if (env("HOME")) return `${env("HOME")}/.cache/deno`;
  return undefined;
}

/** The plan for a run: its plugins, data and run folder. */
export function planSandbox(
  options: { plugins: string[]; data: string[]; out: string; cwd: string; configFile?: string },
): SandboxPlan {
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(options.cwd, p));
  const projectRoot = resolve(dirname(new URL(import.meta.url).pathname), "..");
  const read = [projectRoot, abs(options.out)];
  const net: string[] = [];
  for (const p of options.plugins) {
    if (/^https?:/.test(p)) net.push(new URL(p).host);
    else read.push(dirname(abs(p.replace(/^file:\/\//, ""))));
  }
  for (const d of options.data) read.push(abs(d));
  if (options.configFile) read.push(abs(options.configFile));
  const cache = denoCacheDir();
  if (cache) read.push(cache);
  return {
    read: [...new Set(read)],
    write: [abs(options.out)],
    net,
    env: [
      "DENO_WEBGPU_BACKEND",
      "VOXSSL_GPU_DEBUG",
      SANDBOX_ENV,
      "NO_COLOR",
      "DENO_DIR",
      "HOME",
      "XDG_CACHE_HOME",
      "TERM",
    ],
  };
}

/** Deno permission flags of a plan. */
export function permissionFlags(plan: SandboxPlan): string[] {
  const flags = [
    `--allow-read=${plan.read.join(",")}`,
    `--allow-write=${plan.write.join(",")}`,
    `--allow-env=${plan.env.join(",")}`,
  ];
  if (plan.net.length > 0) flags.push(`--allow-net=${plan.net.join(",")}`);
  return flags;
}

/** Whether this process is already the sandboxed one. */
export function isSandboxed(): boolean {
  return Deno.env.get(SANDBOX_ENV) === "1";
}

/** Re-launches `cli/main.ts <args>` under the plan, forwarding signals; resolves to its exit code. */
export async function relaunchSandboxed(plan: SandboxPlan, args: string[]): Promise<number> {
  await Deno.mkdir(plan.write[0], { recursive: true });
  const main = resolve(dirname(new URL(import.meta.url).pathname), "main.ts");
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...permissionFlags(plan), main, ...args],
    env: { [SANDBOX_ENV]: "1" },
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  const forward = (signal: Deno.Signal) => () => {
    try {
      child.kill(signal);
    } catch {
      // child already gone
    }
  };
  const handlers = (["SIGINT", "SIGTERM", "SIGUSR1"] as Deno.Signal[]).map((s) => [s, forward(s)] as const);
  for (const [s, h] of handlers) Deno.addSignalListener(s, h);
  try {
    return (await child.status).code;
  } finally {
    for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
  }
}
