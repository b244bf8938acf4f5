/** Helpers to run the voxssl CLI as a user would, in a subprocess. */
export const MAIN = new URL("../../cli/main.ts", import.meta.url).pathname;
export const ROOT = new URL("../../", import.meta.url).pathname;

/** Runs `voxssl <args>` to completion. */
export async function voxssl(args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr);
  return { code: out.code, stdout, stderr, text: stdout + stderr };
}

/** Starts `voxssl <args>` and returns the child with a line reader over stdout. */
export function spawnVoxssl(args: string[]) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let seen = "";
  /** Resolves when a stdout line contains `needle` (or rejects when the stream ends first). */
  async function waitFor(needle: string): Promise<string> {
    while (true) {
      const i = buffer.indexOf("\n");
      if (i >= 0) {
        const line = buffer.slice(0, i);
        buffer = buffer.slice(i + 1);
        seen += line + "\n";
        if (line.includes(needle)) return line;
        continue;
      }
      const { value, done } = await lines.read();
      if (done) throw new Error(`output ended before "${needle}":\n${seen}${buffer}`);
      buffer += value;
    }
  }
  async function rest(): Promise<string> {
    let text = buffer;
    while (true) {
      const { value, done } = await lines.read();
      if (done) return seen + text;
      text += value;
    }
  }
  return { child, waitFor, rest };
}

/** Writes a JSON run config into a temp dir and returns its path. */
export async function writeConfig(dir: string, config: Record<string, unknown>): Promise<string> {
  const path = `${dir}/config.json`;
  await Deno.writeTextFile(path, JSON.stringify(config));
  return path;
}

/** A small, fast run configuration for e2e tests. */
export function tinyRun(out: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    arch: "resenc-tiny",
    method: "mae",
    methodConfig: { block: 8 },
    data: "synthetic",
    synthetic: { volumes: 4, size: [20, 20, 20] },
    patch: [16, 16, 16],
    batch: 1,
    epochs: 2,
    stepsPerEpoch: 3,
    logEvery: 1,
    validationBatches: 1,
    workers: 1,
    out,
    ...extra,
  };
}
