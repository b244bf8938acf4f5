/**
 * A fake benchmark runner for the orchestration tests: deterministic per-case Dice made from the cell
 * (method, seed, fraction, case), with call counters; no GPU, no data.
 */
import type { BenchmarkRunner, Cell, CellResult, PretrainJob } from "../../../../core/eval/benchmark/mod.ts";

/** The fake's per-case Dice (a pure function of the cell and the case index, in [0.3, 0.95]). */
export function fakeDice(cell: Cell, caseIndex: number): number {
  const methodBonus = cell.method === "scratch" ? 0 : cell.method === "mae" ? 0.05 : 0.02;
  const v = 0.55 + methodBonus + 0.1 * cell.labelFraction + 0.013 * cell.seed +
    0.04 * Math.sin(1.7 * caseIndex + cell.seed) + (cell.dataset.name === "other" ? -0.1 : 0);
  return Math.min(0.95, Math.max(0.3, v));
}

/** The fake's test cases of a dataset. */
export const FAKE_CASES = 4;

/** Counts what it was asked to do; `onCell` may abort, hang or throw to simulate trouble. */
export class FakeRunner implements BenchmarkRunner {
  pretrainCalls: PretrainJob[] = [];
  cellCalls: Cell[] = [];
  checkpoints: (string | undefined)[] = [];
  onCell?: (cell: Cell, call: number) => Promise<void> | void;

  pretrain(job: PretrainJob) {
    this.pretrainCalls.push(job);
    return Promise.resolve({
      checkpoint: `/fake/${job.name}-${job.arch}.safetensors`,
      provenance: { core: "0.2.0", plugins: { [job.method]: "1.0.0" } },
      seconds: 1,
    });
  }

  async runCell(cell: Cell, checkpoint: string | undefined): Promise<CellResult> {
    this.cellCalls.push(cell);
    this.checkpoints.push(checkpoint);
    await this.onCell?.(cell, this.cellCalls.length);
    return {
      cases: Array.from({ length: FAKE_CASES }, (_, i) => ({
        case: `case_${String(i).padStart(3, "0")}`,
        dice: fakeDice(cell, i),
        perClass: { anterior: fakeDice(cell, i), posterior: null },
      })),
      provenance: {
        core: "0.2.0",
        plugins: { resenc: "0.1.0", ...(cell.method === "mae" ? { mae: "1.0.0" } : {}) },
        commit: "0123abc",
        adapter: "fake adapter, with a comma",
      },
      seconds: 0.5,
    };
  }
}

/** A small spec: 2 datasets × 2 fractions × 2 seeds × (scratch, mae) on one architecture = 16 cells. */
export const FAKE_SPEC = {
  name: "fake bench",
  architectures: ["resenc-tiny"],
  datasets: [{ name: "hippo", path: "/nowhere/hippo" }, { name: "other", path: "/nowhere/other" }],
  labelFractions: [0.25, 1],
  seeds: [0, 1],
  methods: [{ name: "mae", pretrain: { method: "mae", data: "synthetic" } }],
  statistics: { replicates: 200 },
};
