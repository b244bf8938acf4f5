/**
 * Evaluating a folder of predicted label maps against a folder of reference label maps (what
 * `voxssl evaluate` runs): files are matched by name, every class gets {@link ClassMetrics} per case,
 * and the summary holds per-class means (NaN left out, as nnU-Net's `nanmean`) and the foreground mean
 * (mean over foreground classes of the class means, as nnU-Net's `foreground_mean`). Written as
 * `metrics.csv` (one row per case and class) and `summary.json`.
 *
 * @module
 */
import { join } from "node:path";
import { DataFileError, readNifti, type Shape3 } from "../data/mod.ts";
import { sameAffine } from "./case_preprocess.ts";
import { type ClassMetrics, classMetrics, nanMean } from "./metrics.ts";

/** The metrics of one case. */
export interface CaseEvaluation {
  /** File name (shared by prediction and reference). */
  name: string;
  /** Prediction file. */
  prediction: string;
  /** Reference file. */
  reference: string;
  /** Per class value. */
  classes: Record<number, ClassMetrics>;
}

/** Mean metrics of one class over cases. */
export interface ClassSummary {
  /** nanmean of Dice. */
  dice: number;
  /** nanmean of IoU. */
  iou: number;
  /** nanmean of precision. */
  precision: number;
  /** nanmean of recall. */
  recall: number;
  /** Mean of the finite HD95 values (when computed). */
  hd95?: number;
  /** Cases where HD95 is infinite (class in only one of the two maps). */
  hd95Infinite?: number;
  /** Cases whose Dice counted (not NaN). */
  n: number;
}

/** The result of {@link evaluateFolders} (the content of `summary.json`). */
export interface EvaluationSummary {
  /** The classes evaluated (foreground values). */
  classes: number[];
  /** Class names when known (value → name). */
  names: Record<number, string>;
  /** Per case. */
  cases: CaseEvaluation[];
  /** Per class means. */
  mean: Record<number, ClassSummary>;
  /** Mean over classes of the class means (NaN when a class mean is NaN, as nnU-Net). */
  foregroundMean: { dice: number; iou: number; precision: number; recall: number; hd95?: number };
  /** The rule for empty classes, in words. */
  emptyClassRule: string;
}

/** Options of {@link evaluateFolders}. */
export interface EvaluateOptions {
  /** Foreground classes (default: every non-zero value found in the reference maps). */
  classes?: number[];
  /** Class names (value → name) for the outputs. */
  names?: Record<number, string>;
  /** File ending of the label maps (default `.nii.gz`). */
  fileEnding?: string;
  /** Compute HD95 (default true). */
  hd95?: boolean;
}

/** The empty-class rule as written into every summary. */
export const EMPTY_CLASS_RULE: string =
  "A class absent from both reference and prediction has Dice and IoU NaN (as nnU-Net); NaN is left out of " +
  "the means. HD95 is Infinity when the class is in only one map; HD95 means use finite values only.";

async function labelFiles(dir: string, ending: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) if (e.isFile && e.name.endsWith(ending)) names.push(e.name);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) throw new DataFileError(dir, "missing: expected a folder");
    throw error;
  }
  return names.sort();
}

function integerMap(data: Float32Array, path: string): Int32Array {
  const out = new Int32Array(data.length);
  for (let i = 0; i < data.length; i++) {
    if (!Number.isInteger(data[i])) {
      throw new DataFileError(path, `value ${data[i]} at voxel ${i}: expected an integer label map`);
    }
    out[i] = data[i];
  }
  return out;
}

/**
 * Evaluates every reference file of `referenceDir` against the file of the same name in
 * `predictionDir`. Throws a `DataFileError` naming the file for a missing prediction, a grid that differs,
 * or non-integer values.
 */
export async function evaluateFolders(
  predictionDir: string,
  referenceDir: string,
  options: EvaluateOptions = {},
): Promise<EvaluationSummary> {
  const ending = options.fileEnding ?? ".nii.gz";
  const references = await labelFiles(referenceDir, ending);
  if (references.length === 0) throw new DataFileError(referenceDir, `no *${ending} label maps found`);
  const predictions = new Set(await labelFiles(predictionDir, ending));
  const missing = references.filter((n) => !predictions.has(n));
  if (missing.length > 0) {
    throw new DataFileError(
      join(predictionDir, missing[0]),
      `missing: no prediction for reference ${join(referenceDir, missing[0])}` +
        (missing.length > 1 ? ` (and ${missing.length - 1} more)` : ""),
    );
  }
  const loaded: { name: string; p: Int32Array; r: Int32Array; shape: Shape3; spacing: Shape3 }[] = [];
  const found = new Set<number>();
  for (const name of references) {
    const refPath = join(referenceDir, name), predPath = join(predictionDir, name);
    const ref = await readNifti(refPath);
    const pred = await readNifti(predPath);
    if (pred.shape.join() !== ref.shape.join() || !sameAffine(pred.affine, ref.affine)) {
      throw new DataFileError(
        predPath,
        `grid ${pred.shape.join("×")} differs from the reference ${refPath} (${ref.shape.join("×")}` +
          `${pred.shape.join() === ref.shape.join() ? ", other affine" : ""}): expected the same grid`,
      );
    }
    const r = integerMap(ref.data, refPath);
    for (const v of r) if (v !== 0) found.add(v);
    loaded.push({ name, p: integerMap(pred.data, predPath), r, shape: ref.shape, spacing: ref.spacing });
  }
  const classes = options.classes ?? [...found].sort((a, b) => a - b);
  const hd95 = options.hd95 ?? true;
  const cases: CaseEvaluation[] = loaded.map((c) => ({
    name: c.name,
    prediction: join(predictionDir, c.name),
    reference: join(referenceDir, c.name),
    classes: classMetrics(c.p, c.r, classes, { hd95, shape: c.shape, spacing: c.spacing }),
  }));
  const mean: Record<number, ClassSummary> = {};
  for (const k of classes) {
    const of = (m: keyof ClassMetrics) => cases.map((c) => c.classes[k][m] as number);
    const summary: ClassSummary = {
      dice: nanMean(of("dice")),
      iou: nanMean(of("iou")),
      precision: nanMean(of("precision")),
      recall: nanMean(of("recall")),
      n: of("dice").filter((v) => !Number.isNaN(v)).length,
    };
    if (hd95) {
      summary.hd95 = nanMean(of("hd95").filter(Number.isFinite));
      summary.hd95Infinite = of("hd95").filter((v) => v === Infinity).length;
    }
    mean[k] = summary;
  }
  const over = (m: "dice" | "iou" | "precision" | "recall" | "hd95") =>
    classes.length === 0 ? NaN : classes.reduce((s, k) => s + (mean[k][m] as number), 0) / classes.length;
  return {
    classes,
    names: options.names ?? {},
    cases,
    mean,
    foregroundMean: {
      dice: over("dice"),
      iou: over("iou"),
      precision: over("precision"),
      recall: over("recall"),
      ...(hd95 ? { hd95: over("hd95") } : {}),
    },
    emptyClassRule: EMPTY_CLASS_RULE,
  };
}

/** JSON with NaN and ±Infinity written as the strings "NaN", "Infinity" (JSON has no such numbers). */
export function evaluationJson(summary: EvaluationSummary): string {
  return JSON.stringify(
    summary,
    (_key, value) => typeof value === "number" && !Number.isFinite(value) ? String(value) : value,
    1,
  );
}

/** `metrics.csv`: one row per case and class (NaN and Infinity written as such). */
export function evaluationCsv(summary: EvaluationSummary): string {
  const columns = ["dice", "iou", "precision", "recall", "hd95", "tp", "fp", "fn", "tn"] as const;
  const rows = ["case,class,name," + columns.join(",")];
  for (const c of summary.cases) {
    for (const k of summary.classes) {
      const m = c.classes[k];
      const name = (summary.names[k] ?? "").replace(/[",\n]/g, "_");
      rows.push(
        [c.name, k, name, ...columns.map((col) => m[col] === undefined ? "" : String(m[col]))].join(","),
      );
    }
  }
  return rows.join("\n") + "\n";
}

/** Writes `metrics.csv` and `summary.json` into `outDir` (atomically each); returns their paths. */
export async function writeEvaluation(
  outDir: string,
  summary: EvaluationSummary,
): Promise<{ csv: string; json: string }> {
  await Deno.mkdir(outDir, { recursive: true });
  const paths = { csv: join(outDir, "metrics.csv"), json: join(outDir, "summary.json") };
  for (const [path, text] of [[paths.csv, evaluationCsv(summary)], [paths.json, evaluationJson(summary)]]) {
    const tmp = `${path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
    await Deno.writeTextFile(tmp, text);
    await Deno.rename(tmp, path);
  }
  return paths;
}
