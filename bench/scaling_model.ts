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
 * The buckets form a pipeline (core/dist/gradient_sync.ts), so the exposed communication is the slowest
 * stage plus one bucket's worth of the others (fill and drain):
 *
 *   t_exposed = max(t_d2h, t_ar, t_h2d) + (t_d2h + t_ar + t_h2d − max(…)) / k
 *
 * and nothing overlaps the backward pass (the trainer's gradient hook runs after it). Efficiency at a
 * fixed per-GPU batch (weak scaling, as nnssl's DDP): E(N) = T_compute / (T_compute + t_exposed(N)).
 * With DDP-style overlap of the allreduce with backward (not implemented), the exposed part would shrink
 * by up to the backward time after the first bucket is ready, ≈ ⅔ of T_compute.
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

function exposed(model: ModelCase, cluster: Cluster, n: number): number {
  const g = model.gradientBytes;
  const link = n > cluster.gpusPerNode ? Math.min(cluster.intraGBps, cluster.interGBps) : cluster.intraGBps;
  const d2h = g / (staging.d2hGBps * GB);
  const ar = (2 * (n - 1) / n) * g / (link * GB) + 2 * (n - 1) * cluster.alpha * buckets;
  const up = g / (staging.h2dGBps * GB);
  const slowest = Math.max(d2h, ar, up);
  return slowest + (d2h + ar + up - slowest) / buckets;
}

for (const cluster of clusters) {
  console.log(
    `\n${cluster.name} between nodes, ${cluster.gpusPerNode} GPUs a node (${cluster.intraGBps} GB/s inside); ` +
      `staging ${staging.d2hGBps}/${staging.h2dGBps} GB/s, ${buckets} buckets`,
  );
  console.log(
    `| model | T_compute | ${
      ranks.map((n) => `${n} GPUs`).join(" | ")
    } | exposed at 4 | T_compute for 85% at 4 |`,
  );
  console.log(`| --- | --- | ${ranks.map(() => "---").join(" | ")} | --- | --- |`);
  for (const model of models) {
    for (const t of computeSeconds) {
      const cells = ranks.map((n) => `${(100 * t / (t + exposed(model, cluster, n))).toFixed(0)}%`);
      const at4 = exposed(model, cluster, 4);
      // E ≥ 0.85 ⇔ T_compute ≥ 0.85/0.15 · t_exposed
      console.log(
        `| ${model.name} | ${t} s | ${cells.join(" | ")} | ${(1000 * at4).toFixed(0)} ms | ≥ ${
          (at4 * 0.85 / 0.15).toFixed(2)
        } s |`,
      );
    }
  }
}
