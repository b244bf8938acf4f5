/**
 * The real benchmark cell runner: each stage is a voxssl command run as a child process in the stage's
 * own work folder — `pretrain` (which re-launches itself in the sandbox for third-party plugins), then per
 * cell `finetune`, `predict` and `evaluate`. Child processes keep the benchmark's memory flat (each
 * stage's GPU buffers go with its process), make a stuck stage killable, and reuse the commands' own
 * checkpoints: a stage interrupted by a stop signal (SIGTERM to the child: it saves and exits) resumes
 * from its run folder next time, and a stage whose output exists is not run again.
 *
 * @module
 */
import { basename, join, resolve } from "node:path";
import { z } from "zod";
import { readClassificationCsv, readNnunetDataset, readSplitFile, seededSplit } from "../core/eval/mod.ts";
import { type PretrainIndex, readPretrainIndex, writePretrainIndex } from "../core/data/mod.ts";
import {
  type BenchmarkRunner,
  type Cell,
  type CellResult,
  type ClassificationDatasetSpec,
  type DatasetSpec,
  isClassification,
  type PretrainJob,
  type PretrainResult,
  type Provenance,
  type SegmentationCellResult,
  type StageContext,
} from "../core/eval/benchmark/mod.ts";
import {
  classifiedCases,
  ClassifyOptionsSchema,
  classifyStageArgs,
  SEGMENTATION_ONLY_OPTIONS,
} from "./benchmark_classify_stage.ts";
import { VERSION } from "../mod.ts";
import { ConfigError } from "./errors.ts";

const MAIN = new URL("./main.ts", import.meta.url).pathname;
const ROOT = new URL("..", import.meta.url).pathname;

/**
 * The git commit of the checkout at `dir`, with "-dirty" when tracked files have uncommitted changes;
 * undefined outside a checkout or without git.
 */
export async function gitCommit(dir: string): Promise<string | undefined> {
  const git = async (...args: string[]) => {
    const out = await new Deno.Command("git", { args: ["-C", dir, ...args], stdout: "piped", stderr: "null" })
      .output();
    return out.success ? new TextDecoder().decode(out.stdout).trim() : undefined;
  };
  try {
    const head = await git("rev-parse", "HEAD");
    if (!head || !/^[0-9a-f]{40}$/.test(head)) return undefined;
    const changes = await git("status", "--porcelain", "--untracked-files=no");
    return changes ? `${head}-dirty` : head;
  } catch {
    return undefined;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** A stage that stopped because the benchmark was asked to stop (not a failure). */
export class StageStopped extends Error {
  override name = "StageStopped";
}

/**
 * Runs `voxssl <args>` as a child process, its output appended to `log`. On `signal` the child gets
 * SIGTERM (voxssl's training commands then save a checkpoint and exit). Throws with the log's tail when
 * the child fails.
 */
export async function runStage(args: string[], log: string, signal: AbortSignal): Promise<void> {
  if (signal.aborted) throw new StageStopped("stopped before the stage started");
  const file = await Deno.open(log, { create: true, append: true });
  await file.write(new TextEncoder().encode(`\n$ voxssl ${args.join(" ")}\n`));
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  const onAbort = () => {
    try {
      child.kill("SIGTERM");
    } catch { /* already gone */ }
  };
  signal.addEventListener("abort", onAbort);
  const copy = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) await file.write(chunk);
  };
  try {
    const [status] = await Promise.all([child.status, copy(child.stdout), copy(child.stderr)]);
    if (signal.aborted) throw new StageStopped(`voxssl ${args[0]} stopped (see ${log})`);
    if (!status.success) {
      const text = await Deno.readTextFile(log);
      const tail = text.trimEnd().split("\n").slice(-12).join("\n");
      throw new Error(`voxssl ${args[0]} exited with status ${status.code} (log: ${log}):\n${tail}`);
    }
  } finally {
    signal.removeEventListener("abort", onAbort);
    file.close();
  }
}

/** Plugin versions from a training run folder's config.json (`{ plugins: { architecture, method } }`). */
async function runProvenance(
  runDir: string,
  adapter: string | undefined,
  commit: string | undefined,
): Promise<Provenance> {
  const plugins: Record<string, string> = {};
  try {
    const config = JSON.parse(await Deno.readTextFile(join(runDir, "config.json")));
    for (const spec of Object.values(config.plugins ?? {})) {
      const match = /^(.+)@([^@]+)$/.exec(String(spec));
      if (match) plugins[match[1]] = match[2];
    }
  } catch { /* no config: versions unknown */ }
  return { core: VERSION, plugins, commit, adapter };
}

/**
 * Pretraining data: a raw nnU-Net dataset or a folder of NIfTI images is indexed first. When the dataset
 * is also benchmarked (`holdOut`), the index keeps only the training cases of its split: the held-out
 * test cases are never seen, not even without labels.
 */
async function pretrainData(
  job: PretrainJob,
  workDir: string,
  log: string,
  signal: AbortSignal,
): Promise<string> {
  const data = job.data;
  if (data === "synthetic" || data.endsWith(".json")) return data;
  const stat = await Deno.stat(data).catch(() => undefined);
  if (!stat?.isDirectory || (await exists(join(data, "cache.json")))) return data;
  const raw = await exists(join(data, "dataset.json"));
  const images = raw ? join(data, "imagesTr") : data;
  const index = join(workDir, "pretrain_index.json");
  if (await exists(index)) return index;
  const full = join(workDir, "pretrain_index_all.json");
  await runStage(["index", images, "--out", full, "--absolute"], log, signal);
  if (!raw || !job.holdOut) {
    await Deno.rename(full, index);
    return index;
  }
  const ids = (await readNnunetDataset(data)).training.map((c) => c.id);
  const split = job.holdOut.splitFile
    ? await readSplitFile(job.holdOut.splitFile, ids)
    : seededSplit(ids, job.holdOut.splitSeed);
  const { index: kept, images: count } = keepCases(await readPretrainIndex(full), new Set(split.train));
  await writePretrainIndex(index, kept);
  await Deno.writeTextFile(
    log,
    `pretraining index: ${count} training images of ${ids.length} cases (test cases held out)\n`,
    {
      append: true,
    },
  );
  return index;
}

/** The index without images whose case id (file name less `_NNNN.nii.gz`) is not in `keep`. */
export function keepCases(index: PretrainIndex, keep: Set<string>): { index: PretrainIndex; images: number } {
  const out: PretrainIndex = structuredClone(index);
  let images = 0;
  for (const dataset of Object.values(out.datasets)) {
    for (const [sk, subject] of Object.entries(dataset.subjects)) {
      for (const [ek, session] of Object.entries(subject.sessions)) {
        session.images = session.images.filter((image) =>
          keep.has(basename(image.image_path).replace(/(_\d{4})?\.nii(\.gz)?$/, ""))
        );
        images += session.images.length;
        if (session.images.length === 0) delete subject.sessions[ek];
      }
      if (Object.keys(subject.sessions).length === 0) delete dataset.subjects[sk];
    }
  }
  return { index: out, images };
}

/** The spec's `finetune` options this runner understands (`voxssl finetune` flags); unknown keys are errors. */
export const FinetuneOptionsSchema = z.object({
  epochs: z.number().int().positive().optional(),
  stepsPerEpoch: z.number().int().positive().optional(),
  batch: z.number().int().positive().optional(),
  patch: z.tuple([z.number().int().positive(), z.number().int().positive(), z.number().int().positive()])
    .optional(),
  lr: z.number().positive().optional(),
  optimizer: z.enum(["sgd", "adamw"]).optional(),
  schedule: z.enum(["warmup-poly", "sawtooth"]).optional(),
  nnsslSawtooth: z.boolean().optional(),
  spacing: z.union([z.literal("median"), z.literal("none"), z.tuple([z.number(), z.number(), z.number()])])
    .optional(),
  batchDice: z.boolean().optional(),
  deepSupervision: z.boolean().optional(),
  augmentation: z.boolean().optional(),
}).strict();

/** The spec's `predict` options (`voxssl predict` flags). */
export const PredictOptionsSchema = z.object({
  /** Window step as a fraction of the patch (default 0.5). */
  step: z.number().gt(0).max(1).default(0.5),
  /** Mirroring test-time augmentation (default false: 8× the inference time). */
  mirroring: z.boolean().default(false),
  /**
   * The sliding window [D, H, W] (default: the training patch). A CNN is fully convolutional, so a
   * window covering whole cases (one forward each) is a cheaper choice on slow devices.
   */
  patch: z.tuple([z.number().int().positive(), z.number().int().positive(), z.number().int().positive()])
    .optional(),
}).strict();

/**
 * Checks a spec's `finetune` and `predict` options against what this runner passes on; errors name the
 * field (`finetune.steps: …`).
 */
export function checkStageOptions(
  spec: { finetune: unknown; predict: unknown; classify?: unknown },
  where: string,
): void {
  const issues: string[] = [];
  // an option of the other task's stage gets an error that says so (not just "unrecognized key")
  const named = new Set<string>();
  const misplaced = (key: string, names: readonly string[], message: string) => {
    const options = spec[key as keyof typeof spec];
    if (options === null || typeof options !== "object") return;
    for (const name of names) {
      if (name in options) {
        issues.push(`  - ${key}.${name}: ${message}`);
        named.add(`${key}.${name}`);
      }
    }
  };
  misplaced(
    "classify",
    SEGMENTATION_ONLY_OPTIONS,
    "a segmentation option (finetune); voxssl classify has no such setting",
  );
  misplaced(
    "finetune",
    ["labelSmoothing"],
    'a classification option: put it in "classify" (segmentation fine-tuning has no label smoothing)',
  );
  for (
    const [key, schema] of [
      ["finetune", FinetuneOptionsSchema],
      ["predict", PredictOptionsSchema],
      ["classify", ClassifyOptionsSchema],
    ] as const
  ) {
    if (key === "classify" && spec.classify === undefined) continue;
    const parsed = (schema as z.ZodType).safeParse(spec[key]);
    if (!parsed.success) {
      for (const i of parsed.error.issues) {
        // keys already named as the other task's are not repeated as merely unknown
        if (i.code === "unrecognized_keys" && i.keys.every((k) => named.has(`${key}.${k}`))) continue;
        issues.push(`  - ${[key, ...i.path].join(".")}: ${i.message}`);
      }
    }
  }
  if (issues.length > 0) throw new ConfigError(`${where}:\n${issues.join("\n")}`);
}

/**
 * Checks that every dataset of the spec is an nnU-Net raw dataset folder (its dataset.json exists), so
 * a missing dataset stops the benchmark before any work, naming the field.
 */
export async function checkDatasets(spec: { datasets: DatasetSpec[] }, where: string): Promise<void> {
  const problems: string[] = [];
  for (const [i, d] of spec.datasets.entries()) {
    if (isClassification(d)) {
      // parsing reads every row and checks every image exists: a bad CSV stops the benchmark now
      await readClassificationCsv(d.csv).catch((e) => {
        problems.push(`  - datasets.${i}.csv: ${(e as Error).message}`);
      });
    } else if (!(await exists(join(d.path, "dataset.json")))) {
      problems.push(
        `  - datasets.${i}.path: ${d.path} has no dataset.json (expected an nnU-Net raw dataset)`,
      );
    }
  }
  if (problems.length > 0) throw new ConfigError(`${where}:\n${problems.join("\n")}`);
}

/** The `voxssl finetune` flags of a cell's `finetune` options. */
export function finetuneFlags(o: z.output<typeof FinetuneOptionsSchema>): string[] {
  const flags: string[] = [];
  if (o.epochs) flags.push("--epochs", String(o.epochs));
  if (o.stepsPerEpoch) flags.push("--steps", String(o.stepsPerEpoch));
  if (o.batch) flags.push("--batch", String(o.batch));
  if (o.patch) flags.push("--patch", o.patch.join(","));
  if (o.lr) flags.push("--lr", String(o.lr));
  if (o.optimizer) flags.push("--optimizer", o.optimizer);
  if (o.schedule) flags.push("--schedule", o.schedule);
  if (o.nnsslSawtooth) flags.push("--nnssl-sawtooth");
  if (o.spacing) flags.push("--spacing", Array.isArray(o.spacing) ? o.spacing.join(",") : o.spacing);
  if (o.batchDice) flags.push("--batch-dice");
  if (o.deepSupervision) flags.push("--deep-supervision");
  if (o.augmentation === false) flags.push("--no-augmentation");
  return flags;
}

/**
 * The `voxssl predict` arguments of a cell. The fine-tuned checkpoint gives the spacing and the window
 * (its training patch), so only a spec's own `predict.patch` is passed on; `--dataset` stays, as the
 * checkpoint records no file ending (dataset.json's `file_ending`) and predict checks channels and
 * classes against it.
 */
export function predictStageArgs(o: {
  images: string;
  checkpoint: string;
  dataset: string;
  out: string;
  options: z.output<typeof PredictOptionsSchema>;
}): string[] {
  return [
    "predict",
    o.images,
    "--checkpoint",
    o.checkpoint,
    "--dataset",
    o.dataset,
    "--out",
    o.out,
    ...(o.options.patch ? ["--patch", o.options.patch.join(",")] : []),
    "--step",
    String(o.options.step),
    ...(o.options.mirroring ? ["--mirror"] : []),
  ];
}

/** A hard link (no copy of the data), or a copy across file systems. Symbolic links would not do:
 * the commands list regular files only. */
async function linkOrCopy(from: string, to: string): Promise<void> {
  try {
    await Deno.link(from, to);
  } catch {
    await Deno.copyFile(from, to);
  }
}

/**
 * A folder pair holding only the chosen test cases (hard links into the raw dataset), in the layout
 * `voxssl predict` and `evaluate` read.
 */
async function linkTestCases(
  datasetPath: string,
  ids: string[],
  dir: string,
): Promise<{ images: string; labels: string }> {
  const raw = await readNnunetDataset(datasetPath);
  const byId = new Map(raw.training.map((c) => [c.id, c]));
  const images = join(dir, "images");
  const labels = join(dir, "labels");
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  await Deno.mkdir(images, { recursive: true });
  await Deno.mkdir(labels, { recursive: true });
  for (const id of ids) {
    const c = byId.get(id);
    if (!c?.label) {
      throw new Error(`${datasetPath}: the fine-tuning run's test case ${id} has no labelled case`);
    }
    for (const image of c.images) await linkOrCopy(resolve(image), join(images, basename(image)));
    await linkOrCopy(resolve(c.label), join(labels, basename(c.label)));
  }
  return { images, labels };
}

/**
 * Per-case scores from `voxssl evaluate`'s summary.json: Dice per foreground class, and their mean over
 * the classes not empty in both maps (nnU-Net's NaN rule); a case empty in every class is left out.
 */
export function caseScores(summary: {
  classes: number[];
  names: Record<string, string>;
  cases: { name: string; classes: Record<string, { dice: number | string }> }[];
}): SegmentationCellResult["cases"] {
  const out: SegmentationCellResult["cases"] = [];
  for (const c of summary.cases) {
    const perClass: Record<string, number | null> = {};
    const values: number[] = [];
    for (const k of summary.classes) {
      const dice = Number(c.classes[k]?.dice);
      perClass[summary.names[k] ?? String(k)] = Number.isNaN(dice) ? null : dice;
      if (!Number.isNaN(dice)) values.push(dice);
    }
    if (values.length === 0) continue;
    out.push({
      case: c.name.replace(/\.nii(\.gz)?$/, ""),
      dice: values.reduce((a, b) => a + b, 0) / values.length,
      perClass,
    });
  }
  return out;
}

/** The class names of a classify run's `test_scores.json`; a file that is not what it should be is named. */
async function readClassScores(file: string): Promise<{ classes: string[] }> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await Deno.readTextFile(file));
  } catch (error) {
    throw new Error(`${file}: not readable as JSON (${(error as Error).message})`);
  }
  const classes = (parsed as { classes?: unknown })?.classes;
  if (!Array.isArray(classes) || !classes.every((c) => typeof c === "string")) {
    throw new Error(`${file}: expected "classes", a list of class names`);
  }
  return { classes };
}

/**
 * A classification cell: `voxssl classify` (pretrained encoder or scratch, the cell's seed and label
 * fraction) in the cell's work folder; it trains and scores the test cases itself, and its per-case CSV
 * is the cell's result. An interrupted run resumes from its latest checkpoint.
 */
async function classificationCell(
  cell: Cell,
  dataset: ClassificationDatasetSpec,
  checkpoint: string | undefined,
  context: StageContext,
  adapter: string | undefined,
  commit: string | undefined,
): Promise<CellResult> {
  const started = performance.now();
  const work = context.workDir;
  await Deno.mkdir(work, { recursive: true });
  const log = join(work, "stages.log");
  const run = join(work, "classify");
  const final = join(run, "checkpoints", "final.safetensors");
  const spacing = ClassifyOptionsSchema.parse(cell.finetune).spacing ?? "median";
  // one preprocessed copy of each dataset (per spacing) for every cell
  const cache = join(work, "..", "..", "data", `${dataset.name}-classification-${String(spacing)}`);
  const scoresFile = join(run, "test_scores.json");
  const predictionsFile = join(run, "test_predictions.csv");
  // a run stopped after its final checkpoint but before its scores resumes too: resuming a finished run
  // scores its test cases again from the final weights
  const done = async () => await exists(final) && await exists(scoresFile) && await exists(predictionsFile);
  if (!(await done())) {
    const resume = await exists(join(run, "checkpoints", "latest.safetensors"));
    context.log(`  voxssl classify → ${run} (log: ${log})`);
    await runStage(
      classifyStageArgs({ cell, csv: dataset.csv, out: run, cache, checkpoint, resume }),
      log,
      context.signal,
    );
    if (!(await done())) throw new StageStopped(`classification stopped before its end (${run})`);
  }
  const { classes } = await readClassScores(scoresFile);
  const cases = classifiedCases(
    await Deno.readTextFile(predictionsFile),
    classes,
    predictionsFile,
    dataset.maxTestCases,
  );
  const plugins = {
    ...(await runProvenance(run, adapter, commit)).plugins,
    ...(checkpoint ? (await runProvenance(join(checkpoint, "..", ".."), adapter, commit)).plugins : {}),
  };
  return {
    task: "classification",
    classes,
    cases,
    provenance: { core: VERSION, plugins, commit, adapter },
    seconds: (performance.now() - started) / 1000,
    artifacts: { classify: run, testPredictions: predictionsFile },
  };
}

/** Options of {@link createBenchmarkRunner}. */
export interface BenchmarkRunnerOptions {
  /** The subcommands this build of voxssl has (the runner needs the cell stages among them). */
  commands: string[];
}

/** The stage commands a cell needs, beyond `pretrain`. */
const CELL_STAGES = ["finetune", "predict", "evaluate"] as const;

/** The adapter in words, or undefined without WebGPU. */
async function adapterDescription(): Promise<string | undefined> {
  try {
    const adapter = await navigator.gpu?.requestAdapter();
    if (!adapter) return undefined;
    const i = adapter.info;
    return [i.description || i.device, i.vendor, i.architecture].filter((s) => s).join(", ") +
      (i.isFallbackAdapter ? " (fallback adapter)" : "");
  } catch {
    return undefined;
  }
}

/** The real runner. Fails at once, naming what is missing, when this build lacks a stage command. */
export async function createBenchmarkRunner(options: BenchmarkRunnerOptions): Promise<BenchmarkRunner> {
  const missing: string[] = [];
  for (const stage of CELL_STAGES) if (!options.commands.includes(stage)) missing.push(stage);
  if (missing.length > 0) {
    throw new ConfigError(
      `this build of voxssl has no ${missing.map((m) => `\`voxssl ${m}\``).join(", ")} yet, which every ` +
        `benchmark cell runs (fine-tune → predict → evaluate); --dry-run lists the grid`,
    );
  }
  const adapter = await adapterDescription();
  const commit = await gitCommit(ROOT);

  return {
    async pretrain(job: PretrainJob, context: StageContext): Promise<PretrainResult> {
      const started = performance.now();
      await Deno.mkdir(context.workDir, { recursive: true });
      const log = join(context.workDir, "stages.log");
      const run = join(context.workDir, "pretrain");
      const final = join(run, "checkpoints", "final.safetensors");
      if (!(await exists(final))) {
        const data = await pretrainData(job, context.workDir, log, context.signal);
        const config = {
          ...job.config,
          arch: job.arch,
          method: job.method,
          data,
          seed: job.seed,
          plugins: job.plugin ? [job.plugin] : [],
        };
        const configFile = join(context.workDir, "pretrain_config.json");
        await Deno.writeTextFile(configFile, JSON.stringify(config, null, 2) + "\n");
        context.log(`  voxssl pretrain → ${run} (log: ${log})`);
        const resume = await exists(join(run, "checkpoints", "latest.safetensors"));
        await runStage(
          resume ? ["pretrain", "--resume", run] : ["pretrain", "--config", configFile, "--out", run],
          log,
          context.signal,
        );
        if (!(await exists(final))) throw new StageStopped(`pretraining stopped before its end (${run})`);
      }
      return {
        checkpoint: final,
        provenance: await runProvenance(run, adapter, commit),
        seconds: (performance.now() - started) / 1000,
      };
    },

    async runCell(cell: Cell, checkpoint: string | undefined, context: StageContext): Promise<CellResult> {
      if (isClassification(cell.dataset)) {
        return await classificationCell(cell, cell.dataset, checkpoint, context, adapter, commit);
      }
      const dataset = cell.dataset;
      const started = performance.now();
      const work = context.workDir;
      await Deno.mkdir(work, { recursive: true });
      const log = join(work, "stages.log");
      const run = join(work, "finetune");
      const final = join(run, "checkpoints", "final.safetensors");
      const options = FinetuneOptionsSchema.parse(cell.finetune);
      // one preprocessed copy of each dataset (per spacing) for every cell
      const cache = join(
        work,
        "..",
        "..",
        "data",
        `${dataset.name}-${String(options.spacing ?? "median")}`,
      );
      if (!(await exists(final))) {
        const resume = await exists(join(run, "checkpoints", "latest.safetensors"));
        const args = resume ? ["finetune", dataset.path, "--resume", run, "--cache", cache] : [
          "finetune",
          dataset.path,
          "--arch",
          cell.arch,
          "--out",
          run,
          "--cache",
          cache,
          "--seed",
          String(cell.seed),
          "--split-seed",
          String(cell.splitSeed),
          "--label-fraction",
          String(cell.labelFraction),
          ...(checkpoint ? ["--pretrained", checkpoint] : []),
          ...(dataset.splitFile ? ["--split", dataset.splitFile] : []),
          ...finetuneFlags(options),
        ];
        // predict + evaluate score the test cases (in their original geometry), not the run itself
        args.push("--no-score");
        context.log(`  voxssl finetune → ${run} (log: ${log})`);
        await runStage(args, log, context.signal);
        if (!(await exists(final))) throw new StageStopped(`fine-tuning stopped before its end (${run})`);
      }
      const runConfig = JSON.parse(await Deno.readTextFile(join(run, "config.json")));
      const segmentation = runConfig.resolvedMethod?.config;
      const testIds: string[] = [...(segmentation?.split?.test ?? [])].sort();
      if (testIds.length === 0) throw new Error(`${run}/config.json names no test cases`);
      const ids = testIds.slice(0, dataset.maxTestCases ?? testIds.length);
      const test = await linkTestCases(dataset.path, ids, join(work, "test"));

      const predictions = join(work, "predictions");
      context.log(`  voxssl predict → ${predictions}`);
      await runStage(
        predictStageArgs({
          images: test.images,
          checkpoint: final,
          dataset: dataset.path,
          out: predictions,
          options: PredictOptionsSchema.parse(cell.predict),
        }),
        log,
        context.signal,
      );
      const evaluation = join(work, "evaluation");
      await runStage(
        [
          "evaluate",
          predictions,
          test.labels,
          "--dataset",
          dataset.path,
          "--out",
          evaluation,
          "--no-hd95",
        ],
        log,
        context.signal,
      );
      const summary = JSON.parse(await Deno.readTextFile(join(evaluation, "summary.json")));
      const plugins = {
        ...(await runProvenance(run, adapter, commit)).plugins,
        ...(checkpoint ? (await runProvenance(join(checkpoint, "..", ".."), adapter, commit)).plugins : {}),
      };
      return {
        cases: caseScores(summary),
        provenance: { core: VERSION, plugins, commit, adapter },
        seconds: (performance.now() - started) / 1000,
        artifacts: { finetune: run, predictions, evaluation },
      };
    },
  };
}

/**
 * Cases for the leaderboard page's overlay viewer: the first predicted test case of each finished cell (at
 * most `max`), with its first channel and its reference, from the files the real runner left in the cell's
 * work folder (`predictions/`, `test/images`, `test/labels`). Cells without those files are left out.
 */
export async function overlayCases(
  store: { cells(): Promise<Map<string, { cell: Cell; result: { artifacts?: Record<string, string> } }>> },
  max = 8,
): Promise<{ name: string; image: string; prediction: string; reference: string }[]> {
  const out = [];
  for (const { cell, result } of (await store.cells()).values()) {
    if (out.length >= max) break;
    const predictions = result.artifacts?.predictions;
    if (!predictions) continue;
    const files = [];
    try {
      for await (const e of Deno.readDir(predictions)) {
        if (e.isFile && /\.nii(\.gz)?$/.test(e.name)) files.push(e.name);
      }
    } catch {
      continue; // the work folder was cleaned up
    }
    const file = files.sort()[0];
    if (!file) continue;
    const ending = file.endsWith(".nii.gz") ? ".nii.gz" : ".nii";
    const id = file.slice(0, -ending.length);
    const test = join(predictions, "..", "test");
    const image = join(test, "images", `${id}_0000${ending}`);
    const reference = join(test, "labels", file);
    if (!(await exists(image)) || !(await exists(reference))) continue;
    out.push({
      name:
        `${cell.dataset.name} / ${id} / ${cell.method} (fraction ${cell.labelFraction}, seed ${cell.seed})`,
      image,
      prediction: join(predictions, file),
      reference,
    });
  }
  return out;
}
