/**
 * The rows of the methods benchmark (bench/method_bench.ts): one per SSL method and architecture, at the
 * lavapipe preset (small, for the whole suite to run in a couple of minutes on 2 cores) and the GPU
 * preset (the OpenMind recipe's sizes). A new method adds its rows here.
 */
import type { RunConfigInput } from "../core/train/mod.ts";

/** One benchmarked configuration: a run config (arch, method, patch, batch, method config). */
export interface MethodCase {
  /** Row label. */
  name: string;
  /** Which preset runs it. */
  preset: "lavapipe" | "gpu";
  /** The run config (data is always the synthetic set; epochs and steps are the benchmark's). */
  config: RunConfigInput;
}

/** Every row. */
export const METHOD_CASES: MethodCase[] = [
  {
    name: "mae resenc-tiny",
    preset: "lavapipe",
    config: { arch: "resenc-tiny", method: "mae", methodConfig: { block: 8 }, patch: [32, 32, 32], batch: 2 },
  },
  {
    name: "mae primus-tiny token dropping",
    preset: "lavapipe",
    config: { arch: "primus-tiny", method: "mae", patch: [32, 32, 32], batch: 2 },
  },
  {
    name: "mae primus-tiny masked input",
    preset: "lavapipe",
    config: {
      arch: "primus-tiny",
      method: "mae",
      methodConfig: { vitVariant: "masked-input", block: 8 },
      patch: [32, 32, 32],
      batch: 2,
    },
  },
  {
    // Primus-M's depth (16 blocks) at tiny width: the encoder's share of the work as in Primus-M
    name: "mae primus-tiny×16 token dropping",
    preset: "lavapipe",
    config: { arch: "primus-tiny", archConfig: { depth: 16 }, method: "mae", patch: [32, 32, 32], batch: 2 },
  },
  {
    name: "mae primus-tiny×16 masked input",
    preset: "lavapipe",
    config: {
      arch: "primus-tiny",
      archConfig: { depth: 16 },
      method: "mae",
      methodConfig: { vitVariant: "masked-input", block: 8 },
      patch: [32, 32, 32],
      batch: 2,
    },
  },
  {
    name: "simmim primus-tiny",
    preset: "lavapipe",
    config: { arch: "primus-tiny", method: "simmim", patch: [32, 32, 32], batch: 2 },
  },
  {
    name: "simclr resenc-tiny",
    preset: "lavapipe",
    config: {
      arch: "resenc-tiny",
      method: "simclr",
      methodConfig: { region: [48, 48, 16] },
      patch: [16, 16, 16],
      batch: 2,
    },
  },
  {
    name: "simclr primus-tiny",
    preset: "lavapipe",
    config: {
      arch: "primus-tiny",
      method: "simclr",
      methodConfig: { region: [48, 48, 16] },
      patch: [16, 16, 16],
      batch: 2,
    },
  },
  {
    name: "voco resenc-tiny",
    preset: "lavapipe",
    config: {
      arch: "resenc-tiny",
      method: "voco",
      methodConfig: { grid: [2, 2, 1], targets: 2 },
      patch: [16, 16, 16],
      batch: 2,
    },
  },
  {
    name: "voco primus-tiny",
    preset: "lavapipe",
    config: {
      arch: "primus-tiny",
      method: "voco",
      methodConfig: { grid: [2, 2, 1], targets: 2 },
      patch: [16, 16, 16],
      batch: 2,
    },
  },
  {
    name: "volume-fusion resenc-tiny",
    preset: "lavapipe",
    config: { arch: "resenc-tiny", method: "volume-fusion", patch: [32, 32, 32], batch: 2 },
  },
  {
    name: "volume-fusion primus-tiny",
    preset: "lavapipe",
    config: { arch: "primus-tiny", method: "volume-fusion", patch: [32, 32, 32], batch: 2 },
  },
  {
    name: "swinunetr-pretext resenc-tiny",
    preset: "lavapipe",
    config: { arch: "resenc-tiny", method: "swinunetr-pretext", patch: [32, 32, 32], batch: 2 },
  },
  {
    name: "swinunetr-pretext primus-tiny",
    preset: "lavapipe",
    config: { arch: "primus-tiny", method: "swinunetr-pretext", patch: [32, 32, 32], batch: 2 },
  },
  {
    name: "spark resenc-tiny",
    preset: "lavapipe",
    config: {
      arch: "resenc-tiny",
      method: "spark",
      methodConfig: { block: 8 },
      patch: [32, 32, 32],
      batch: 2,
    },
  },
  {
    name: "models-genesis resenc-tiny",
    preset: "lavapipe",
    config: { arch: "resenc-tiny", method: "models-genesis", patch: [32, 32, 32], batch: 2 },
  },
  {
    name: "models-genesis primus-tiny",
    preset: "lavapipe",
    config: { arch: "primus-tiny", method: "models-genesis", patch: [32, 32, 32], batch: 2 },
  },
  {
    name: "mae resenc-l 160³",
    preset: "gpu",
    config: { arch: "resenc-l", method: "mae", precision: "mixed" },
  },
  {
    name: "mae primus-m 160³ token dropping",
    preset: "gpu",
    config: { arch: "primus-m", method: "mae", precision: "mixed" },
  },
  {
    name: "spark resenc-l 160³",
    preset: "gpu",
    config: { arch: "resenc-l", method: "spark", precision: "mixed" },
  },
  {
    name: "mae primus-m 160³ masked input",
    preset: "gpu",
    config: {
      arch: "primus-m",
      method: "mae",
      methodConfig: { vitVariant: "masked-input", block: 8 },
      precision: "mixed",
    },
  },
  {
    name: "simmim primus-m 160³",
    preset: "gpu",
    config: { arch: "primus-m", method: "simmim", precision: "mixed" },
  },
  {
    name: "simclr resenc-l 64³",
    preset: "gpu",
    config: { arch: "resenc-l", method: "simclr", precision: "mixed" },
  },
  {
    name: "simclr primus-m 64³",
    preset: "gpu",
    config: { arch: "primus-m", method: "simclr", precision: "mixed" },
  },

  {
    name: "voco resenc-l 64³",
    preset: "gpu",
    config: { arch: "resenc-l", method: "voco", precision: "mixed" },
  },
  {
    name: "voco primus-m 64³",
    preset: "gpu",
    config: { arch: "primus-m", method: "voco", precision: "mixed" },
  },
  {
    name: "volume-fusion resenc-l 160³",
    preset: "gpu",
    config: { arch: "resenc-l", method: "volume-fusion", precision: "mixed" },
  },
  {
    name: "volume-fusion primus-m 160³",
    preset: "gpu",
    config: { arch: "primus-m", method: "volume-fusion", precision: "mixed" },
  },
  {
    name: "swinunetr-pretext resenc-l 160³",
    preset: "gpu",
    config: { arch: "resenc-l", method: "swinunetr-pretext", precision: "mixed" },
  },
  {
    name: "swinunetr-pretext primus-m 160³",
    preset: "gpu",
    config: { arch: "primus-m", method: "swinunetr-pretext", precision: "mixed" },
  },
  {
    name: "models-genesis resenc-l 160³",
    preset: "gpu",
    config: { arch: "resenc-l", method: "models-genesis", precision: "mixed" },
  },
  {
    name: "models-genesis primus-m 160³",
    preset: "gpu",
    config: { arch: "primus-m", method: "models-genesis", precision: "mixed" },
  },
];
