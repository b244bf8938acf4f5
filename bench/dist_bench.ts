/**
 * The `dist` suite: MPI allreduce bandwidth, f16 transfer and the gradient-averaging overlap with 2 ranks
 * on this machine (loopback/shared memory), measured by bench/dist_rank.ts under `mpiexec -n 2`. Without
 * mpiexec the suite says so and reports nothing. The rows feed the step-time model in docs/distributed.md.
 */
import type { BenchRow, BenchSuite } from "./harness.ts";

/** The distributed-training suite. */
export const distSuite: BenchSuite = {
  name: "dist",
  gpuSeconds: 15,
  async run({ preset, report, log }) {
    const rank = new URL("./dist_rank.ts", import.meta.url).pathname;
    let output: Deno.CommandOutput;
    try {
      output = await new Deno.Command("mpiexec", {
        args: ["-n", "2", Deno.execPath(), "run", "--allow-all", rank, preset],
        stdout: "piped",
        stderr: "piped",
      }).output();
    } catch {
      log("dist: mpiexec not found (apt-get install mpich); suite skipped");
      return;
    }
    const text = new TextDecoder().decode(output.stdout);
    if (!output.success) {
      throw new Error(`dist: mpiexec failed:\n${text}\n${new TextDecoder().decode(output.stderr)}`);
    }
    for (const line of text.split("\n")) {
      if (line.startsWith("ROW ")) report(JSON.parse(line.slice(4)) as BenchRow);
    }
  },
};
