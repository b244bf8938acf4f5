/**
 * One rank of the 2-rank MPI tests (tests/core/dist/mpi_test.ts starts it under `mpiexec -n 2`):
 *
 *   unit   collectives, stop agreement, all-gathers, the gradient equivalence against a float64
 *          reference, identical parameters and loss-scale decisions on every rank. Fails (exit ≠ 0) on
 *          the first broken check.
 *   train  a data-parallel `runPretraining` of the tiny test plugins into `--out`; `--signal-at S` makes
 *          rank 1 alone send itself SIGTERM while step S is being drawn; `--resume` continues. Rank 0
 *          prints `SUMMARY <json>` with every rank's run summary.
 */
import {
  agreeOnStop,
  allGatherJson,
  allGatherRows,
  backward,
  type BatchSource,
  broadcastText,
  closeRun,
  dataParallel,
  GradientSync,
  initDistributed,
  initGpu,
  mul,
  openRun,
  type ParameterGroup,
  resolveRunConfig,
  RunConfigSchema,
  runPretraining,
  sampleArray,
  sum,
  tensor,
  trainStep,
  VERSION,
} from "@voxssl/core";
import { affineTarget, voxelMlp } from "../../fixtures/tiny_plugins.ts";
import { seededRandom } from "../../helpers.ts";

const dist = initDistributed();
const mpi = dist.mpi;
if (!mpi || dist.size !== 2) throw new Error(`start me with mpiexec -n 2 (got ${dist.size} process)`);
const gpu = await initGpu();
const U = 2 ** -24; // unit roundoff of f32

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`rank ${dist.rank}: ${what}`);
}

const PATCH: [number, number, number] = [4, 4, 4];
const VOXELS = PATCH[0] * PATCH[1] * PATCH[2];

/** The global batch of a step: `global` random volumes; rank r takes rows r·b … r·b + b − 1. */
function globalImages(seed: number, step: number, global: number): Float32Array {
  const next = seededRandom(seed * 100_003 + step);
  return Float32Array.from({ length: global * VOXELS }, () => next() * 2 - 1);
}

/** A source of rows `first … first + count − 1` of each step's global batch. */
function shareSource(seed: number, global: number, first: number, count: number): BatchSource {
  return {
    batch(step) {
      const rows = globalImages(seed, step, global).slice(first * VOXELS, (first + count) * VOXELS);
      return Promise.resolve({ arrays: { image: sampleArray(rows, [count, 1, ...PATCH]) } });
    },
    close: () => Promise.resolve(),
  };
}

function configFor(out: string, batch: number, extra: Record<string, unknown> = {}) {
  const parsed = RunConfigSchema.parse({
    arch: "voxel-mlp-tiny",
    method: "affine-target",
    epochs: 2,
    stepsPerEpoch: 3,
    logEvery: 1,
    validationBatches: 0,
    batch,
    patch: PATCH,
    out,
    ...extra,
  });
  return resolveRunConfig(parsed, { plugin: voxelMlp, size: "tiny" }, affineTarget);
}

async function readGroups(groups: ParameterGroup[], part: "grads" | "params"): Promise<Float32Array> {
  const arrays = await Promise.all(groups.map((g) => g[part].whole.toArray()));
  return Float32Array.from(arrays.flatMap((a) => [...a]));
}

/** name → values of each parameter (or its gradient) of the packed groups. */
async function named(groups: ParameterGroup[], part: "grads" | "params"): Promise<Map<string, number[]>> {
  const out = new Map<string, number[]>();
  for (const g of groups) {
    const parts = g[part].parts;
    for (const [i, name] of g.names.entries()) out.set(name, [...await parts[i].toArray()]);
  }
  return out;
}

function bitsEqualOnAllRanks(values: Float32Array, what: string): void {
  const all = mpi!.allgather(new Int32Array(values.buffer, values.byteOffset, values.length));
  const n = values.length;
  for (let i = 0; i < n; i++) check(all[i] === all[n + i], `${what} differ between ranks at ${i}`);
}

/**
 * The float64 gradient of affine-target's loss mean((fc2(relu(fc1(x))) − (2x + 1))²) over all voxels of
 * the global batch, and per element the sum of the absolute values of the terms that make it up (the
 * scale of its rounding error).
 */
function referenceGradient(p: Map<string, number[]>, x: Float32Array) {
  const w1 = p.get("network.fc1.weight")!, b1 = p.get("network.fc1.bias")!;
  const w2 = p.get("network.fc2.weight")!, b2 = p.get("network.fc2.bias")!;
  const hidden = w1.length, m = x.length;
  const g = {
    w1: new Array(hidden).fill(0),
    b1: new Array(hidden).fill(0),
    w2: new Array(hidden).fill(0),
    b2: [0],
  };
  const a = structuredClone(g);
  for (const xv of x) {
    const z = w1.map((w, k) => w * xv + b1[k]);
    const h = z.map((v) => Math.max(v, 0));
    const y = h.reduce((s, hk, k) => s + w2[k] * hk, b2[0]);
    const dy = (2 * (y - (2 * xv + 1))) / m;
    g.b2[0] += dy, a.b2[0] += Math.abs(dy);
    for (let k = 0; k < hidden; k++) {
      g.w2[k] += dy * h[k], a.w2[k] += Math.abs(dy * h[k]);
      const dz = z[k] > 0 ? dy * w2[k] : 0;
      g.w1[k] += dz * xv, a.w1[k] += Math.abs(dz * xv);
      g.b1[k] += dz, a.b1[k] += Math.abs(dz);
    }
  }
  const keys = {
    w1: "network.fc1.weight",
    b1: "network.fc1.bias",
    w2: "network.fc2.weight",
    b2: "network.fc2.bias",
  };
  const value = new Map<string, number[]>(), scale = new Map<string, number[]>();
  for (const [k, name] of Object.entries(keys)) {
    value.set(name, g[k as keyof typeof g]);
    scale.set(name, a[k as keyof typeof a]);
  }
  return { value, scale, terms: m };
}

/**
 * |g − g64| within the worst-case f32 error of summing `terms` terms in any order (Higham's bound
 * γ_n·Σ|t|, n = terms) plus a few roundings per term (forward and backward of two layers: 16·u·|t|).
 */
function withinReference(
  g: Map<string, number[]>,
  ref: ReturnType<typeof referenceGradient>,
  what: string,
): number {
  const gamma = (ref.terms * U) / (1 - ref.terms * U) + 16 * U;
  let worst = 0;
  for (const [name, expected] of ref.value) {
    const got = g.get(name)!;
    const scale = ref.scale.get(name)!;
    expected.forEach((e, i) => {
      const tol = gamma * scale[i];
      const error = Math.abs(got[i] - e);
      const ratio = error === 0 ? 0 : error / tol; // a dead ReLU unit: exactly 0 in both
      worst = Math.max(worst, ratio);
      check(ratio <= 1, `${what}: ${name}[${i}] = ${got[i]}, float64 reference ${e}, bound ${tol}`);
    });
  }
  return worst;
}

async function unit(): Promise<void> {
  // collectives and the stop agreement
  const x = new Float64Array([dist.rank + 1, -dist.rank]);
  mpi!.allreduce(x, "sum");
  check(x[0] === 3 && x[1] === -1, `allreduce sum: ${[...x]}`);
  const big = Float32Array.from({ length: 100_000 }, (_, i) => i * (dist.rank + 1));
  const request = mpi!.iallreduce(big, "max");
  await request.done();
  check(big[99_999] === 99_999 * 2, `iallreduce max: ${big[99_999]}`);
  check(agreeOnStop(mpi, undefined) === undefined, "no stop requested, but the agreement says stop");
  // each rank starts from its own text (lengths differ too): rank 0's arrives everywhere
  const agreed = broadcastText(mpi, dist.rank === 0 ? "runs/from-rank-0-é" : "r1");
  check(agreed === "runs/from-rank-0-é", `broadcastText: rank ${dist.rank} got ${JSON.stringify(agreed)}`);
  check(
    agreeOnStop(mpi, dist.rank === 1 ? "SIGTERM" : undefined) === "SIGTERM",
    "a stop on rank 1 alone must stop every rank",
  );
  const json = allGatherJson(mpi, { rank: dist.rank, text: "é".repeat(dist.rank * 3) });
  check(
    JSON.stringify(json) === JSON.stringify([{ rank: 0, text: "" }, { rank: 1, text: "ééé" }]),
    "allGatherJson",
  );

  // allGatherRows: rank-ordered rows; the gradient reaches only this rank's rows
  const localValues = [1, 2, 3, 4, 5, 6].map((v) => v + 10 * dist.rank);
  const local = tensor(localValues, [2, 3], { gpu, requiresGrad: true });
  const gathered = await allGatherRows(mpi, local);
  const rows = [...await gathered.toArray()];
  check(
    JSON.stringify(rows) === JSON.stringify([1, 2, 3, 4, 5, 6, 11, 12, 13, 14, 15, 16]),
    `allGatherRows: ${rows}`,
  );
  const weights = Array.from({ length: 12 }, (_, i) => i + 1);
  backward(sum(mul(gathered, tensor(weights, [4, 3], { gpu }))));
  const grad = [...await local.grad!.toArray()];
  check(
    JSON.stringify(grad) === JSON.stringify(weights.slice(dist.rank * 6, dist.rank * 6 + 6)),
    `allGatherRows gradient: ${grad}`,
  );

  // gradient equivalence: 2 ranks × batch 2 against the float64 gradient of the global batch of 4
  const global = 4, b = 2, seed = 7;
  const config = configFor("/nonexistent", global, {
    optimizer: { name: "sgd", lr: 0.05, momentum: 0.9, nesterov: true, weightDecay: 0 },
  });
  const run = await openRun({
    config: { ...config, out: await Deno.makeTempDir() },
    arch: voxelMlp,
    method: affineTarget,
    train: shareSource(seed, global, 0, global),
    coreVersion: VERSION,
    gpu,
    log: () => {},
    distributed: { rank: dist.rank, agreeStop: (l) => agreeOnStop(mpi, l) },
  });
  const sync = new GradientSync(mpi!, gpu, { bucketBytes: 24 }); // several buckets, one straddling parameters
  const mine = shareSource(seed, global, dist.rank * b, b);
  const worst: number[] = [];
  for (let step = 0; step < 2; step++) {
    const before = await named(run.optimizer.groups, "params");
    bitsEqualOnAllRanks(await readGroups(run.optimizer.groups, "params"), `parameters before step ${step}`);
    const reference = referenceGradient(before, globalImages(seed, step, global));
    let local: Float32Array = new Float32Array(), synced = new Map<string, number[]>();
    await trainStep(run, await mine.batch(step), 0.05, async (groups) => {
      local = await readGroups(groups, "grads");
      await sync.allreduce(groups);
      synced = await named(groups, "grads");
      bitsEqualOnAllRanks(await readGroups(groups, "grads"), `averaged gradients of step ${step}`);
    }, (param) => sync.gradientReady(param));
    // from the second step on, every bucket's readback is queued during backward
    const { buckets, earlyBuckets } = sync.last!;
    check(buckets > 2, `${buckets} buckets`);
    check(
      earlyBuckets === (step === 0 ? 0 : buckets),
      `step ${step}: ${earlyBuckets} of ${buckets} buckets early`,
    );
    // the averaging itself: one f32 rounding of the exact mean of the ranks' gradients
    const all = mpi!.allgather(local);
    const flat = [...synced.values()].flat();
    const n = local.length;
    let k = 0, base = 0;
    for (const g of run.optimizer.groups) {
      for (const [i] of g.names.entries()) {
        const offset = base + g.grads.layout.offsets[i];
        const count = g.grads.parts[i].size;
        for (let j = 0; j < count; j++, k++) {
          const exact = (all[offset + j] + all[n + offset + j]) / 2;
          check(
            Math.abs(flat[k] - exact) <= U * Math.abs(exact),
            `averaged gradient ${g.names[i]}[${j}] = ${flat[k]}, exact mean of the ranks ${exact}`,
          );
        }
      }
      base += g.grads.layout.length;
    }
    worst.push(withinReference(synced, reference, `2 ranks × batch ${b}, step ${step}`));
  }
  bitsEqualOnAllRanks(await readGroups(run.optimizer.groups, "params"), "parameters after 2 steps");
  closeRun(run);

  // the same steps in one process with the global batch (rank 0 only): as close to float64
  if (dist.rank === 0) {
    const single = await openRun({
      config: { ...config, out: await Deno.makeTempDir() },
      arch: voxelMlp,
      method: affineTarget,
      train: shareSource(seed, global, 0, global),
      coreVersion: VERSION,
      gpu,
      log: () => {},
    });
    const all = shareSource(seed, global, 0, global);
    for (let step = 0; step < 2; step++) {
      const reference = referenceGradient(
        await named(single.optimizer.groups, "params"),
        globalImages(seed, step, global),
      );
      let grads = new Map<string, number[]>();
      await trainStep(single, await all.batch(step), 0.05, async (groups) => {
        grads = await named(groups, "grads");
      });
      worst.push(withinReference(grads, reference, `1 process × batch ${global}, step ${step}`));
    }
    closeRun(single);
    console.log(`equivalence: worst |g − g64| / bound ${worst.map((w) => w.toExponential(2)).join(" ")}`);
  }

  // one rank's non-finite gradient: every rank skips the step and lowers the loss scale alike
  const mixed = await openRun({
    config: { ...configFor("/nonexistent", global, { precision: "mixed" }), out: await Deno.makeTempDir() },
    arch: voxelMlp,
    method: affineTarget,
    train: mine,
    coreVersion: VERSION,
    gpu,
    log: () => {},
    initialLossScale: 1024,
    distributed: { rank: dist.rank, agreeStop: (l) => agreeOnStop(mpi, l) },
  });
  const before = await readGroups(mixed.optimizer.groups, "params");
  await trainStep(mixed, await mine.batch(0), 0.05, async (groups) => {
    if (dist.rank === 1) {
      const g = groups[0].grads.whole;
      const values = Float32Array.from(await g.toArray());
      values[0] = Infinity;
      g.write(values);
    }
    await sync.allreduce(groups);
  });
  const status = await mixed.optimizer.readStatus();
  check(
    status.lastSkipped && status.lossScale === 512,
    `step not skipped everywhere: ${JSON.stringify(status)}`,
  );
  const after = await readGroups(mixed.optimizer.groups, "params");
  check(after.every((v, i) => Object.is(v, before[i])), "a skipped step changed the parameters");
  const statuses = allGatherJson(mpi, status);
  check(
    JSON.stringify(statuses[0]) === JSON.stringify(statuses[1]),
    `step status differs: ${JSON.stringify(statuses)}`,
  );
  closeRun(mixed);
  if (dist.rank === 0) console.log("unit: ok");
}

async function train(args: string[]): Promise<void> {
  const flag = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const out = flag("--out")!;
  const signalAt = flag("--signal-at") === undefined ? -1 : Number(flag("--signal-at"));
  const global = 4, b = 2, seed = 3;
  const source = shareSource(seed, global, dist.rank * b, b);
  const train: BatchSource = {
    batch(step) {
      if (dist.rank === 1 && step === signalAt) Deno.kill(Deno.pid, "SIGTERM");
      return source.batch(step);
    },
    close: source.close,
  };
  const parallel = dataParallel(dist, gpu)!;
  const summary = await runPretraining({
    config: configFor(out, global, { epochs: Number(flag("--epochs") ?? 2) }),
    arch: voxelMlp,
    method: affineTarget,
    train,
    coreVersion: VERSION,
    gpu,
    resume: args.includes("--resume"),
    log: dist.primary ? (line) => console.log(line) : () => {},
    gradientHook: parallel.gradientHook,
    distributed: parallel.role,
  });
  const summaries = allGatherJson(mpi, summary);
  if (dist.primary) console.log(`SUMMARY ${JSON.stringify(summaries)}`);
}

const [scenario, ...rest] = Deno.args;
try {
  if (scenario === "unit") await unit();
  else if (scenario === "train") await train(rest);
  else throw new Error(`unknown scenario "${scenario}"`);
} catch (error) {
  console.error(error);
  mpi.abort(1); // end the other rank too, instead of leaving it in a collective
}
dist.finalize();
