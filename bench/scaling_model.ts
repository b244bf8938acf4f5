/**
 * The step-time model of data-parallel training (docs/distributed.md), evaluated for ResEnc-L and
 * Primus-M: `deno run bench/scaling_model.ts` prints the tables of predicted efficiency. Every input is
 * a named parameter below; change one and rerun. Nothing here is measured: the measured counterparts
 * come from `deno task bench --suite dist` (on a GPU node: `--preset gpu`).
 *
 * Per step and rank, with G bytes of f32 gradients cut into k buckets and N ranks:
 *
 *   readback   t_d2h = G / B_d2h                     GPU → host (WebGPU mapAsync + one host copy)
 *   allreduce  t_ar  = 2(N−1)/N · G / B_link + 2(N−1)·α · k     ring; B_link = the slowest link in the ring
 *   upload     t_h2d = G / B_h2d                      host → GPU (queue.writeBuffer; the 1/N scale is a GPU
 *                                                    dispatch, negligible)
 *
 * The buckets form a pipeline (core/dist/gradient_sync.ts): alone, it takes the slowest stage plus one
 * bucket's worth of the others (fill and drain):
 *
 *   t_pipe = max(t_d2h, t_ar, t_h2d) + (t_d2h + t_ar + t_h2d − max(…)) / k
 *
 * Without overlap that is all exposed. With the readbacks queued during backward (as each bucket's
 * gradients complete; from the second step on), bucket j is ready at j/k of the backward time T_bwd,
 * so the last bucket ends at max(T_bwd + t_pipe/k, T_bwd/k + t_pipe) and
 *
 *   t_exposed = max(t_pipe / k, t_pipe − (1 − 1/k)·T_bwd),   T_bwd = ⅔·T_compute
 *
 * assuming the CPU records backward faster than the GPU runs it, gradients complete evenly through
 * backward, and copies and MPI do not slow the GPU's compute. Efficiency at a fixed per-GPU batch (weak
 * scaling, as nnssl's DDP): E(N) = T_compute / (T_compute + t_exposed(N)).
 *
 * @module
 */

/** One model's inputs. */
interface ModelCase {
  name: string;
  /** Gradient bytes (f32). */
  gradientBytes: number;
}

/** One cluster's inputs (GB/s = 1e9 bytes/s). */
interface Cluster {
  name: string;
  /** GPUs per node (the ring crosses nodes when N exceeds it). */
  gpusPerNode: number;
  /** Allreduce link bandwidth inside a node (MPICH shared memory, host to host). */
  intraGBps: number;
  /** Allreduce link bandwidth between nodes (per NIC). */
  interGBps: number;
  /** Latency per ring step (s). */
  alpha: number;
}

const GB = 1e9;
const models: ModelCase[] = [
  { name: "ResEnc-L (102.3M)", gradientBytes: 102_348_965 * 4 },
  { name: "Primus-M (151.8M)", gradientBytes: 151_786_529 * 4 },
];
/** Host staging: WebGPU readback and upload over PCIe 4.0 x16 (25 GB/s raw), assumed effective rates. */
const staging = { d2hGBps: 6, h2dGBps: 8 };
const buckets = 16;
const clusters: Cluster[] = [
  { name: "InfiniBand HDR100 (12 GB/s)", gpusPerNode: 4, intraGBps: 8, interGBps: 12, alpha: 5e-6 },
  { name: "25 GbE (2.9 GB/s)", gpusPerNode: 4, intraGBps: 8, interGBps: 2.9, alpha: 30e-6 },
];
const computeSeconds = [0.5, 1, 2];
const ranks = [2, 4, 8, 32];

function exposed(model: ModelCase, cluster: Cluster, n: number, overlapCompute = 0): number {
  const g = model.gradientBytes;
  const link = n > cluster.gpusPerNode ? Math.min(cluster.intraGBps, cluster.interGBps) : cluster.intraGBps;
  const d2h = g / (staging.d2hGBps * GB);
  const ar = (2 * (n - 1) / n) * g / (link * GB) + 2 * (n - 1) * cluster.alpha * buckets;
  const up = g / (staging.h2dGBps * GB);
  const slowest = Math.max(d2h, ar, up);
  const pipe = slowest + (d2h + ar + up - slowest) / buckets;
  if (overlapCompute === 0) return pipe;
  const backwardSeconds = (2 / 3) * overlapCompute;
  return Math.max(pipe / buckets, pipe - (1 - 1 / buckets) * backwardSeconds);
}

/** The smallest T_compute with E(4) ≥ 85%, without (`overlap` false) or with the backward overlap. */
function minimumCompute(model: ModelCase, cluster: Cluster, overlap: boolean): number {
  let lo = 0, hi = 100;
  for (let i = 0; i < 60; i++) {
    const t = (lo + hi) / 2;
    if (t / (t + exposed(model, cluster, 4, overlap ? t : 0)) >= 0.85) hi = t;
    else lo = t;
  }
  return hi;
}

const pct = (t: number, e: number) => `${(100 * t / (t + e)).toFixed(0)}%`;

for (const cluster of clusters) {
  console.log(
    `\n${cluster.name} between nodes, ${cluster.gpusPerNode} GPUs a node (${cluster.intraGBps} GB/s inside); ` +
      `staging ${staging.d2hGBps}/${staging.h2dGBps} GB/s, ${buckets} buckets; ` +
      "each cell: without overlap / with the readbacks queued during backward",
  );
  console.log(
    `| model | T_compute | ${
      ranks.map((n) => `${n} GPUs`).join(" | ")
    } | exposed at 4 | T_compute for 85% at 4 |`,
  );
  console.log(`| --- | --- | ${ranks.map(() => "---").join(" | ")} | --- | --- |`);
  for (const model of models) {
    for (const t of computeSeconds) {
      const cells = ranks.map((n) =>
        `${pct(t, exposed(model, cluster, n))} / ${pct(t, exposed(model, cluster, n, t))}`
      );
      const e4 = [exposed(model, cluster, 4), exposed(model, cluster, 4, t)].map((e) =>
        (1000 * e).toFixed(0)
      );
      const need = [false, true].map((o) => minimumCompute(model, cluster, o).toFixed(2));
      console.log(
        `| ${model.name} | ${t} s | ${cells.join(" | ")} | ${e4.join(" / ")} ms | ≥ ${need.join(" / ")} s |`,
      );
    }
  }
}
