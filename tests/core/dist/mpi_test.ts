/**
 * Two ranks under MPICH's `mpiexec` on the test GPU (lavapipe in CI): the collectives and the gradient
 * equivalence (mpi_worker.ts `unit`), stop-on-signal and resume of a data-parallel run, and sharded
 * preprocessing through the CLI. Ignored when `mpiexec` is not installed (scripts/setup.sh installs it).
 */
import { join } from "node:path";
import { readCacheManifest } from "../../../core/data/cache_dataset.ts";
import { writeSyntheticDataset } from "../../../core/data/synthetic_dataset.ts";
import { readMetrics } from "../../../mod.ts";
import { assert, assertEquals } from "../../assert.ts";
import { voxssl } from "../../cli/cli_helpers.ts";

const root = new URL("../../../", import.meta.url).pathname;
const worker = new URL("./mpi_worker.ts", import.meta.url).pathname;

/** MPICH's launcher (Debian's alternatives may point plain `mpiexec` at Open MPI's). */
async function findLauncher(): Promise<string | undefined> {
  for (const name of ["mpiexec.mpich", "mpiexec.hydra", "mpiexec"]) {
    try {
      const run = await new Deno.Command(name, { args: ["--version"], stdout: "null", stderr: "null" })
        .output();
      if (run.success) return name;
    } catch {
      // not installed (spawning throws NotFound)
    }
  }
  return undefined;
}
const launcher = await findLauncher();
const ignore = launcher === undefined;
if (ignore) console.log("ignoring the 2-rank MPI tests: mpiexec not found (apt-get install mpich)");

/** `mpiexec -n 2 deno run -A <args>` from the repository root. */
async function mpiexec(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command(launcher!, {
    args: ["-n", "2", Deno.execPath(), "run", "--allow-all", ...args],
    cwd: root,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
}

function summaries(stdout: string): { steps: number; stoppedBy?: string; lastLoss: number }[] {
  const line = stdout.split("\n").find((l) => l.startsWith("SUMMARY "));
  assert(line, `no SUMMARY line in:\n${stdout}`);
  return JSON.parse(line.slice("SUMMARY ".length));
}

const options = { ignore, sanitizeOps: false, sanitizeResources: false };

Deno.test({
  ...options,
  name: "2 ranks: collectives, all-gathers, averaged gradients within the float64 bound, identical steps",
  fn: async () => {
    const run = await mpiexec(worker, "unit");
    assertEquals(run.code, 0, `${run.stdout}\n${run.stderr}`);
    assert(run.stdout.includes("unit: ok"), run.stdout);
    console.log(run.stdout.split("\n").find((l) => l.startsWith("equivalence")));
  },
});

Deno.test({
  ...options,
  name:
    "2 ranks: SIGTERM on one rank stops both after the same step; resume reproduces the uninterrupted run",
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      const whole = await mpiexec(worker, "train", "--out", join(dir, "whole"));
      assertEquals(whole.code, 0, whole.stderr);
      assertEquals(summaries(whole.stdout).map((s) => s.steps), [6, 6]);

      const stopped = await mpiexec(worker, "train", "--out", join(dir, "split"), "--signal-at", "2");
      assertEquals(stopped.code, 0, stopped.stderr);
      const ranks = summaries(stopped.stdout);
      assertEquals(ranks.map((s) => [s.steps, s.stoppedBy]), [[3, "SIGTERM"], [3, "SIGTERM"]]);
      assertEquals(ranks[0].lastLoss, ranks[1].lastLoss, "both ranks log the global batch's loss");
      assertEquals([...Deno.readDirSync(join(dir, "split", "checkpoints"))].map((e) => e.name), [
        "latest.safetensors",
      ]);
      assertEquals((await readMetrics(join(dir, "split", "metrics.jsonl"))).map((m) => m.step), [1, 2, 3]);

      const resumed = await mpiexec(worker, "train", "--out", join(dir, "split"), "--resume");
      assertEquals(resumed.code, 0, resumed.stderr);
      assertEquals(summaries(resumed.stdout).map((s) => s.steps), [6, 6]);
      const curve = async (name: string) =>
        (await readMetrics(join(dir, name, "metrics.jsonl"))).map((m) => `${m.step}:${m.loss}:${m.gradNorm}`);
      assertEquals(await curve("split"), await curve("whole"));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  ...options,
  name: "mpiexec -n 2 voxssl preprocess: shards the index, writes the cache one process would, resumes",
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      await writeSyntheticDataset(join(dir, "scans"), {
        count: 5,
        shape: [10, 10, 10],
        seed: 4,
        layout: "flat",
      });
      const index = join(dir, "index.json");
      assertEquals((await voxssl("index", join(dir, "scans"), "--out", index)).code, 0);
      const cli = join(root, "cli", "main.ts");
      const sharded = await mpiexec(cli, "preprocess", index, "--out", join(dir, "cache"), "--workers", "0");
      assertEquals(sharded.code, 0, sharded.stderr);
      assert(sharded.stdout.includes("5 preprocessed, 0 already done"), sharded.stdout);
      assertEquals(sharded.stdout.match(/preprocessed/g)?.length, 1, "rank 0 alone prints the summary");
      const single = await voxssl("preprocess", index, "--out", join(dir, "single"), "--workers", "0");
      assertEquals(single.code, 0, single.stderr);
      const entries = async (cache: string) =>
        (await readCacheManifest(join(dir, cache))).images.map((e) => ({ ...e, path: undefined }));
      assertEquals(await entries("cache"), await entries("single"));
      const again = await mpiexec(cli, "preprocess", index, "--out", join(dir, "cache"), "--workers", "0");
      assertEquals(again.code, 0, again.stderr);
      assert(again.stdout.includes("0 preprocessed, 5 already done"), again.stdout);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
