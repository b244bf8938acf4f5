/**
 * The memory model of a training step: `deno run --allow-all bench/memory_model.ts` counts the buffer
 * pool's peak for ResEnc-L and Primus-M with MAE at several sizes, fits the model on the two smallest,
 * checks it against the larger ones (the target size included, counted directly), and extrapolates to the
 * OpenMind recipe (160³, batch 2) against nnssl's 40 GB budget. The figures are in BENCHMARKS.md.
 *
 * The model, per architecture and precision, for a batch of B cubes of side S:
 *
 *   peak(S, B, a) = R(S) + F + B · S³ · c · a / 4 + A(S, B)
 *   R(S)          = R₀ + ρ · (P(S) − P(S₀))
 *
 * R is the resident memory (weights, gradients and optimizer state: the pool between steps), P(S) the
 * parameter count (Primus' position embedding grows with the patch) and ρ the resident bytes per added
 * parameter; F is what a step holds whatever its size (under today's mixed precision mostly the f16 copies
 * of the weights, saved for backward) and c the activation memory per voxel of one sample. c, F and ρ are
 * fitted on the two smallest sizes. A is the largest scratch of one attention backward (the fused
 * backward's dQ slabs: one per block of 128 keys up to a cap, so not linear in S³): measured at every size
 * (`watchAttentionBackward`), taken out before the fit, and planned at other sizes by
 * `attentionBackwardPlan` from the attention shapes of the first fit size, tokens scaled with the voxels. `a` is the input for the dtype of stored activations: 4 bytes (f32).
 * "f16 activations" is the f32 fit with a = 2 plus 2 bytes per parameter for f16 weight copies (what issue
 * 16's f16 activations aim for); "mixed today" is its own fit (a = 4), because today's autocast keeps f32
 * activations and adds f16 copies. The pool's reserved bytes (its cached free buffers included: the figure a
 * device has to hold) get the same form, fitted the same way.
 *
 * Measurements run on a device in count-only mode (GpuOptions.countOnly): every buffer is handed out and
 * given back exactly as in a real step (the same events, byte for byte: tests/core/gpu/count_only_test.ts),
 * but no kernel runs, so a ResEnc-L step at 160³ is counted in a minute on lavapipe. Each size runs in its
 * own process (`--measure arch,side,batch,precision` prints one JSON line); measurements are cached in
 * `out/memory_measurements.json` (`--cache FILE`), so a rerun counts only what is missing.
 *
 * @module
 */
import { builtinRegistry } from "../cli/builtins.ts";
import { createGpu, type Gpu, setDefaultGpu } from "../core/gpu/mod.ts";
import { attentionBackwardPlan, type AttentionShape, watchAttentionBackward } from "../kernels/mod.ts";
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
  /** The attention backwards of the second step (distinct shapes; none for a CNN). */
  attention?: AttentionShape[];
  /** The largest scratch of one attention backward (the fused backward's dQ slabs), bytes. */
  attentionScratch?: number;
}

/** The fitted model of one architecture and precision. */
export interface MemoryModel {
  /** Resident bytes at the first fit size. */
  resident: number;
  /** Parameters at the first fit size. */
  parameters: number;
  /** Resident bytes per parameter added (fitted; 0 when both fit sizes have the same parameters). */
  residentPerParameter: number;
  /** Bytes a step holds above resident whatever its size (for the peak; for reserved). */
  fixed: { peak: number; reserved: number };
  /** Bytes per voxel of one sample above resident and fixed, with 4-byte activations. */
  perVoxel: { peak: number; reserved: number };
  /**
   * The attention calls per unit of size: tokens (lq, lk) per voxel of one sample and heads per sample
   * (ViTs: tokens ∝ voxels), to plan the backward's scratch at any size.
   */
  attention: AttentionShape[];
}

/**
 * Fits the model on two measurements of one architecture and precision at different sizes. The attention
 * backward's scratch is not linear in the voxels (its dQ slabs grow with the key blocks up to a cap), so
 * it is taken out before the fit and added back by {@link predictMemory} from the planner.
 */
export function fitMemoryModel(m0: MemoryMeasurement, m1: MemoryMeasurement): MemoryModel {
  const v0 = m0.batch * m0.side ** 3, v1 = m1.batch * m1.side ** 3;
  if (v0 === v1) throw new RangeError("fitMemoryModel: the two measurements need different sizes");
  const slope = (f: (m: MemoryMeasurement) => number) => (f(m1) - f(m0)) / (v1 - v0);
  const scratch = (m: MemoryMeasurement) => m.attentionScratch ?? 0;
  const peak = slope((m) => m.peak - m.resting - scratch(m));
  const reserved = slope((m) => m.reserved - m.resting - scratch(m));
  return {
    attention: (m0.attention ?? []).map((a) => ({
      ...a,
      lq: a.lq / m0.side ** 3,
      lk: a.lk / m0.side ** 3,
      heads: a.heads / m0.batch,
    })),
    resident: m0.resting,
    parameters: m0.parameters,
    residentPerParameter: m1.parameters === m0.parameters
      ? 0
      : (m1.resting - m0.resting) / (m1.parameters - m0.parameters),
    fixed: {
      peak: m0.peak - m0.resting - scratch(m0) - peak * v0,
      reserved: m0.reserved - m0.resting - scratch(m0) - reserved * v0,
    },
    perVoxel: { peak, reserved },
  };
}

/**
 * Predicted peak and reserved bytes for `batch` cubes of `side` with `parameters` parameters, activations
 * of `activationBytes` bytes (4: f32, 2: f16) and `extraFixed` more bytes held whatever the size; with a
 * device, plus the largest attention backward scratch its planner gives at that size.
 */
export function predictMemory(
  model: MemoryModel,
  side: number,
  batch: number,
  parameters: number,
  activationBytes = 4,
  extraFixed = 0,
  gpu?: Gpu,
): { peak: number; reserved: number } {
  const resident = model.resident + model.residentPerParameter * (parameters - model.parameters) + extraFixed;
  const voxels = batch * side ** 3;
  const scratch = gpu
    ? Math.max(
      0,
      ...model.attention.map((a) => {
        const s = {
          ...a,
          lq: Math.round(a.lq * side ** 3),
          lk: Math.round(a.lk * side ** 3),
          heads: Math.round(a.heads * batch),
        };
        return attentionBackwardPlan(gpu, s).dqPartials * 4;
      }),
    )
    : 0;
  const activations = voxels * (activationBytes / 4);
  return {
    peak: resident + model.fixed.peak + activations * model.perVoxel.peak + scratch,
    reserved: resident + model.fixed.reserved + activations * model.perVoxel.reserved + scratch,
  };
}

async function measure(arch: string, side: number, batch: number, precision: "f32" | "mixed") {
  const gpu = await createGpu({ countOnly: true });
  setDefaultGpu(gpu);
  const bench = await openBenchRun(gpu, { arch, method: "mae", patch: [side, side, side], batch, precision });
  await bench.step();
  gpu.pool.resetPeak();
  const resting = gpu.pool.stats().bytesInUse;
  const attention = new Map<string, AttentionShape>();
  let attentionScratch = 0;
  const unwatch = watchAttentionBackward(gpu, (s, plan) => {
    attention.set(JSON.stringify(s), s);
    attentionScratch = Math.max(attentionScratch, plan.dqPartials * 4);
  });
  await bench.step();
  unwatch();
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
    attention: [...attention.values()],
    attentionScratch,
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
    stderr: "piped",
  }).output();
  const line = new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!;
  if (out.code !== 0 || !line) {
    const stderr = new TextDecoder().decode(out.stderr);
    const reason = /Caused by: (.*)/.exec(stderr)?.[1] ?? stderr.trim().split("\n")[0];
    throw new Error(`measuring ${key} failed: ${reason}`);
  }
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
  const cacheArg = Deno.args.indexOf("--cache");
  const cacheFile = cacheArg >= 0 ? Deno.args[cacheArg + 1] : "out/memory_measurements.json";
  const cache = new Map<string, MemoryMeasurement>(
    Object.entries(JSON.parse(await Deno.readTextFile(cacheFile).catch(() => "{}"))),
  );
  const sides = [32, 64, 96]; // fitted on the first two, checked on the third and on 160³
  // the attention backward's scratch at each size comes from the planner, on this adapter's limits
  const planner = await createGpu({ countOnly: true });
  const batch = 2;
  const fits: string[] = [];
  const checks: string[] = [];
  const targets: string[] = [];
  const notes: string[] = [];
  const pct = (model: number, real: number) => `${(100 * (model - real) / real).toFixed(1)}%`;
  for (const arch of ["resenc-l", "primus-m"]) {
    for (const precision of ["f32", "mixed"] as const) {
      const list: MemoryMeasurement[] = [];
      for (const side of sides) list.push(await measured(cache, arch, side, batch, precision));
      // the direct count at the target size checks the extrapolation (batch 1 where batch 2 cannot be
      // recorded on this adapter, e.g. above its binding limit)
      const target = await measured(cache, arch, 160, 2, precision).catch((error) => {
        notes.push(`${arch} ${precision} at 160³, batch 2, not counted: ${(error as Error).message}`);
        return measured(cache, arch, 160, 1, precision);
      });
      await Deno.mkdir(cacheFile.slice(0, cacheFile.lastIndexOf("/")) || ".", { recursive: true });
      await Deno.writeTextFile(cacheFile, JSON.stringify(Object.fromEntries(cache), null, 2) + "\n");
      const model = fitMemoryModel(list[0], list[1]);
      fits.push(
        `| ${arch} | ${precision} | ${fmt(model.resident)} | ${fmt(model.fixed.peak)} | ` +
          `${model.perVoxel.peak.toFixed(0)} B | ${fmt(model.fixed.reserved)} | ${
            model.perVoxel.reserved.toFixed(0)
          } B |`,
      );
      for (const m of [...list, target]) {
        const p = predictMemory(model, m.side, m.batch, parameterCount(arch, m.side, list[0]), 4, 0, planner);
        const role = m === list[0] || m === list[1] ? " (fit)" : m === target ? " (counted)" : "";
        checks.push(
          `| ${arch} | ${precision} | ${m.side}³, batch ${m.batch}${role} | ${fmt(m.peak)} | ${
            fmt(p.peak)
          } | ` +
            `${pct(p.peak, m.peak)} | ${fmt(m.reserved)} | ${fmt(p.reserved)} | ${
              pct(p.reserved, m.reserved)
            } |`,
        );
      }
      const params = parameterCount(arch, 160, list[0]);
      const scenarios: [string, number, number][] = precision === "f32"
        ? [["f32", 4, 0], ["f16 activations (a = 2, + f16 weight copies)", 2, 2 * params]]
        : [["mixed today", 4, 0]];
      for (const [label, bytes, extra] of scenarios) {
        const p = predictMemory(model, 160, 2, params, bytes, extra, planner);
        targets.push(
          `| ${arch} | ${label} | ${fmt(p.peak)} | ${fmt(p.reserved)} | ${
            p.peak <= 40 * GB ? "fits" : "does not fit yet"
          } |`,
        );
      }
    }
  }
  for (const note of notes) console.log(`note: ${note}\n`);
  console.log(
    "| architecture | precision | resident R₀ | fixed F (peak) | c (peak) | fixed F (reserved) | c (reserved) |",
  );
  console.log("| --- | --- | --- | --- | --- | --- | --- |");
  for (const f of fits) console.log(f);
  console.log(
    "\n| architecture | precision | size | counted peak | model | error | counted reserved | model | error |",
  );
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const c of checks) console.log(c);
  console.log(
    "\n| architecture | at 160³, batch 2 | peak in use (model) | reserved (model) | 40 GB (peak) |",
  );
  console.log("| --- | --- | --- | --- | --- |");
  for (const t of targets) console.log(t);
}
