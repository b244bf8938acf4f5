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
import { join } from "node:path";
import type {
  BenchmarkRunner,
  Cell,
  CellResult,
  PretrainJob,
  PretrainResult,
  Provenance,
  StageContext,
} from "../core/eval/benchmark/mod.ts";
import { VERSION } from "../mod.ts";
import { ConfigError } from "./errors.ts";

const MAIN = new URL("./main.ts", import.meta.url).pathname;
const ROOT = new URL("..", import.meta.url).pathname;

/** The git commit of the checkout at `dir`, if it is one and git is installed. */
export async function gitCommit(dir: string): Promise<string | undefined> {
  try {
    const out = await new Deno.Command("git", {
      args: ["-C", dir, "rev-parse", "HEAD"],
      stdout: "piped",
      stderr: "null",
    })
      .output();
    const text = new TextDecoder().decode(out.stdout).trim();
    return out.success && /^[0-9a-f]{40}$/.test(text) ? text : undefined;
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

/** Pretraining data: a raw nnU-Net dataset or a folder of NIfTI images is indexed first. */
async function pretrainData(
  data: string,
  workDir: string,
  log: string,
  signal: AbortSignal,
): Promise<string> {
  if (data === "synthetic" || data.endsWith(".json")) return data;
  const stat = await Deno.stat(data).catch(() => undefined);
  if (!stat?.isDirectory || (await exists(join(data, "cache.json")))) return data;
  const images = (await exists(join(data, "dataset.json"))) ? join(data, "imagesTr") : data;
  const index = join(workDir, "pretrain_index.json");
  if (!(await exists(index))) await runStage(["index", images, "--out", index, "--absolute"], log, signal);
  return index;
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

/**
 * The real runner. Fails at once, naming what is missing, when this build lacks a stage command
 * (fine-tuning, inference and evaluation come from other parts of issue 12).
 */
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
        const data = await pretrainData(job.data, context.workDir, log, context.signal);
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

    runCell(_cell: Cell, _checkpoint: string | undefined, _context: StageContext): Promise<CellResult> {
      // Unreachable in this build (createBenchmarkRunner refuses without the stage commands); wired in
      // when the fine-tuning, inference and evaluation commands are merged.
      return Promise.reject(
        new Error("voxssl finetune/predict/evaluate are not wired into the benchmark yet"),
      );
    },
  };
}
