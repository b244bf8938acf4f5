/**
 * The benchmark specification (`voxssl benchmark <spec.json>`): which encoders (pretraining checkpoints,
 * or SSL method plugins to pretrain first) are fine-tuned on which architectures, datasets, label fractions
 * and seeds. zod-validated; unknown keys are errors, and every error names its field. Relative paths are
 * resolved against the spec file's folder, so a spec can be moved with its data.
 *
 * @module
 */
import { isAbsolute, resolve } from "node:path";
import { z } from "zod";
import type { ZodInput, ZodOutput, ZodSchema } from "../../plugin/zod_types.ts";

/** The name the from-scratch baseline always has (a spec's own methods may not use it). */
export const SCRATCH = "scratch";

const name = z.string().regex(
  /^[A-Za-z0-9][A-Za-z0-9._-]*$/,
  "expected a name of letters, digits, '.', '_' and '-' (it becomes part of file names)",
);

/** Options passed through to one stage of a cell (fine-tune, predict, pretrain); the runner checks them. */
const stageOptions = z.record(z.string(), z.unknown());

const methodSchema = z.object({
  /** The method's name on the leaderboard. */
  name,
  /** A pretraining checkpoint to fine-tune from (safetensors written by `voxssl pretrain`). */
  checkpoint: z.string().min(1).optional(),
  /** The architecture the checkpoint was pretrained with (one of the spec's `architectures`). */
  arch: z.string().min(1).optional(),
  /** Pretrain first with this SSL method plugin, once per architecture. */
  pretrain: z.object({
    /** The method plugin's name, e.g. "mae". */
    method: z.string().min(1),
    /** A third-party plugin module (path or URL); it runs sandboxed. */
    plugin: z.string().min(1).optional(),
    /** "synthetic", a dataset index (.json), a preprocessed cache, or a folder of NIfTI images. */
    data: z.string().min(1),
    /** More `voxssl pretrain` run-config keys (epochs, stepsPerEpoch, patch, batch, lr, methodConfig…). */
    config: stageOptions.default({}),
  }).strict().optional(),
}).strict().superRefine((m, context) => {
  if (m.name === SCRATCH) {
    context.addIssue({
      code: "custom",
      path: ["name"],
      message: `"${SCRATCH}" is the baseline every benchmark includes; give this method another name`,
    });
  }
  if ((m.checkpoint === undefined) === (m.pretrain === undefined)) {
    context.addIssue({
      code: "custom",
      message: 'expected exactly one of "checkpoint" (a pretrained encoder) or "pretrain" (a method to run)',
    });
  }
  if (m.checkpoint !== undefined && m.arch === undefined) {
    context.addIssue({
      code: "custom",
      path: ["arch"],
      message: "a checkpoint method names the architecture it was pretrained with",
    });
  }
  if (m.pretrain !== undefined && m.arch !== undefined) {
    context.addIssue({
      code: "custom",
      path: ["arch"],
      message: "a pretrain method runs on every architecture of the spec; remove arch",
    });
  }
});

/** A segmentation dataset (the default task): an nnU-Net raw dataset, scored by Dice. */
export interface SegmentationDatasetSpec {
  /** The dataset's name on the leaderboard. */
  name: string;
  /** Absent or "segmentation", the same (cell keys ignore it, so older results folders stay valid). */
  task?: "segmentation";
  /** An nnU-Net raw dataset folder (dataset.json, imagesTr, labelsTr). */
  path: string;
  /** Classification's field: never set here. */
  csv?: undefined;
  /** A split file; default: a seeded 50/50 split. */
  splitFile?: string;
  /** At most this many test cases are scored; default: all. */
  maxTestCases?: number;
}

/** A classification dataset: a `voxssl classify` CSV, scored by balanced accuracy (and accuracy, AUROC). */
export interface ClassificationDatasetSpec {
  /** The dataset's name on the leaderboard. */
  name: string;
  task: "classification";
  /** A CSV of image paths and labels (columns image or image_0000…, label; optional case). */
  csv: string;
  /** Segmentation's field: never set here (so `dataset.path` reads as possibly undefined, not an error). */
  path?: undefined;
  /** A split file; default: a stratified seeded 50/50 split. */
  splitFile?: string;
  /** At most this many test cases are scored (the first ids in sorted order); default: all. */
  maxTestCases?: number;
}

/** True for a classification dataset (a dataset without `task` is segmentation). */
export function isClassification(dataset: DatasetSpec): dataset is ClassificationDatasetSpec {
  return dataset.task === "classification";
}

const datasetSchema = z.object({
  /** The dataset's name on the leaderboard. */
  name,
  /** "segmentation" (default: `voxssl finetune` → predict → Dice) or "classification" (`voxssl classify`). */
  task: z.enum(["segmentation", "classification"]).optional(),
  /** Segmentation: an nnU-Net raw dataset folder (dataset.json, imagesTr, labelsTr). */
  path: z.string().min(1).optional(),
  /** Classification: a CSV of image paths and labels (`voxssl classify`'s input). */
  csv: z.string().min(1).optional(),
  /**
   * A split file (nnU-Net's splits_final.json, fold 0, or {"train": [...], "test": [...]} of case ids);
   * default: a seeded 50/50 split (OpenMind's protocol; stratified by class for classification).
   */
  splitFile: z.string().min(1).optional(),
  /** At most this many test cases are evaluated (a short budget); default: all. */
  maxTestCases: z.number().int().positive().optional(),
}).strict().superRefine((d, context) => {
  const issue = (path: string, message: string) =>
    context.addIssue({ code: "custom", path: [path], message });
  if (d.task === "classification") {
    if (d.path !== undefined) {
      issue(
        "path",
        'a classification dataset reads its cases from "csv"; "path" (an nnU-Net raw dataset) is for ' +
          "segmentation datasets",
      );
    }
    if (d.csv === undefined) {
      issue(
        "csv",
        "a classification dataset needs a CSV of image paths and labels (voxssl classify's input)",
      );
    }
  } else {
    if (d.csv !== undefined) {
      issue(
        "csv",
        '"csv" is for classification datasets (add "task": "classification"); a segmentation dataset ' +
          'reads the nnU-Net raw dataset at "path"',
      );
    }
    if (d.path === undefined) {
      issue("path", 'expected an nnU-Net raw dataset folder (or "task": "classification" with a "csv")');
    }
  }
}).transform((d) => d as SegmentationDatasetSpec | ClassificationDatasetSpec);

const benchmarkSpecSchema = z.object({
  /** The benchmark's name (titles of the leaderboard and the plots). */
  name: z.string().min(1).default("benchmark"),
  /** Results folder (relative to the spec file); `--out` overrides it. */
  out: z.string().min(1).optional(),
  /** Pretrained encoders to compare; the from-scratch baseline is added to them. */
  methods: z.array(methodSchema).default([]),
  /** Architecture plugins and sizes, e.g. "resenc-tiny". */
  architectures: z.array(z.string().min(1)).min(1),
  datasets: z.array(datasetSchema).min(1),
  /** Shares of the training cases used for fine-tuning (nested subsets: 5% ⊂ 25% ⊂ 100%). */
  labelFractions: z.array(z.number().gt(0).max(1)).min(1).default([1]),
  /** Fine-tuning seeds; every (method, architecture, dataset, fraction) runs once per seed. */
  seeds: z.array(z.number().int().min(0)).min(1).default([0]),
  /** Seed of the train/test split and of the label-fraction subsets (the same for every cell). */
  splitSeed: z.number().int().min(0).default(0),
  /** Seed of the pretraining runs (one per method and architecture). */
  pretrainSeed: z.number().int().min(0).default(0),
  /** `voxssl finetune` options for every segmentation cell (epochs, stepsPerEpoch, patch, batch, schedule…). */
  finetune: stageOptions.default({}),
  /** `voxssl predict` options for every segmentation cell (mirroring, step…). */
  predict: stageOptions.default({}),
  /** `voxssl classify` options for every classification cell (epochs, stepsPerEpoch, labelSmoothing…). */
  classify: stageOptions.optional(),
  /** The leaderboard's confidence intervals. */
  statistics: z.object({
    /** Confidence level of the intervals. */
    confidence: z.number().gt(0).lt(1).default(0.95),
    /** Bootstrap replicates. */
    replicates: z.number().int().min(100).default(2000),
    /** Seed of the bootstrap's random stream (fixed: the same results give the same intervals). */
    seed: z.number().int().min(0).default(0),
  }).strict().default({ confidence: 0.95, replicates: 2000, seed: 0 }),
}).strict().superRefine((spec, context) => {
  const duplicates = (values: (string | number)[], path: string) => {
    const seen = new Set<string | number>();
    values.forEach((v, i) => {
      if (seen.has(v)) context.addIssue({ code: "custom", path: [path, i], message: `duplicate ${v}` });
      seen.add(v);
    });
  };
  duplicates(spec.methods.map((m) => m.name), "methods");
  duplicates(spec.architectures, "architectures");
  duplicates(spec.datasets.map((d) => d.name), "datasets");
  duplicates(spec.labelFractions, "labelFractions");
  duplicates(spec.seeds, "seeds");
  // stage options no cell would use are mistakes (a classification spec given predict, say)
  const segmentation = spec.datasets.some((d) => !isClassification(d));
  const classification = spec.datasets.some(isClassification);
  if (!segmentation) {
    for (const key of ["finetune", "predict"] as const) {
      if (Object.keys(spec[key]).length > 0) {
        context.addIssue({
          code: "custom",
          path: [key],
          message: `options of voxssl ${key} (segmentation), but no dataset is a segmentation task; ` +
            `classification cells take theirs from "classify"`,
        });
      }
    }
  }
  if (!classification && spec.classify !== undefined) {
    context.addIssue({
      code: "custom",
      path: ["classify"],
      message:
        'options of voxssl classify, but no dataset has "task": "classification"; segmentation cells ' +
        'take theirs from "finetune" and "predict"',
    });
  }
  spec.methods.forEach((m, i) => {
    if (m.arch !== undefined && !spec.architectures.includes(m.arch)) {
      context.addIssue({
        code: "custom",
        path: ["methods", i, "arch"],
        message: `"${m.arch}" is not one of architectures (${spec.architectures.join(", ")})`,
      });
    }
  });
});

/** A spec as written (defaults not applied). */
export type BenchmarkSpecInput = ZodInput<typeof benchmarkSpecSchema>;
/** A parsed spec (defaults applied, paths as written). */
export type BenchmarkSpec = ZodOutput<typeof benchmarkSpecSchema>;
/** One method entry of a parsed spec. */
export type MethodSpec = BenchmarkSpec["methods"][number];
/** One dataset entry of a parsed spec. */
export type DatasetSpec = SegmentationDatasetSpec | ClassificationDatasetSpec;

/** The zod schema of a benchmark spec (unknown keys are errors). */
export const BenchmarkSpecSchema: ZodSchema<BenchmarkSpec, BenchmarkSpecInput> = benchmarkSpecSchema;

/** A spec that does not parse; the message lists each field and what was expected. */
export class BenchmarkSpecError extends Error {
  override name = "BenchmarkSpecError";
}

function resolvePath(path: string, base: string): string {
  return isAbsolute(path) || /^[a-z]+:/i.test(path) || path === "synthetic" ? path : resolve(base, path);
}

/**
 * Validates `value` (a parsed JSON document) as a benchmark spec, naming `where` (the file) in errors, and
 * resolves its relative paths (data, checkpoints, plugins, split files, out) against `baseDir`.
 */
export function parseBenchmarkSpec(value: unknown, where: string, baseDir: string): BenchmarkSpec {
  const parsed = BenchmarkSpecSchema.safeParse(value);
  if (!parsed.success) {
    throw new BenchmarkSpecError(
      `${where}:\n` +
        parsed.error.issues.map((i) => `  - ${i.path.join(".") || "(root)"}: ${i.message}`).join("\n"),
    );
  }
  const spec = parsed.data;
  return {
    ...spec,
    out: spec.out === undefined ? undefined : resolvePath(spec.out, baseDir),
    methods: spec.methods.map((m) => ({
      ...m,
      checkpoint: m.checkpoint === undefined ? undefined : resolvePath(m.checkpoint, baseDir),
      pretrain: m.pretrain === undefined ? undefined : {
        ...m.pretrain,
        data: resolvePath(m.pretrain.data, baseDir),
        plugin: m.pretrain.plugin === undefined ? undefined : resolvePath(m.pretrain.plugin, baseDir),
      },
    })),
    datasets: spec.datasets.map((d) => {
      const splitFile = d.splitFile === undefined ? undefined : resolvePath(d.splitFile, baseDir);
      return isClassification(d)
        ? { ...d, csv: resolvePath(d.csv, baseDir), splitFile }
        : { ...d, path: resolvePath(d.path, baseDir), splitFile };
    }),
  };
}

/** Reads and validates a spec file (JSON); errors name the file. */
export async function readBenchmarkSpec(path: string): Promise<BenchmarkSpec> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new BenchmarkSpecError(`${path}: cannot read it (${(error as Error).message})`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new BenchmarkSpecError(`${path}: not valid JSON (${(error as Error).message})`);
  }
  return parseBenchmarkSpec(value, path, resolve(path, ".."));
}
