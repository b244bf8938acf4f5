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
    name: "mae primus-tiny",
    preset: "lavapipe",
    config: { arch: "primus-tiny", method: "mae", methodConfig: { block: 8 }, patch: [32, 32, 32], batch: 2 },
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
    name: "mae primus-m 160³",
    preset: "gpu",
    config: { arch: "primus-m", method: "mae", precision: "mixed" },
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
