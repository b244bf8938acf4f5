/**
 * The one-shot GPU check (scripts/gpu_check.sh runs it; see docs/profiling.md): in at most 8 minutes on a
 * GPU, `doctor`, a correctness subset of the tests, every bench suite at the GPU preset, and the OpenMind
 * recipe end to end (ResEnc-L and Primus-M with MAE at 160³, batch 2, mixed precision: steps/s, peak
 * memory, the profiler's table), all written into one JSON file.
 *
 * Each part runs as a child process with its own time limit, so a part that hangs or runs long costs its
 * limit and no more: it is recorded as timed out, with the tail of its output (a bench suite's finished
 * rows are in it). The JSON is rewritten (atomically) after every part, so a killed check keeps what ran.
 *
 * `--small`: the same parts scaled down to run end to end on lavapipe (the bench suites at the lavapipe
 * preset, the tiny architectures at 16³ batch 1 for the e2e part, 3× longer limits for a CPU adapter;
 * `VOXSSL_GPU_CHECK_SCALE=k` multiplies every limit by k).
 *
 * @module
 */
import { Command } from "@commander-js/extra-typings";
import { suites } from "../bench/suites.ts";

const options = new Command()
  .name("gpu_check")
  .option("--small", "scaled down to run on lavapipe")
  .option("--out <file>", "the JSON file", "out/gpu_check.json")
  .option("--cached-only", "pass --cached-only to every deno child (a machine without registry access)")
  .parse(Deno.args, { from: "user" })
  .opts();
const small = Boolean(options.small || Deno.env.get("VOXSSL_GPU_CHECK_SMALL") === "1");
const root = new URL("../", import.meta.url).pathname;
const deno = Deno.execPath();
const cached = options.cachedOnly ? ["--cached-only"] : [];

/** Test files of the correctness subset: device, the kernels of a step (f32 and f16), the profiler. */
const TESTS = [
  "tests/core/gpu/device_test.ts",
  "tests/core/gpu/memory_timeline_test.ts",
  "tests/core/tensor/conv_test.ts",
  "tests/core/tensor/conv_f16_test.ts",
  "tests/core/tensor/matmul_f16_test.ts",
  "tests/core/tensor/attention_test.ts",
  "tests/core/tensor/autocast_test.ts",
  "tests/kernels/conv3d_plan_test.ts",
  "tests/core/train/profile_test.ts",
];
const SMALL_TESTS = ["tests/core/gpu/memory_timeline_test.ts", "tests/core/train/profile_test.ts"];

/** Bench suites and each one's time limit in seconds on a GPU (bench/suites.ts); e2e runs separately. */
const SUITES: [string, number][] = suites.flatMap((s): [string, number][] =>
  s.gpuSeconds ? [[s.name, s.gpuSeconds]] : []
);

/** What one child process did. */
interface PartResult {
  command: string[];
  code: number | null;
  timedOut: boolean;
  seconds: number;
  /** The last 6000 characters of stdout and stderr. */
  tail: string;
}

async function runPart(args: string[], limitSeconds: number): Promise<PartResult & { stdout: string }> {
  const started = performance.now();
  const child = new Deno.Command(deno, { args, cwd: root, stdout: "piped", stderr: "piped" }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }, limitSeconds * 1000);
  const [out, status] = await Promise.all([child.output(), child.status]).finally(() => clearTimeout(timer));
  const stdout = new TextDecoder().decode(out.stdout);
  const text = stdout + new TextDecoder().decode(out.stderr);
  return {
    command: ["deno", ...args],
    code: timedOut ? null : status.code,
    timedOut,
    seconds: (performance.now() - started) / 1000,
    tail: text.slice(-6000),
    stdout,
  };
}

async function readJson(path: string): Promise<unknown> {
  try {
    return JSON.parse(await Deno.readTextFile(path));
  } catch {
    return undefined;
  }
}

// a CPU adapter gets longer limits; VOXSSL_GPU_CHECK_SCALE multiplies them (a busy machine)
const scale = (small ? 3 : 1) * Number(Deno.env.get("VOXSSL_GPU_CHECK_SCALE") ?? 1);
const outFile = options.out.startsWith("/") ? options.out : `${root}${options.out}`;
const scratch = await Deno.makeTempDir({ prefix: "voxssl-gpu-check-" });
const result: Record<string, unknown> = {
  mode: small ? "small (lavapipe scale)" : "gpu",
  startedAt: new Date().toISOString(),
};
const started = performance.now();

async function save(): Promise<void> {
  result.seconds = (performance.now() - started) / 1000;
  await Deno.mkdir(outFile.slice(0, outFile.lastIndexOf("/")) || ".", { recursive: true });
  const tmp = `${outFile}.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify(result, null, 2) + "\n");
  await Deno.rename(tmp, outFile);
}

console.log(`gpu check (${result.mode}) → ${outFile}`);
const doctor = await runPart(["run", "--allow-all", ...cached, "cli/main.ts", "doctor"], 45 * scale);
result.doctor = { ...doctor, stdout: undefined, output: doctor.stdout };
console.log(
  `doctor: ${doctor.timedOut ? "timed out" : `exit ${doctor.code}`} (${doctor.seconds.toFixed(0)} s)`,
);
await save();

const junit = `${scratch}/junit.xml`;
const files = small ? SMALL_TESTS : TESTS;
const tests = await runPart(
  ["test", "--allow-all", ...cached, "--no-check", `--junit-path=${junit}`, ...files], // type-checked by CI
  100 * scale,
);
let passed = 0, failed = 0, ignored = 0;
const failures: string[] = [];
try {
  const xml = await Deno.readTextFile(junit);
  for (const m of xml.matchAll(/<testcase\b([^>]*?)(\/>|>([\s\S]*?)<\/testcase>)/g)) {
    const body = m[3] ?? "";
    if (/<failure\b|<error\b/.test(body)) {
      failed++;
      failures.push(/name="([^"]*)"/.exec(m[1])?.[1] ?? "?");
    } else if (/<skipped\b/.test(body)) ignored++;
    else passed++;
  }
} catch { /* no report: the counts stay 0 and the tail says why */ }
result.tests = { ...tests, stdout: undefined, files, passed, failed, ignored, failures };
console.log(`tests: ${passed} passed, ${failed} failed, ${ignored} ignored (${tests.seconds.toFixed(0)} s)`);
await save();

const preset = small ? "lavapipe" : "gpu";
const benchRows: unknown[] = [];
result.bench = { preset, suites: benchRows };
for (const [suite, limit] of SUITES) {
  const json = `${scratch}/${suite}.json`;
  const part = await runPart(
    ["run", "--allow-all", ...cached, "bench/main.ts", "--preset", preset, "--suite", suite, "--json", json],
    limit * scale,
  );
  const report = await readJson(json) as
    | { rows?: unknown[]; ceilings?: unknown; adapter?: string }
    | undefined;
  benchRows.push({
    suite,
    ...part,
    stdout: undefined,
    adapter: report?.adapter,
    ceilings: report?.ceilings,
    rows: report?.rows,
  });
  console.log(
    `bench ${suite}: ${part.timedOut ? "timed out" : `exit ${part.code}`} (${part.seconds.toFixed(0)} s)`,
  );
  await save();
}

const e2eJson = `${scratch}/e2e.json`;
const e2eArgs = small
  ? ["--arch", "resenc-tiny,primus-tiny", "--patch", "16", "--batch", "1", "--preset", "lavapipe"]
  : ["--arch", "resenc-l,primus-m", "--patch", "160", "--batch", "2", "--preset", "gpu"];
const e2e = await runPart(
  [
    "run",
    "--allow-all",
    ...cached,
    "bench/e2e_main.ts",
    ...e2eArgs,
    "--precision",
    "mixed",
    "--json",
    e2eJson,
  ],
  120 * scale,
);
const e2eReport = await readJson(e2eJson) as { rows?: unknown[] } | undefined;
result.e2e = { ...e2e, stdout: undefined, output: e2e.stdout, rows: e2eReport?.rows };
console.log(`e2e: ${e2e.timedOut ? "timed out" : `exit ${e2e.code}`} (${e2e.seconds.toFixed(0)} s)`);
console.log(e2e.stdout);
await save();
await Deno.remove(scratch, { recursive: true });
console.log(`wrote ${outFile} after ${((performance.now() - started) / 1000).toFixed(0)} s`);
