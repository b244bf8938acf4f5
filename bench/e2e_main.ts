/**
 * `deno run --allow-all bench/e2e_main.ts --arch resenc-l,primus-m [--patch 160] [--batch 2]
 * [--precision mixed] [--json FILE]`: the e2e measurement (bench/e2e_bench.ts) of chosen architectures with
 * MAE at one size: steps/s, peak memory and the profiler's table of a step. scripts/gpu_check.sh runs it
 * for the OpenMind recipe (160³, batch 2, mixed); its scaled-down mode on the tiny architectures.
 */
import { Command } from "@commander-js/extra-typings";
import { createGpu, setDefaultGpu } from "../core/gpu/mod.ts";
import { formatProfileTable, type ProfileReport, type RunConfigInput } from "../core/train/mod.ts";
import { runE2eCase } from "./e2e_bench.ts";
import { type BenchRow, formatRow } from "./harness.ts";

const options = new Command()
  .name("e2e")
  .requiredOption("--arch <names>", "comma-separated architectures, e.g. resenc-l,primus-m")
  .option("--patch <n>", "cubic patch size (default: the method's, 160)")
  .option("--batch <n>", "batch size (default: the method's, 2)")
  .option("--precision <mode>", "f32 or mixed", "mixed")
  .option("--preset <preset>", "lavapipe | gpu: warm-up and timed steps (default gpu)", "gpu")
  .option("--json <file>", "write the rows as JSON")
  .parse(Deno.args, { from: "user" })
  .opts();

const gpu = await createGpu();
setDefaultGpu(gpu);
const rows: BenchRow[] = [];
for (const arch of options.arch.split(",")) {
  const size = Number(options.patch);
  const config: RunConfigInput = {
    arch,
    method: "mae",
    precision: options.precision as "f32" | "mixed",
    ...(options.patch ? { patch: [size, size, size] } : {}),
    ...(options.batch ? { batch: Number(options.batch) } : {}),
  };
  await runE2eCase({
    gpu,
    preset: options.preset === "lavapipe" ? "lavapipe" : "gpu",
    ceilings: { fmaF32Gflops: 0, copyGBps: 0 },
    report(row) {
      rows.push(row);
      console.log(formatRow(row));
      const profile = row.details?.profile as ProfileReport | undefined;
      if (profile) console.log(formatProfileTable({ ...profile, memory: { ...profile.memory, events: [] } }));
    },
    log: (line) => console.log(line),
  }, { name: `mae ${arch} ${options.precision}`, config });
}
if (options.json) {
  await Deno.writeTextFile(
    options.json,
    JSON.stringify({ adapter: gpu.adapterInfo.description, rows }, null, 2),
  );
}
