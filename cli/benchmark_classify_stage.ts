/**
 * The classification cell of the benchmark, its pure parts: the spec's `classify` options (checked, with
 * errors naming segmentation-only keys), the `voxssl classify` arguments of a cell, and the per-case
 * results read back from the run's `test_predictions.csv` and `test_scores.json`. The stage itself runs
 * in cli/benchmark_runner.ts like the segmentation stages (a child process in the cell's work folder).
 *
 * @module
 */
import { z } from "zod";
import { parseCsv } from "../core/data/mod.ts";
import type { Cell, ClassificationCellResult } from "../core/eval/benchmark/mod.ts";

const vec3 = z.tuple([z.number().int().positive(), z.number().int().positive(), z.number().int().positive()]);

/** The spec's `classify` options this runner understands (`voxssl classify` flags); unknown keys are errors. */
export const ClassifyOptionsSchema = z.object({
  epochs: z.number().int().positive().optional(),
  stepsPerEpoch: z.number().int().positive().optional(),
  batch: z.number().int().positive().optional(),
  patch: vec3.optional(),
  lr: z.number().positive().optional(),
  schedule: z.enum(["warmup-poly", "sawtooth"]).optional(),
  labelSmoothing: z.number().min(0).lt(1).optional(),
  spacing: z.union([z.literal("median"), z.literal("none"), z.tuple([z.number(), z.number(), z.number()])])
    .optional(),
  augmentation: z.boolean().optional(),
}).strict();

/** Options of segmentation's stages that `voxssl classify` has no flag for (named in errors). */
export const SEGMENTATION_ONLY_OPTIONS: readonly string[] = [
  "optimizer",
  "nnsslSawtooth",
  "batchDice",
  "deepSupervision",
];

/** `--spacing` of a cell's `classify` options (none when unset). */
function spacingFlag(o: z.output<typeof ClassifyOptionsSchema>): string[] {
  if (o.spacing === undefined) return [];
  return ["--spacing", Array.isArray(o.spacing) ? o.spacing.join(",") : o.spacing];
}

/** The `voxssl classify` flags of a cell's `classify` options. */
export function classifyFlags(o: z.output<typeof ClassifyOptionsSchema>): string[] {
  const flags: string[] = [];
  if (o.epochs) flags.push("--epochs", String(o.epochs));
  if (o.stepsPerEpoch) flags.push("--steps", String(o.stepsPerEpoch));
  if (o.batch) flags.push("--batch", String(o.batch));
  if (o.patch) flags.push("--patch", o.patch.join(","));
  if (o.lr) flags.push("--lr", String(o.lr));
  if (o.schedule) flags.push("--schedule", o.schedule);
  if (o.labelSmoothing !== undefined) flags.push("--label-smoothing", String(o.labelSmoothing));
  flags.push(...spacingFlag(o));
  if (o.augmentation === false) flags.push("--no-augmentation");
  return flags;
}

/**
 * The `voxssl classify` arguments of a classification cell: a new run, or (`resume`) the continuation of
 * the run folder `out`. The preprocessed images live in `cache`, shared by the dataset's cells.
 */
export function classifyStageArgs(o: {
  cell: Cell;
  csv: string;
  out: string;
  cache: string;
  checkpoint?: string;
  resume: boolean;
}): string[] {
  const options = ClassifyOptionsSchema.parse(o.cell.finetune);
  // a resumed run is given its spacing again (how its data is read from the cache)
  if (o.resume) return ["classify", o.csv, "--resume", o.out, "--cache", o.cache, ...spacingFlag(options)];
  return [
    "classify",
    o.csv,
    "--arch",
    o.cell.arch,
    "--out",
    o.out,
    "--cache",
    o.cache,
    "--seed",
    String(o.cell.seed),
    "--split-seed",
    String(o.cell.splitSeed),
    "--label-fraction",
    String(o.cell.labelFraction),
    ...(o.checkpoint ? ["--pretrained", o.checkpoint] : []),
    ...(o.cell.dataset.splitFile ? ["--split", o.cell.dataset.splitFile] : []),
    ...classifyFlags(options),
  ];
}

/**
 * The cases of a classify run's `test_predictions.csv` (`case,path,label,predicted,p_<class>…`, labels as
 * class names) as class indices into `classes` (test_scores.json's order), the first `maxCases` ids in
 * sorted order. Errors name the file and line.
 */
export function classifiedCases(
  csvText: string,
  classes: string[],
  where: string,
  maxCases?: number,
): ClassificationCellResult["cases"] {
  const [header, ...rows] = parseCsv(csvText).filter((r) => r.length > 1 || r[0] !== "");
  const expected = ["case", "path", "label", "predicted", ...classes.map((c) => `p_${c}`)];
  if (header?.join(",") !== expected.join(",")) {
    throw new Error(`${where}: header ${header?.join(",")}, expected ${expected.join(",")}`);
  }
  const index = (name: string, line: number) => {
    const k = classes.indexOf(name);
    if (k < 0) throw new Error(`${where}:${line}: class "${name}" is not one of ${classes.join(", ")}`);
    return k;
  };
  const cases = rows.map((r, i) => {
    const probabilities = r.slice(4).map(Number);
    if (r.length !== expected.length || !probabilities.every(Number.isFinite)) {
      throw new Error(`${where}:${i + 2}: expected ${expected.length} fields with numeric probabilities`);
    }
    return { case: r[0], label: index(r[2], i + 2), predicted: index(r[3], i + 2), probabilities };
  }).sort((a, b) => (a.case < b.case ? -1 : a.case > b.case ? 1 : 0));
  return cases.slice(0, maxCases ?? cases.length);
}
