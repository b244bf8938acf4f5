/**
 * The project's test command (`deno task test [filters...]`): runs `deno test` on tests/ and ends with
 * the plain summary line `N passed, N failed` that CI reads. Extra arguments go to `deno test`
 * (e.g. `deno task test tests/core/gpu` or `deno task test --filter matmul`). Without arguments it runs
 * tests/ and, with `--doc`, every code example in the JSDoc of mod.ts, testing.ts, core/, plugins/ and
 * examples/.
 *
 * Counting comes from Deno's JUnit report: one test case is one `Deno.test`; steps are not counted.
 * A crash of the test process with no report counts as one failure, so CI can never read a pass.
 */
// the suite, plus every documentation example of the public entry points and packages (`deno test --doc`)
const args = Deno.args.length > 0
  ? Deno.args
  : ["--doc", "tests/", "mod.ts", "testing.ts", "core/", "plugins/", "examples/"];
const junitPath = await Deno.makeTempFile({ prefix: "voxssl-junit-", suffix: ".xml" });
const child = new Deno.Command(Deno.execPath(), {
  // --parallel: one test module per CPU (DENO_JOBS overrides). Much of a module's time is single-threaded
  // (process start-up, shader compilation, CLI sub-runs), so 2 cores finish the suite well before 1 would.
  // Modules then share one process: a test must not change process-wide state (environment, cwd).
  args: ["test", "--allow-all", "--no-check=remote", "--parallel", `--junit-path=${junitPath}`, ...args],
  stdout: "inherit",
  stderr: "inherit",
  // the suite runs the reasoned conv/matmul tiles (deterministic); tests that tune attach their own tuner
  env: { VOXSSL_AUTOTUNE: Deno.env.get("VOXSSL_AUTOTUNE") ?? "0" },
}).spawn();
const status = await child.status;

let passed = 0;
let failed = 0;
let ignored = 0;
try {
  const xml = await Deno.readTextFile(junitPath);
  for (const match of xml.matchAll(/<testcase\b[^>]*?(\/>|>([\s\S]*?)<\/testcase>)/g)) {
    const body = match[2] ?? "";
    if (/<failure\b|<error\b/.test(body)) failed++;
    else if (/<skipped\b/.test(body)) ignored++;
    else passed++;
  }
} catch {
  // no report: fall through to the exit-status check below
}
await Deno.remove(junitPath).catch(() => {});
if (!status.success && failed === 0) failed = 1; // the run died before reporting any failure
if (ignored > 0) console.log(`${ignored} ignored (see messages above)`);
console.log(`${passed} passed, ${failed} failed`);
Deno.exit(failed > 0 ? 1 : 0);
