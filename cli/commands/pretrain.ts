/**
 * `voxssl pretrain`: resolves the run configuration (method defaults ← --config FILE ← flags), loads
 * plugins (third-party ones under narrowed permissions), opens the data, and runs the Trainer. With no
 * arguments it is the embedded default: a small ResEnc pretrained with MAE on synthetic brain-like
 * volumes, finishing in minutes even on a CPU adapter.
 */
import type { Command } from "@commander-js/extra-typings";
import { join, resolve } from "node:path";
import {
  formatIssues,
  initGpu,
  loadCheckpoint,
  loadPlugin,
  openBatchSources,
  pluginSpecifier,
  type ResolvedRunConfig,
  resolveRunConfig,
  type RunConfigInput,
  RunConfigSchema,
  runPretraining,
  VERSION,
} from "../../mod.ts";
import { builtinRegistry, pluginModule } from "../builtins.ts";
import { ConfigError } from "../errors.ts";
import { isSandboxed, planSandbox, relaunchSandboxed } from "../sandbox.ts";

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
    .option("--out <dir>", "run folder (default runs/<date>-<arch>-<method>)")
    .option("--resume <dir>", "continue the run in <dir> from its latest checkpoint")
    .option("--seed <n>", "random seed")
    .option("--plugin <path-or-url...>", "load third-party plugins (run with narrowed permissions)")
    .option("--config <file>", "JSON run configuration (unknown keys are errors); flags override it")
    .option("--dry-run", "print the resolved configuration and parameter count; train nothing")
    .action(async (flags) => {
      const cwd = Deno.cwd();
      // Without model, data or config flags: the embedded quick-start run (small ResEnc, MAE,
      // synthetic phantoms); run-control flags (--out, --epochs, --steps, --seed, …) still apply.
      const modelChoice = [
        flags.arch,
        flags.method,
        flags.data,
        flags.config,
        flags.resume,
        flags.patch,
        flags.batch,
        flags.lr,
      ];
      if (modelChoice.every((v) => v === undefined)) {
        flags.config = new URL("../../configs/quickstart.json", import.meta.url).pathname;
      }
      let resolved: ResolvedRunConfig;
      let plugins = flags.plugin ?? [];
      const registry = builtinRegistry();

      if (flags.resume) {
        const path = join(flags.resume, "checkpoints", "latest.safetensors");
        const ckpt = await loadCheckpoint(path).catch((error: Error) => {
          throw new ConfigError(`--resume ${flags.resume}: ${error.message}`);
        });
        resolved = { ...ckpt.meta.config, out: flags.resume };
        plugins = [...new Set([...resolved.plugins, ...plugins])];
      } else {
        const input: RunConfigInput = flags.config ? await readConfigFile(flags.config) : {};
        const set = <K extends keyof RunConfigInput>(key: K, value: RunConfigInput[K] | undefined) => {
          if (value !== undefined) input[key] = value;
        };
        set("arch", flags.arch);
        set("method", flags.method);
        set("data", flags.data);
        set(
          "stepsPerEpoch",
          flags.steps === undefined ? undefined : parseNumber(flags.steps, "--steps", true),
        );
        set("epochs", flags.epochs === undefined ? undefined : parseNumber(flags.epochs, "--epochs", true));
        set("batch", flags.batch === undefined ? undefined : parseNumber(flags.batch, "--batch", true));
        set("patch", flags.patch === undefined ? undefined : parseVec3(flags.patch, "--patch"));
        set("lr", flags.lr === undefined ? undefined : parseNumber(flags.lr, "--lr"));
        set("precision", flags.precision as RunConfigInput["precision"]);
        set(
          "workers",
          flags.workers === undefined ? undefined : parseNumber(flags.workers, "--workers", true),
        );
        set("out", flags.out);
        set("seed", flags.seed === undefined ? undefined : parseNumber(flags.seed, "--seed", true));
        if (plugins.length > 0) input.plugins = [...new Set([...(input.plugins ?? []), ...plugins])];
        const parsed = RunConfigSchema.safeParse(input);
        if (!parsed.success) {
          throw new ConfigError(formatIssues(parsed.error, flags.config ?? "run configuration"));
        }
        plugins = parsed.data.plugins.map((p) => (/^[a-z]+:/.test(p) ? p : resolve(cwd, p)));
        for (const spec of plugins) registry.add(await loadPlugin(spec, VERSION), pluginSpecifier(spec, cwd));
        try {
          resolved = resolveRunConfig(
            { ...parsed.data, plugins },
            registry.architecture(parsed.data.arch),
            registry.method(parsed.data.method),
          );
        } catch (error) {
          if ((error as Error).name === "PluginError") throw error;
          throw new ConfigError((error as Error).message);
        }
      }

      if (plugins.length > 0 && !isSandboxed() && !flags.dryRun) {
        const data = resolved.data === "synthetic" ? [] : [resolved.data];
        const plan = planSandbox({ plugins, data, out: resolved.out, cwd, configFile: flags.config });
        Deno.exit(await relaunchSandboxed(plan, Deno.args));
      }
      if (flags.resume) {
        for (const spec of plugins) registry.add(await loadPlugin(spec, VERSION), pluginSpecifier(spec, cwd));
      }

      const arch = registry.architecture(
        resolved.resolvedArch.size
          ? `${resolved.resolvedArch.plugin}-${resolved.resolvedArch.size}`
          : resolved.resolvedArch.plugin,
      );
      const method = registry.method(resolved.resolvedMethod.plugin);
      if (flags.dryRun) {
        const count = arch.plugin.countParameters?.(
          resolved.resolvedArch.config,
          resolved.inChannels,
          method.outChannels,
          resolved.patch,
        );
        console.log(JSON.stringify(resolved, null, 2));
        console.log(
          count === undefined
            ? `parameters: ${arch.plugin.name} cannot count without building the model`
            : `parameters (network): ${count.toLocaleString("en-US")} (${(count / 1e6).toFixed(2)}M)`,
        );
        return;
      }

      const gpu = await initGpu();
      const sources = await openBatchSources(resolved, method, {
        methodModule: pluginModule(registry, "ssl-method", method.name),
        log: (l) => console.log(l),
      });
      try {
        const summary = await runPretraining({
          config: resolved,
          arch: arch.plugin,
          method,
          train: sources.train,
          validation: sources.validation,
          coreVersion: VERSION,
          resume: Boolean(flags.resume),
          gpu,
        });
        if (summary.stoppedBy) console.log(`run saved in ${summary.out} (stopped by ${summary.stoppedBy})`);
        else console.log(`run finished: ${summary.out}`);
      } finally {
        await sources.train.close();
        await sources.validation?.close();
      }
    });
}
