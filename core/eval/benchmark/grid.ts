/**
 * The benchmark grid: a spec expanded into pretraining jobs (one per method plugin and architecture) and
 * cells (method × architecture × dataset × label fraction × seed, the from-scratch baseline included).
 * Each job and cell has a stable key: a hash of everything that determines its result, so a results
 * folder recognises finished work across runs, and a changed setting makes new cells instead of reusing
 * stale ones.
 *
 * @module
 */
import { type BenchmarkSpec, type DatasetSpec, isClassification, SCRATCH } from "./spec.ts";

/** How a cell's encoder starts: random (scratch), a given checkpoint, or a pretraining job of the grid. */
export type EncoderSource =
  | { kind: "scratch" }
  | { kind: "checkpoint"; checkpoint: string }
  | { kind: "pretrain"; job: string };

/** One pretraining run (a method plugin on one architecture), shared by every cell that fine-tunes it. */
export interface PretrainJob {
  /** Stable key (hash of the fields below). */
  key: string;
  /** The method's leaderboard name. */
  name: string;
  /** The SSL method plugin. */
  method: string;
  /** A third-party plugin module (runs sandboxed), if any. */
  plugin?: string;
  arch: string;
  /** The pretraining data. */
  data: string;
  /** Extra run-config keys. */
  config: Record<string, unknown>;
  seed: number;
  /**
   * When the pretraining data is one of the benchmark's datasets: its split, whose test cases the
   * pretraining must not see (labels or not, they are the held-out set).
   */
  holdOut?: { splitSeed: number; splitFile?: string };
}

/** One cell: fine-tune, predict, evaluate. */
export interface Cell {
  /** Stable key (hash of the fields below and the job's key). */
  key: string;
  /** The method's leaderboard name ("scratch" for the baseline). */
  method: string;
  encoder: EncoderSource;
  arch: string;
  dataset: DatasetSpec;
  labelFraction: number;
  seed: number;
  splitSeed: number;
  /** Fine-tuning options: the spec's `finetune` (segmentation) or `classify` (classification). */
  finetune: Record<string, unknown>;
  /** Inference options (segmentation; empty for classification, which scores inside `voxssl classify`). */
  predict: Record<string, unknown>;
}

/** JSON with object keys sorted at every level, so equal values always serialise the same way. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** The first 16 hex digits of the SHA-256 of the canonical JSON of `value`. */
export async function stableHash(value: unknown): Promise<string> {
  const bytes = new TextEncoder().encode(canonicalJson(value));
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest.slice(0, 8), (b) => b.toString(16).padStart(2, "0")).join("");
}

function heldOut(spec: BenchmarkSpec, data: string): PretrainJob["holdOut"] {
  const strip = (p: string) => p.replace(/\/+$/, "");
  const dataset = spec.datasets.find((d) => !isClassification(d) && strip(d.path) === strip(data));
  return dataset ? { splitSeed: spec.splitSeed, splitFile: dataset.splitFile } : undefined;
}

/** The expanded grid. */
export interface Grid {
  jobs: PretrainJob[];
  /** Cells in run order: seed, dataset, label fraction, architecture, then method (scratch first). */
  cells: Cell[];
}

/** Expands a parsed spec into its pretraining jobs and cells (scratch always included). */
export async function expandGrid(spec: BenchmarkSpec): Promise<Grid> {
  const jobs: PretrainJob[] = [];
  const jobOf = new Map<string, PretrainJob>(); // `${method}\n${arch}` → job
  for (const m of spec.methods) {
    if (!m.pretrain) continue;
    for (const arch of spec.architectures) {
      const fields = {
        name: m.name,
        method: m.pretrain.method,
        plugin: m.pretrain.plugin,
        arch,
        data: m.pretrain.data,
        config: m.pretrain.config,
        seed: spec.pretrainSeed,
        holdOut: heldOut(spec, m.pretrain.data),
      };
      // the leaderboard name is not part of the result: renaming a method keeps its pretraining
      const { name: _name, ...identity } = fields;
      const job = { key: await stableHash({ pretrain: identity }), ...fields };
      jobs.push(job);
      jobOf.set(`${m.name}\n${arch}`, job);
    }
  }
  const cells: Cell[] = [];
  for (const seed of spec.seeds) {
    for (const dataset of spec.datasets) {
      for (const labelFraction of spec.labelFractions) {
        for (const arch of spec.architectures) {
          const entries: { method: string; encoder: EncoderSource }[] = [
            { method: SCRATCH, encoder: { kind: "scratch" } },
          ];
          for (const m of spec.methods) {
            if (m.checkpoint !== undefined) {
              if (m.arch === arch) {
                entries.push({ method: m.name, encoder: { kind: "checkpoint", checkpoint: m.checkpoint } });
              }
            } else {entries.push({
                method: m.name,
                encoder: { kind: "pretrain", job: jobOf.get(`${m.name}\n${arch}`)!.key },
              });}
          }
          for (const { method, encoder } of entries) {
            const classification = isClassification(dataset);
            const finetune = classification ? spec.classify ?? {} : spec.finetune;
            const predict = classification ? {} : spec.predict;
            // segmentation's identity is unchanged since before classification (existing keys stay valid)
            const identity = classification
              ? {
                encoder,
                arch,
                dataset: { ...dataset, name: undefined },
                labelFraction,
                seed,
                splitSeed: spec.splitSeed,
                classify: finetune,
              }
              : {
                encoder,
                arch,
                // the dataset's leaderboard name is not part of the result (nor an explicit default task);
                // its data and split are
                dataset: { ...dataset, name: undefined, task: undefined },
                labelFraction,
                seed,
                splitSeed: spec.splitSeed,
                finetune,
                predict,
              };
            cells.push({
              key: await stableHash({ cell: identity }),
              method,
              encoder,
              arch,
              dataset,
              labelFraction,
              seed,
              splitSeed: spec.splitSeed,
              finetune,
              predict,
            });
          }
        }
      }
    }
  }
  return { jobs, cells };
}
