/**
 * `voxssl import <file.pth>` and `voxssl export <run>`: weights across to and from PyTorch (nnssl, the
 * OpenMind checkpoints, nnU-Net's pretrained-weights path). Only built-in architecture plugins take part
 * (no third-party code runs, so nothing needs the sandbox). docs/interop.md has the details.
 */
import type { Command } from "@commander-js/extra-typings";
import { dirname, join } from "node:path";
import {
  architectureFromNnsslPlan,
  type ExportFormat,
  exportWeights,
  importTorchCheckpoint,
  readVoxsslWeights,
  writeImportedNetwork,
} from "../../core/train/mod.ts";
import { Generator, initGpu, scope, type TokenOrder, type Vec3 } from "../../mod.ts";
import { readPth, toJson } from "../../core/nn/mod.ts";
import { builtinRegistry } from "../builtins.ts";
import { ConfigError } from "../errors.ts";

function parsePatch(text: string | undefined): Vec3 | undefined {
  if (text === undefined) return undefined;
  const parts = text.split(",").map(Number);
  const p = parts.length === 1 ? [parts[0], parts[0], parts[0]] : parts;
  if (p.length !== 3 || p.some((x) => !Number.isInteger(x) || x <= 0)) {
    throw new ConfigError(`--patch: expected 160 or 160,160,160; got "${text}"`);
  }
  return p as Vec3;
}

function parseJson(text: string | undefined, flag: string): Record<string, unknown> {
  if (text === undefined) return {};
  try {
    const v = JSON.parse(text);
    if (v && typeof v === "object" && !Array.isArray(v)) return v;
  } catch { /* reported below */ }
  throw new ConfigError(`${flag}: expected a JSON object, got ${text}`);
}

function parseOrder(text: string | undefined, flag: string, auto: boolean): TokenOrder | "auto" | undefined {
  if (text === undefined) return undefined;
  const allowed = auto ? ["auto", "primus", "evamae"] : ["primus", "evamae"];
  if (!allowed.includes(text)) {
    throw new ConfigError(`${flag}: expected ${allowed.join(", ")}; got "${text}"`);
  }
  return text as TokenOrder | "auto";
}

function positiveInt(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) {
    throw new ConfigError(`${flag}: expected a positive integer, got "${text}"`);
  }
  return n;
}

function resolveArchitecture(spec: string, archConfig: Record<string, unknown>) {
  const registry = builtinRegistry();
  const { plugin, size } = registry.architecture(spec);
  const input = { ...(size ? plugin.sizes?.[size] : {}), ...archConfig };
  const parsed = plugin.config.safeParse(input);
  if (!parsed.success) {
    throw new ConfigError(
      `--arch-config for ${spec}: ${parsed.error.issues.map((i) => i.message).join("; ")}`,
    );
  }
  return { plugin, config: parsed.data, name: `${plugin.name}@${plugin.version}` };
}

/** Adds `import` and `export` to the program. */
export function registerInterop(program: Command): void {
  program
    .command("import")
    .description("read a PyTorch checkpoint (nnssl/OpenMind .pth or a state dict) into a voxssl network")
    .argument("<file>", "the .pth file")
    .requiredOption("--out <dir>", "folder for network.safetensors (and adaptation_plan.json)")
    .option("--arch <name>", "architecture (default: from the checkpoint's nnssl adaptation plan)")
    .option("--arch-config <json>", "overrides of the architecture's config, e.g. '{\"features\":[4,8]}'")
    .option(
      "--patch <size>",
      "patch the network is built for (default: the plan's, or the position embedding's)",
    )
    .option("--in-channels <n>", "input channels (default: the plan's, else 1)")
    .option("--out-channels <n>", "decoder output channels (default: the input channels)")
    .option(
      "--pos-embed-order <order>",
      "stored position-embedding order: auto, primus or evamae (default auto)",
    )
    .action(async (file, flags) => {
      // the plan only (the tensors are read once, by importTorchCheckpoint)
      const root = (await readPth(file)).root;
      const plan = root instanceof Map ? root.get("nnssl_adaptation_plan") : undefined;
      const fromPlan = architectureFromNnsslPlan(
        plan === undefined || plan === null ? null : toJson(plan, `${file}: nnssl_adaptation_plan`),
      );
      const spec = flags.arch ?? fromPlan?.spec;
      if (!spec) {
        throw new ConfigError(
          `${file}: no nnssl adaptation plan names a voxssl architecture; give --arch (e.g. resenc-l, primus-m)`,
        );
      }
      const archConfig = {
        ...(flags.arch ? {} : fromPlan?.archConfig),
        ...parseJson(flags.archConfig, "--arch-config"),
      };
      const arch = resolveArchitecture(spec, archConfig);
      await initGpu();
      const imported = await importTorchCheckpoint({
        path: file,
        architecture: arch.plugin,
        config: arch.config,
        patch: parsePatch(flags.patch),
        inChannels: positiveInt(flags.inChannels, "--in-channels"),
        outChannels: positiveInt(flags.outChannels, "--out-channels"),
        positionEmbeddingOrder: parseOrder(flags.posEmbedOrder, "--pos-embed-order", true),
      });
      const written = await writeImportedNetwork(flags.out, imported, arch.name, file);
      const { mapping, checkpoint: meta, network } = imported;
      console.log(
        `${file}: ${
          meta.weightsKey
            ? `nnssl checkpoint (${meta.trainerName ?? "?"}, epoch ${meta.currentEpoch ?? "?"})`
            : "state dict"
        }` +
          ` → ${spec}${network.encoderOnly ? " (encoder only)" : ""}, ${
            network.parameterCount().toLocaleString("en-US")
          } parameters` +
          `${mapping.prefix ? `, prefix "${mapping.prefix}" stripped` : ""}` +
          `${
            mapping.positionEmbeddingOrder
              ? `, position embedding read in ${mapping.positionEmbeddingOrder} order`
              : ""
          }`,
      );
      if (mapping.skipped.length) {
        const shown = mapping.skipped.slice(0, 8).join(", ");
        console.log(
          `not part of the network (skipped): ${shown}${
            mapping.skipped.length > 8 ? `, … (${mapping.skipped.length})` : ""
          }`,
        );
      }
      console.log(
        `wrote ${written}${
          meta.adaptationPlan ? ` and ${join(dirname(written), "adaptation_plan.json")}` : ""
        }`,
      );
      console.log(
        Object.keys(archConfig).length
          ? `continue pretraining: voxssl pretrain --config run.json --init ${written}, with "arch": "${spec}", ` +
            `"archConfig": ${JSON.stringify(archConfig)} in run.json`
          : `continue pretraining: voxssl pretrain --arch ${spec} --init ${written} …`,
      );
      network.dispose();
    });

  program
    .command("export")
    .description("write a voxssl network as a .pth for nnssl / nnU-Net, or as safetensors")
    .argument("<source>", "a run folder, a voxssl checkpoint, or a network.safetensors")
    .requiredOption("--out <file>", "the file to write (e.g. checkpoint_final.pth)")
    .option("--format <format>", "nnssl (= pth) or safetensors", "nnssl")
    .option("--pos-embed-order <order>", "position-embedding order to write: primus (default) or evamae")
    .action(async (source, flags) => {
      const format = flags.format as ExportFormat;
      if (!["nnssl", "pth", "safetensors"].includes(format)) {
        throw new ConfigError(`--format: expected nnssl, pth or safetensors; got "${flags.format}"`);
      }
      await initGpu();
      const registry = builtinRegistry();
      const weights = await readVoxsslWeights(source, (name, config, shape) => {
        const { plugin } = registry.architecture(name);
        // the decoder's width is the method's (MAE: the input channels; VolumeFusion: its classes)
        let outChannels = shape.inChannels;
        if (shape.method) {
          const method = registry.method(shape.method.plugin);
          const needs = typeof method.network === "function"
            ? method.network(shape.method.config)
            : method.network;
          if ("outChannels" in needs) outChannels = needs.outChannels;
        }
        return scope(() =>
          plugin.create({
            config,
            inChannels: shape.inChannels,
            outChannels,
            patchSize: shape.patch,
            encoderOnly: shape.encoderOnly,
            rng: new Generator(0),
          })
        );
      });
      const files = await exportWeights(flags.out, format, {
        tensors: weights.tensors,
        adaptationPlan: weights.meta.adaptationPlan,
        plugins: weights.meta.plugins,
        architecture: weights.architecture,
        epoch: weights.epoch,
        nnsslPlan: weights.meta.importedFrom?.nnsslAdaptationPlan,
        positionEmbeddingOrder: parseOrder(flags.posEmbedOrder, "--pos-embed-order", false) as
          | TokenOrder
          | undefined,
        grid: weights.grid,
      });
      console.log(`wrote ${files.join(" and ")} (${Object.keys(weights.tensors).length} tensors)`);
    });
}
