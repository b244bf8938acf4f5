/**
 * `voxssl pretrain`: resolves the run configuration (method defaults ← --config FILE ← flags), loads
 * plugins, opens the data and runs the Trainer. With no arguments it is the embedded default: a small
 * ResEnc pretrained with MAE on synthetic brain-like volumes, finishing in minutes even on a CPU adapter.
 *
 * A run with third-party plugins (`--plugin`, the config's `plugins`, or a resumed run that had them)
 * never imports them here: this process works out what the run reads and writes from flags, config and
 * checkpoint alone and re-launches itself in the sandbox (cli/sandbox.ts), where the plugins load.
 *
 * @module
 */
import type { Command } from "@commander-js/extra-typings";
import { join, resolve } from "node:path";
import { broadcastText, initGpu, VERSION } from "../../mod.ts";
import { loadPlugin, pluginSpecifier } from "../../core/plugin/mod.ts";
import {
  checkNewRunFolder,
  combineObservers,
  DEFAULT_HEALTH,
  defaultRunFolder,
  formatIssues,
  inspectRunFolder,
  loadCheckpoint,
  openBatchSources,
  prepareRunFolder,
  type ResolvedRunConfig,
  resolveRunConfig,
  type RunConfig,
  type RunConfigInput,
  RunConfigSchema,
  runPretraining,
} from "../../core/train/mod.ts";
import { builtinRegistry, pluginModule } from "../builtins.ts";
import { ConfigError } from "../errors.ts";
import {
  dataReadPlan,
  isSandboxed,
  lockSandbox,
  pluginPackageRoot,
  pluginPath,
  relaunchSandboxed,
  type SandboxPlan,
} from "../sandbox.ts";
import { closeLoaderWorkers, loaderIsolation, startLoaderWorkers } from "../sandbox_workers.ts";
import { dataParallelRun, joinJob } from "../distributed.ts";
import { launchInfo } from "../../core/dist/mod.ts";
import { type AutotuneMode, autotuneModeFromEnvironment } from "../../kernels/mod.ts";
import { reportObserver } from "../report/run_observer.ts";
import { logMode, logOption } from "../progress.ts";
import { runProgress } from "../run_progress.ts";
import { startWatchdog, type Watchdog } from "../watchdog.ts";
import { applyResumeFlags, checkMemoryFits, checkPatchFitsArchitecture } from "./pretrain_checks.ts";

function parseVec3(value: string, flag: string): [number, number, number] {
  const parts = value.split(/[,x×]/).map((s) => Number(s.trim()));
  const v = parts.length === 1 ? [parts[0], parts[0], parts[0]] : parts;
  if (v.length !== 3 || v.some((x) => !Number.isInteger(x) || x <= 0)) {
    throw new ConfigError(`${flag}: expected one size or three (e.g. 160 or 160,160,160), got "${value}"`);
  }
  return v as [number, number, number];
}

function parseNumber(value: string, flag: string, integer = false): number {
  const x = Number(value);
  if (!Number.isFinite(x) || (integer && !Number.isInteger(x))) {
    throw new ConfigError(`${flag}: expected ${integer ? "an integer" : "a number"}, got "${value}"`);
  }
  return x;
}

/** `--sample-timeout`: seconds a sample may take before the run stops (the config's sampleTimeoutSeconds). */
function sampleTimeout(value: string): number {
  const seconds = parseNumber(value, "--sample-timeout");
  if (!(seconds > 0)) throw new ConfigError(`--sample-timeout: expected seconds > 0, got "${value}"`);
  return seconds;
}

async function readConfigFile(path: string): Promise<RunConfigInput> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new ConfigError(`--config ${path}: cannot read it (${(error as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`--config ${path}: not valid JSON (${(error as Error).message})`);
  }
}

/** The flags of `pretrain`. */
interface PretrainFlags {
  arch?: string;
  method?: string;
  data?: string;
  steps?: string;
  epochs?: string;
  batch?: string;
  patch?: string;
  lr?: string;
  precision?: string;
  workers?: string;
  sampleTimeout?: string;
  out?: string;
  resume?: string;
  seed?: string;
  plugin?: string[];
  config?: string;
  dryRun?: boolean;
  init?: string;
  log?: string;
  overwrite?: boolean;
  autotune?: boolean;
  profile?: string;
}

/** What a run is, before any plugin is loaded: its parsed config, or the checkpoint it resumes. */
type RunRequest =
  | { kind: "new"; config: RunConfig; configFile?: string }
  | { kind: "resume"; resolved: ResolvedRunConfig; notes: string[] };

/** The autotune mode VOXSSL_AUTOTUNE asks for; a bad value is the user's to fix. */
function autotuneMode(): AutotuneMode {
  try {
    return autotuneModeFromEnvironment();
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }
}

/** Reads flags, config file and checkpoint into a request; plugin paths come out absolute. */
async function describeRun(flags: PretrainFlags, cwd: string): Promise<RunRequest> {
  if (flags.resume) {
    const path = join(flags.resume, "checkpoints", "latest.safetensors");
    const ckpt = await loadCheckpoint(path).catch((error: Error) => {
      throw new ConfigError(`--resume ${flags.resume}: ${error.message}`);
    });
    const resolved = { ...ckpt.meta.config, out: flags.resume };
    const extra = (flags.plugin ?? []).map((p) => pluginPath(p, cwd));
    resolved.plugins = [...new Set([...resolved.plugins, ...extra])];
    const notes = applyResumeFlags(resolved, { ...flags }, ckpt.meta.epoch);
    return { kind: "resume", resolved, notes };
  }
  // Without model, data or config flags: the embedded quick-start run (small ResEnc, MAE, synthetic
  // phantoms); run-control flags (--out, --epochs, --steps, --seed, …) still apply.
  const modelChoice = [
    flags.arch,
    flags.method,
    flags.data,
    flags.config,
    flags.patch,
    flags.batch,
    flags.lr,
  ];
  const configFile = flags.config ??
    (modelChoice.every((v) => v === undefined)
      ? new URL("../../configs/quickstart.json", import.meta.url).pathname
      : undefined);
  const input: RunConfigInput = configFile ? await readConfigFile(configFile) : {};
  const set = <K extends keyof RunConfigInput>(key: K, value: RunConfigInput[K] | undefined) => {
    if (value !== undefined) input[key] = value;
  };
  set("arch", flags.arch);
  set("method", flags.method);
  set("data", flags.data);
  set("stepsPerEpoch", flags.steps === undefined ? undefined : parseNumber(flags.steps, "--steps", true));
  set("epochs", flags.epochs === undefined ? undefined : parseNumber(flags.epochs, "--epochs", true));
  set("batch", flags.batch === undefined ? undefined : parseNumber(flags.batch, "--batch", true));
  set("patch", flags.patch === undefined ? undefined : parseVec3(flags.patch, "--patch"));
  set("lr", flags.lr === undefined ? undefined : parseNumber(flags.lr, "--lr"));
  set("precision", flags.precision as RunConfigInput["precision"]);
  set("workers", flags.workers === undefined ? undefined : parseNumber(flags.workers, "--workers", true));
  set(
    "sampleTimeoutSeconds",
    flags.sampleTimeout === undefined ? undefined : sampleTimeout(flags.sampleTimeout),
  );
  set("out", flags.out);
  set("seed", flags.seed === undefined ? undefined : parseNumber(flags.seed, "--seed", true));
  set("init", flags.init === undefined ? undefined : resolve(cwd, flags.init));
  if (flags.plugin?.length) input.plugins = [...new Set([...(input.plugins ?? []), ...flags.plugin])];
  const parsed = RunConfigSchema.safeParse(input);
  if (!parsed.success) throw new ConfigError(formatIssues(parsed.error, flags.config ?? "run configuration"));
  const config = parsed.data;
  config.plugins = config.plugins.map((p) => pluginPath(p, cwd));
  return { kind: "new", config, configFile: flags.config };
}

/** The sandbox plan of a request: plugin packages, data, run folder, and the config file until lock. */
async function planOf(
  request: RunRequest,
  dryRun: boolean,
  cwd: string,
): Promise<{ plan: SandboxPlan; out?: string }> {
  const config = request.kind === "new" ? request.config : request.resolved;
  const out = dryRun ? undefined : resolve(
    cwd,
    request.kind === "resume"
      ? request.resolved.out
      : config.out ?? defaultRunFolder(config.arch, config.method),
  );
  const data = await dataReadPlan(config.data, cwd);
  return {
    plan: {
      plugins: [...new Set(config.plugins.map((p) => pluginPackageRoot(p)))],
      // the --init weights are read like the data (a file the user named; read-only)
      data: config.init && request.kind === "new" ? [...data.read, resolve(cwd, config.init)] : data.read,
      out,
      env: data.env,
      startup: request.kind === "new" && request.configFile ? [resolve(cwd, request.configFile)] : [],
    },
    out,
  };
}

/** Adds `pretrain` to the program. */
export function registerPretrain(program: Command): void {
  program
    .command("pretrain")
    .description("pretrain an architecture with an SSL method (no arguments: the small embedded default)")
    .option("--arch <name>", "architecture plugin and size, e.g. resenc-l, resenc-tiny")
    .option("--method <name>", "SSL method plugin, e.g. mae")
    .option("--data <path>", 'dataset index (.json), preprocessed cache folder, or "synthetic"')
    .option("--steps <n>", "optimizer steps per epoch")
    .option("--epochs <n>", "epochs")
    .option("--batch <n>", "batch size")
    .option("--patch <size>", "patch size: 160 or 160,160,160")
    .option("--lr <rate>", "learning rate (overrides the method default)")
    .option(
      "--precision <mode>",
      "f32 or mixed (convolutions, matmuls and attention in f16 with f32 accumulation where the device has shader-f16; dynamic loss scaling)",
    )
    .option("--workers <n>", "data loader workers")
    .option(
      "--sample-timeout <seconds>",
      "stop the run when one sample takes longer (default 120; the config's sampleTimeoutSeconds; also with --resume)",
    )
    .option("--out <dir>", "run folder (default runs/<date>-<arch>-<method>)")
    .option("--resume <dir>", "continue the run in <dir> from its latest checkpoint")
    .option(
      "--init <file>",
      "initial network weights: a .pth (nnssl/OpenMind, state dict) or network.safetensors",
    )
    .option("--seed <n>", "random seed")
    .option("--plugin <path...>", "load third-party plugins (sandboxed: see docs/plugins.md)")
    .option("--config <file>", "JSON run configuration (unknown keys are errors); flags override it")
    .option("--dry-run", "print the resolved configuration and parameter count; train nothing")
    .addOption(logOption())
    .option("--overwrite", "replace the earlier run in --out (without it, --out onto a run is refused)")
    .option("--no-autotune", "use the reasoned conv/matmul tiles, not measured ones (also VOXSSL_AUTOTUNE=0)")
    .option(
      "--profile <n>",
      "after one warm-up step, profile n steps (GPU time, kernels, bytes, encode time, data wait, memory " +
        "timeline per op family), print the table, write profile.json and profile.svg into the run folder, stop",
    )
    .action(async (flags) => {
      const autotune = flags.autotune === false ? "off" : autotuneMode();
      const cwd = Deno.cwd();
      const profileSteps = flags.profile === undefined
        ? undefined
        : parseNumber(flags.profile, "--profile", true);
      if (profileSteps !== undefined && profileSteps < 1) {
        throw new ConfigError(`--profile: expected a number of steps >= 1, got "${flags.profile}"`);
      }
      const request = await describeRun(flags, cwd);
      const config = request.kind === "new" ? request.config : request.resolved;
      const plugins = config.plugins;
      const job = launchInfo();
      // before any worker starts or plugin loads: the run folder (rank 0 of a job owns it), the workers' memory
      if (request.kind === "new" && !flags.dryRun && config.out && (job?.rank ?? 0) === 0) {
        checkNewRunFolder(config.out, await inspectRunFolder(config.out), Boolean(flags.overwrite));
      }
      checkMemoryFits({
        batch: config.batch ?? 1,
        patch: config.patch ?? [1, 1, 1],
        inChannels: config.inChannels,
        workers: config.workers,
      });

      if (plugins.length > 0 && job && job.size > 1) {
        // the sandbox denies FFI (the MPI library) to the process that runs plugin code
        throw new ConfigError(
          `third-party plugins run sandboxed, and a sandboxed run cannot join an MPI job yet ` +
            `(launched as rank ${job.rank} of ${job.size}); run the plugin in a single process`,
        );
      }
      if (plugins.length > 0 && !isSandboxed()) {
        const { plan, out } = await planOf(request, Boolean(flags.dryRun), cwd);
        // the child must write where this process planned, whatever the clock says by then
        const args = request.kind === "new" && out && !flags.out ? [...Deno.args, "--out", out] : Deno.args;
        Deno.exit(await relaunchSandboxed(plan, args));
      }
      // watches for no progress, a dead parent and a second signal from outside this thread
      const watchdog: Watchdog | undefined = flags.dryRun
        ? undefined
        : await startWatchdog({ stallSeconds: (config.health ?? DEFAULT_HEALTH).stallTimeoutSeconds });
      if (isSandboxed()) {
        if (!flags.dryRun) {
          if (config.workers === 0) {
            console.log(
              "note: sandboxed runs make samples in workers (a stuck plugin can then be stopped): workers 1",
            );
            config.workers = 1;
          }
          await startLoaderWorkers(config.workers + (config.validationBatches > 0 ? 1 : 0));
        }
        await lockSandbox();
      }

      const registry = builtinRegistry();
      for (const spec of plugins) registry.add(await loadPlugin(spec, VERSION), pluginSpecifier(spec, cwd));
      let resolved: ResolvedRunConfig;
      if (request.kind === "resume") {
        resolved = request.resolved;
      } else {
        try {
          resolved = resolveRunConfig(
            request.config,
            registry.architecture(request.config.arch),
            registry.method(request.config.method),
          );
        } catch (error) {
          if ((error as Error).name === "PluginError") throw error;
          throw new ConfigError((error as Error).message);
        }
      }
      resolved.workers = config.workers;
      if (request.kind === "resume") { for (const note of request.notes) console.log(`note: ${note}`); }

      const arch = registry.architecture(
        resolved.resolvedArch.size
          ? `${resolved.resolvedArch.plugin}-${resolved.resolvedArch.size}`
          : resolved.resolvedArch.plugin,
      );
      const method = registry.method(resolved.resolvedMethod.plugin);
      checkPatchFitsArchitecture(resolved, arch.plugin);
      checkMemoryFits(resolved);
      if (flags.dryRun) {
        const needs = typeof method.network === "function"
          ? method.network(resolved.resolvedMethod.config)
          : method.network;
        const encoderOnly = "encoderOnly" in needs;
        const count = arch.plugin.countParameters?.(resolved.resolvedArch.config, {
          inChannels: resolved.inChannels,
          outChannels: "outChannels" in needs ? needs.outChannels : 1,
          patchSize: resolved.patch,
          encoderOnly,
        });
        console.log(JSON.stringify(resolved, null, 2));
        console.log(
          count === undefined
            ? `parameters: ${arch.plugin.name} cannot count without building the model`
            : `parameters (network${encoderOnly ? ", encoder only" : ""}): ${
              count.toLocaleString("en-US")
            } ` +
              `(${(count / 1e6).toFixed(2)}M)`,
        );
        return;
      }

      const dist = joinJob(); // one rank of `mpiexec -n N`, or a single process
      // the default folder is named by each rank's clock, which may tick over between ranks: rank 0's wins
      if (request.kind === "new" && !config.out) resolved.out = broadcastText(dist.mpi, resolved.out);
      if (dist.primary) { // rank 0 alone owns the run folder
        for (
          const name of await prepareRunFolder(resolved.out, {
            resume: request.kind === "resume",
            overwrite: flags.overwrite,
          })
        ) {
          console.log(
            `removed ${name} (${flags.overwrite ? "--overwrite" : "left by an interrupted write"})`,
          );
        }
      }
      const gpu = await initGpu();
      const parallel = dataParallelRun(dist, gpu, resolved);
      const sources = await openBatchSources(parallel.loaderConfig, method, {
        methodModule: pluginModule(registry, "ssl-method", method.name),
        log: (l) => console.log(l),
        isolation: loaderIsolation(),
        firstSample: parallel.firstSample,
        gpu,
      });
      const progress = runProgress(logMode(flags.log));
      const report = reportObserver({
        validation: sources.validation,
        coreVersion: VERSION,
        log: progress.log,
      });
      try {
        const summary = await runPretraining({
          config: resolved,
          arch: arch.plugin,
          method,
          train: sources.train,
          validation: sources.validation,
          coreVersion: VERSION,
          resume: request.kind === "resume",
          gpu,
          autotune,
          ...parallel.trainer,
          log: parallel.trainer.log ?? progress.log,
          observer: dist.primary ? combineObservers(progress.observer, report) : undefined,
          profile: profileSteps === undefined ? undefined : { steps: profileSteps },
        });
        progress.finish(); // the bar ends here, so that the report's path is the last line
        if (dist.primary) {
          const skipped = summary.skippedSteps
            ? ` (${summary.skippedSteps} steps skipped: gradients not finite)`
            : "";
          if (summary.stoppedBy) {
            console.log(`run saved in ${summary.out} (stopped by ${summary.stoppedBy})${skipped}`);
          } else console.log(`run finished: ${summary.out}${skipped}`);
          if (report.path) console.log(`report: ${resolve(report.path)}`);
        }
      } finally {
        progress.finish();
        await sources.train.close();
        await sources.validation?.close();
        closeLoaderWorkers();
        watchdog?.stop();
        dist.finalize();
      }
    });
}
