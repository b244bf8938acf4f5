/**
 * `voxssl benchmark --dry-run` as a user runs it: the spec file is read and validated, the grid listed,
 * and cells finished earlier (here by the library with the fake runner) are marked done.
 */
import { assert, assertEquals } from "../assert.ts";
import { parseBenchmarkSpec, runBenchmark } from "../../core/eval/benchmark/mod.ts";
import { FAKE_SPEC, FakeRunner } from "../core/eval/benchmark/fake_runner.ts";
import { voxssl } from "./cli.ts";

Deno.test("voxssl benchmark --dry-run lists the grid and the finished cells", async () => {
  const dir = await Deno.makeTempDir({ prefix: "voxssl-bench-cli-" });
  const specFile = `${dir}/spec.json`;
  await Deno.writeTextFile(specFile, JSON.stringify({ ...FAKE_SPEC, out: "results" }));
  // finish the first 3 cells through the library
  const controller = new AbortController();
  const runner = new FakeRunner();
  runner.onCell = (_c, call) => {
    if (call === 4) {
      controller.abort();
      throw new Error("stop");
    }
  };
  await runBenchmark({
    spec: parseBenchmarkSpec(FAKE_SPEC, specFile, dir),
    out: `${dir}/results`,
    runner,
    signal: controller.signal,
    writer: { core: "0.2.0" },
  });
  const { code, stdout, stderr } = await voxssl(["benchmark", specFile, "--dry-run"]);
  assertEquals(code, 0, stderr);
  assert(stdout.includes(`results folder: ${dir}/results`), stdout);
  assert(stdout.includes("todo  pretrain mae (mae) on resenc-tiny") === false, "the pretraining finished");
  assert(stdout.includes("done  pretrain mae (mae) on resenc-tiny"), stdout);
  assertEquals(
    stdout.split("\n").filter((l) => l.startsWith("done  scratch") || l.startsWith("done  mae")).length,
    3,
  );
  assert(stdout.includes("16 cells, 3 finished; 1 pretraining runs"), stdout);
  await Deno.remove(dir, { recursive: true });
});
