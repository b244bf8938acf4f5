/**
 * The memory model of a training step: `deno run --allow-all bench/memory_model.ts` measures the buffer
 * pool's peak for ResEnc-L and Primus-M with MAE at sizes a CPU machine holds, fits the model on the
 * smallest size, checks it against the larger measured sizes, and extrapolates to the OpenMind recipe
 * (160³, batch 2) against nnssl's 40 GB budget. The figures are in BENCHMARKS.md.
 *
 * The model, per architecture and precision, for a batch of B cubes of side S:
 *
 *   peak(S, B, a) = R(S) + B · S³ · c · a / 4
 *   R(S)          = R₀ + ρ · (P(S) − P(S₀))
 *
 * R is the resident memory (weights, gradients and optimizer state, in the pool between steps), ρ its bytes
 * per parameter and P(S) the parameter count (Primus' position embedding grows with the patch); c is the
 * activation memory per voxel of one sample (the step's peak above R₀, measured at the calibration size S₀
 * in f32, so a = 4); `a` is the bytes of an activation element: 4 for f32 activations, 2 when every
 * activation is stored in f16. "Mixed today" is measured as its own precision (c from a mixed run, a = 4),
 * because today's autocast keeps f32 activations and adds f16 copies. The same form models the pool's
 * reserved bytes (its cached free buffers included), the figure a device budget has to hold.
 *
 * Measurements run on a device in count-only mode (GpuOptions.countOnly): every buffer is handed out and
 * given back exactly as in a real step (the same peak, byte for byte: tests/core/gpu/count_only_test.ts),
 * but no kernel runs, so a ResEnc-L step at 96³ takes seconds on lavapipe instead of hours. Each size runs
 * in its own process (`--measure arch,side,batch,precision` prints one JSON line).
 *
 * @module
 */
import { builtinRegistry } from "../cli/builtins.ts";
import { createGpu, setDefaultGpu } from "../core/gpu/mod.ts";
import { resolveRunConfig, RunConfigSchema } from "../core/train/mod.ts";
import { openBenchRun } from "./bench_run.ts";

/** One measured step. */
export interface MemoryMeasurement {
  arch: string;
  side: number;
  batch: number;
  precision: "f32" | "mixed";
  /** Trainable parameters of the run (network and method modules). */
  parameters: number;
  /** Bytes in use between steps. */
  resting: number;
  /** Peak bytes in use during the second step. */
  peak: number;
  /** Bytes the pool holds after the second step (in use and cached). */
  reserved: number;
}

/** The fitted model of one architecture and precision. */
export interface MemoryModel {
  /** Resident bytes at the calibration size. */
  resident: number;
  /** Resident bytes per parameter. */
  bytesPerParameter: number;
  /** Parameters at the calibration size. */
  parameters: number;
  /** Peak bytes above resident per voxel of one sample, with 4-byte activations. */
  peakPerVoxel: number;
  /** Reserved bytes above resident per voxel of one sample, with 4-byte activations. */
  reservedPerVoxel: number;
}

/** Fits the model on one measurement (the calibration size). */
export function fitMemoryModel(m: MemoryMeasurement): MemoryModel {
  const voxels = m.batch * m.side ** 3;
  return {
    resident: m.resting,
    bytesPerParameter: m.resting / m.parameters,
    parameters: m.parameters,
    peakPerVoxel: (m.peak - m.resting) / voxels,
    reservedPerVoxel: (m.reserved - m.resting) / voxels,
  };
}

/**
 * Predicted peak and reserved bytes for `batch` cubes of `side` with `parameters` parameters, activations
 * of `activationBytes` bytes (4: f32, 2: f16).
 */
export function predictMemory(
  model: MemoryModel,
  side: number,
  batch: number,
  parameters: number,
  activationBytes = 4,
): { peak: number; reserved: number } {
  const resident = model.resident + model.bytesPerParameter * (parameters - model.parameters);
  const voxels = batch * side ** 3 * (activationBytes / 4);
  return {
    peak: resident + voxels * model.peakPerVoxel,
    reserved: resident + voxels * model.reservedPerVoxel,
  };
}

async function measure(arch: string, side: number, batch: number, precision: "f32" | "mixed") {
  const gpu = await createGpu({ countOnly: true });
  setDefaultGpu(gpu);
  const bench = await openBenchRun(gpu, { arch, method: "mae", patch: [side, side, side], batch, precision });
  await bench.step();
  gpu.pool.resetPeak();
  const resting = gpu.pool.stats().bytesInUse;
  await bench.step();
  const { peakBytesInUse: peak, bytesReserved: reserved } = gpu.pool.stats();
  const m: MemoryMeasurement = {
    arch,
    side,
    batch,
    precision,
    parameters: bench.run.model.parameterCount(),
    resting,
    peak,
    reserved,
  };
  console.log(JSON.stringify(m));
  Deno.exit(0); // nothing ran on the device; no need to wait for it
}

/** Parameters of `arch` with MAE at `side` (network and method modules), counted without a device. */
function parameterCount(arch: string, side: number, measured: MemoryMeasurement): number {
  const registry = builtinRegistry();
  const parsed = RunConfigSchema.parse({ arch, method: "mae", patch: [side, side, side], data: "synthetic" });
  const a = registry.architecture(parsed.arch);
  const config = resolveRunConfig(parsed, a, registry.method(parsed.method));
  const count = (s: number) =>
    a.plugin.countParameters!(config.resolvedArch.config, {
      inChannels: 1,
      outChannels: 1,
      patchSize: [s, s, s],
      encoderOnly: false,
    });
  // the method's own modules do not depend on the size: the measured run's count minus its network's
  return measured.parameters + count(side) - count(measured.side);
}

const GB = 1e9;
const fmt = (bytes: number) => `${(bytes / GB).toFixed(2)} GB`;

/** Runs `--measure` in a child process, or reuses the measurement cached in `cache`. */
async function measured(
  cache: Map<string, MemoryMeasurement>,
  arch: string,
  side: number,
  batch: number,
  precision: "f32" | "mixed",
): Promise<MemoryMeasurement> {
  const key = `${arch},${side},${batch},${precision}`;
  const known = cache.get(key);
  if (known) return known;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", new URL(import.meta.url).pathname, "--measure", key],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const line = new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!;
  if (out.code !== 0 || !line) throw new Error(`measuring ${key} failed (exit ${out.code})`);
  const m = JSON.parse(line) as MemoryMeasurement;
  cache.set(key, m);
  console.error(line);
  return m;
}

if (import.meta.main) {
  const measureArg = Deno.args.indexOf("--measure");
  if (measureArg >= 0) {
    const [arch, side, batch, precision] = Deno.args[measureArg + 1].split(",");
    await measure(arch, Number(side), Number(batch), precision as "f32" | "mixed");
  }
  // measurements are kept in a cache file, so a rerun only measures what is missing
  const cacheFile = Deno.args[Deno.args.indexOf("--cache") + 1] ?? "out/memory_measurements.json";
  const cache = new Map<string, MemoryMeasurement>(
    Object.entries(JSON.parse(await Deno.readTextFile(cacheFile).catch(() => "{}"))),
  );
  const sides = [32, 64, 96];
  const batch = 2;
  const rows: string[] = [];
  const checks: string[] = [];
  const pct = (model: number, real: number) => `${(100 * (model - real) / real).toFixed(1)}%`;
  for (const arch of ["resenc-l", "primus-m"]) {
    for (const precision of ["f32", "mixed"] as const) {
      const list: MemoryMeasurement[] = [];
      for (const side of sides) list.push(await measured(cache, arch, side, batch, precision));
      // the direct count at the target size: a check of the extrapolation, not an input of the model
      const target = await measured(cache, arch, 160, 2, precision);
      await Deno.mkdir("out", { recursive: true });
      await Deno.writeTextFile(cacheFile, JSON.stringify(Object.fromEntries(cache), null, 2));
      const model = fitMemoryModel(list[0]);
      // reserved: the cached free buffers add a fixed part, so its slope is fitted on the two smallest sizes
      const slope = (list[1].reserved - list[0].reserved) / (batch * (list[1].side ** 3 - list[0].side ** 3));
      const reserved = (m: MemoryMeasurement) =>
        list[0].reserved + slope * (m.batch * m.side ** 3 - batch * list[0].side ** 3);
      for (const m of [...list.slice(1), target]) {
        const p = predictMemory(model, m.side, m.batch, parameterCount(arch, m.side, list[0]));
        const r = reserved(m);
        checks.push(
          `| ${arch} | ${precision} | ${m.side}³${m.side === 160 ? " (counted)" : ""} | ${fmt(m.peak)} | ${
            fmt(p.peak)
          } | ${pct(p.peak, m.peak)} | ${fmt(m.reserved)} | ${
            m.side > list[1].side ? `${fmt(r)} | ${pct(r, m.reserved)}` : "(fit) | "
          } |`,
        );
      }
      const params = parameterCount(arch, 160, list[0]);
      const scenarios: [string, number][] = precision === "f32"
        ? [["f32", 4], ["f16 activations (model)", 2]]
        : [["mixed today", 4]];
      for (const [label, bytes] of scenarios) {
        const p = predictMemory(model, 160, 2, params, bytes);
        const fits = p.peak <= 40 * GB ? "fits" : "does not fit yet";
        rows.push(`| ${arch} | ${label} | ${fmt(p.peak)} | ${fits} |`);
      }
      console.error(
        `${arch} ${precision}: resident ${fmt(model.resident)} (${
          model.bytesPerParameter.toFixed(2)
        } B/parameter), ` +
          `${model.peakPerVoxel.toFixed(0)} B peak per voxel; reserved slope ${slope.toFixed(0)} B per voxel`,
      );
    }
  }
  console.log(
    "| architecture | precision | size (batch 2) | measured peak | model | error | measured reserved | model | error |",
  );
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const c of checks) console.log(c);
  console.log("\n| architecture | at 160³, batch 2 | peak in use (model) | 40 GB |");
  console.log("| --- | --- | --- | --- |");
  for (const r of rows) console.log(r);
}
