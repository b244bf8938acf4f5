/**
 * `deno task bench [--preset lavapipe|gpu] [--suite NAME]... [--json FILE]`: measures the adapter's
 * ceilings, then runs the suites and prints one row per kernel and shape (with the adapter's name).
 * The preset defaults to "lavapipe" on a CPU adapter and "gpu" otherwise.
 */
import { Command } from "@commander-js/extra-typings";
import { createGpu } from "../core/gpu/mod.ts";
import { setDefaultGpu } from "../core/gpu/mod.ts";
import { measureCeilings } from "./ceilings.ts";
import { type BenchPreset, type BenchRow, formatRow } from "./harness.ts";
import { suites } from "./suites.ts";

const options = new Command()
  .name("bench")
  .option("--preset <preset>", "lavapipe | gpu (default: from the adapter)")
  .option("--suite <name...>", "run only these suites")
  .option("--json <file>", "also write the results as JSON")
  .parse(Deno.args, { from: "user" })
  .opts();

const gpu = await createGpu();
setDefaultGpu(gpu);
const info = gpu.adapterInfo;
const cpuAdapter = /llvmpipe|lavapipe|swiftshader/i.test(`${info.description} ${info.device}`);
const preset = (options.preset ?? (cpuAdapter ? "lavapipe" : "gpu")) as BenchPreset;
if (preset !== "lavapipe" && preset !== "gpu") {
  throw new Error(`--preset: expected lavapipe or gpu, got ${preset}`);
}
const adapter = info.description || `${info.vendor} ${info.device}`;
console.log(`adapter: ${adapter} (backend ${gpu.backend}); preset ${preset}; ${new Date().toISOString()}`);

const ceilings = await measureCeilings(gpu, preset);
console.log(
  `ceilings: FMA f32 ${ceilings.fmaF32Gflops.toFixed(1)} GFLOP/s` +
    (ceilings.fmaF16Gflops ? `, FMA f16 ${ceilings.fmaF16Gflops.toFixed(1)} GFLOP/s` : "") +
    `, copy ${ceilings.copyGBps.toFixed(1)} GB/s`,
);

const rows: BenchRow[] = [];
for (const suite of suites) {
  if (options.suite && !options.suite.includes(suite.name)) continue;
  console.log(`\n# ${suite.name}`);
  await suite.run({
    gpu,
    preset,
    ceilings,
    report(row) {
      rows.push(row);
      console.log(formatRow(row));
    },
    log: (line) => console.log(line),
  });
}
if (options.json) {
  await Deno.writeTextFile(
    options.json,
    JSON.stringify(
      { adapter, backend: gpu.backend, preset, date: new Date().toISOString(), ceilings, rows },
      null,
      2,
    ),
  );
  console.log(`\nwrote ${options.json}`);
}
