/**
 * Weight interop with nnssl and nnU-Net: PyTorch checkpoints in (an OpenMind `.pth` → a voxssl network in
 * the reference's state-dict form, `network.safetensors` like a pretraining run writes), voxssl weights out
 * (`.pth` with `network_weights` and `nnssl_adaptation_plan`, the way nnssl saves and nnU-Net's
 * PretrainedTrainer loads with `torch.load(weights_only=True)`, plus `adaptation_plan.json`; or
 * safetensors). The facts followed are in ../shared/docs/methods.md §11–§12 and docs/interop.md.
 */
import { dirname, join } from "node:path";
import {
  decodeSafetensors,
  encodePth,
  encodeSafetensors,
  type HostTensor,
  type Json,
  type PickleValue,
  PthError,
  PyOrderedDict,
  readPth,
  readTorchCheckpoint,
  type TorchCheckpoint,
  writeFileAtomic,
} from "../nn/mod.ts";
import {
  type AdaptationPlan,
  type ArchitecturePlugin,
  loadReferenceStateDict,
  mapTorchStateDict,
  type Network,
  permuteTokens,
  referenceStateDict,
  tokenGrid,
  type TokenOrder,
  type TorchImport,
  type Vec3,
} from "../plugin/mod.ts";
import { Generator, scope } from "../tensor/mod.ts";
import { loadCheckpoint } from "./checkpoint.ts";

/** An architecture as `--arch` names it plus config overrides. */
export interface ArchitectureChoice {
  /** `--arch` spec, e.g. "resenc-l", "primus-m", "resenc". */
  spec: string;
  /** Overrides of the plugin's config. */
  archConfig: Record<string, unknown>;
}

const PRIMUS_PRESETS: Record<string, string> = {
  PrimusS: "primus-s",
  PrimusB: "primus-b",
  PrimusM: "primus-m",
  PrimusL: "primus-l",
};

const asObject = (x: Json | undefined): Record<string, Json> | null =>
  x && typeof x === "object" && !Array.isArray(x) ? x as Record<string, Json> : null;

/**
 * The voxssl architecture an nnssl adaptation plan describes (`architecture_plans.arch_class_name`,
 * and for `ResidualEncoderUNet` its isotropic `arch_kwargs`), or null when voxssl has no such architecture.
 */
export function architectureFromNnsslPlan(plan: Json | null): ArchitectureChoice | null {
  const arch = asObject(asObject(plan)?.architecture_plans);
  const name = arch?.arch_class_name;
  if (name === "ResEncL") return { spec: "resenc-l", archConfig: {} };
  if (typeof name === "string" && PRIMUS_PRESETS[name]) return { spec: PRIMUS_PRESETS[name], archConfig: {} };
  const kw = asObject(arch?.arch_kwargs);
  if (name === "ResidualEncoderUNet" && kw) {
    const iso = (v: Json) => (Array.isArray(v) && v.every((x) => x === v[0]) ? v[0] : v);
    const strides = (kw.strides as Json[]).map(iso);
    const kernels = (kw.kernel_sizes as Json[]).map(iso);
    const decoderConvs = kw.n_conv_per_stage_decoder;
    const convs = Array.isArray(decoderConvs) ? decoderConvs : [decoderConvs];
    if (
      [...strides, ...kernels].some((x) => typeof x !== "number") || kernels.some((k) => k !== kernels[0]) ||
      convs.some((c) => c !== convs[0])
    ) return null;
    return {
      spec: "resenc",
      archConfig: {
        features: kw.features_per_stage,
        blocksPerStage: kw.n_blocks_per_stage,
        strides,
        kernel: kernels[0],
        convsPerDecoderStage: convs[0],
      },
    };
  }
  return null;
}

/** What {@link importTorchCheckpoint} needs. */
export interface TorchImportRequest {
  /** The `.pth` file. */
  path: string;
  /** The architecture plugin and its resolved config. */
  architecture: ArchitecturePlugin;
  /** The resolved config of the plugin. */
  config: unknown;
  /** Input channels (default: the plan's, else 1). */
  inChannels?: number;
  /** Output channels of the decoder head (default: the input channels, as MAE reconstructs the input). */
  outChannels?: number;
  /** Patch the network is built for (sizes a ViT's position embedding; default: from the plan or the file). */
  patch?: Vec3;
  /** The stored position embedding's token order (default "auto"). */
  positionEmbeddingOrder?: TokenOrder | "auto";
}

/** A checkpoint loaded into a voxssl network. */
export interface ImportedNetwork {
  /** The network, holding the checkpoint's weights. */
  network: Network;
  /** The checkpoint's metadata (weights dropped). */
  checkpoint: Omit<TorchCheckpoint, "weights">;
  /** How the keys mapped. */
  mapping: Omit<TorchImport, "tensors">;
  /** The patch the network was built for. */
  patch: Vec3;
}

function planPatch(plan: Json | null): Vec3 | undefined {
  const p = asObject(plan);
  const direct = p?.pretrain_patch_size;
  const configs = asObject(asObject(p?.pretrain_plan)?.configurations);
  const first = configs ? asObject(Object.values(configs)[0]) : null;
  const patch = direct ?? first?.patch_size;
  return Array.isArray(patch) && patch.length === 3 && patch.every((x) => typeof x === "number" && x > 0)
    ? patch as Vec3
    : undefined;
}

function patchFromPositionEmbedding(ckpt: TorchCheckpoint): Vec3 | undefined {
  let tokens: number | undefined, kernel: number[] | undefined;
  for (const [k, t] of ckpt.weights) {
    if (k.endsWith("pos_embed") && t.shape.length === 3) tokens = t.shape[1];
    if (k.endsWith("down_projection.proj.weight") && t.shape.length === 5) kernel = t.shape.slice(2);
  }
  if (tokens === undefined || !kernel) return undefined;
  const side = Math.round(Math.cbrt(tokens));
  return side ** 3 === tokens ? kernel.map((k) => k * side) as Vec3 : undefined;
}

/**
 * Reads a PyTorch checkpoint (plain state dict or nnssl's dict) into a new network of `architecture`:
 * the full network when the file has its decoder, else the encoder alone. Errors name the file and key.
 */
export async function importTorchCheckpoint(request: TorchImportRequest): Promise<ImportedNetwork> {
  const { path, architecture } = request;
  const checkpoint = readTorchCheckpoint(await readPth(path));
  const planChannels = asObject(checkpoint.adaptationPlan)?.pretrain_num_input_channels;
  const inChannels = request.inChannels ?? (typeof planChannels === "number" ? planChannels : 1);
  const patch = request.patch ?? planPatch(checkpoint.adaptationPlan) ??
    patchFromPositionEmbedding(checkpoint) ??
    (architecture.family === "vit"
      ? (() => {
        throw new PthError(
          `${path}: cannot tell the patch the position embedding was made for; give --patch`,
        );
      })()
      : [160, 160, 160] as Vec3);
  const build = (encoderOnly: boolean) =>
    scope(() =>
      architecture.create({
        config: request.config,
        inChannels,
        outChannels: request.outChannels ?? inChannels,
        patchSize: patch,
        encoderOnly,
        rng: new Generator(0),
      })
    );
  const options = { positionEmbeddingOrder: request.positionEmbeddingOrder };
  let network = build(false);
  let mapped: TorchImport;
  try {
    mapped = mapTorchStateDict(checkpoint, network, path, options);
  } catch (error) {
    // no decoder in the file (contrastive pretraining): the encoder alone, if that is all that is missing
    network.dispose();
    network = build(true);
    try {
      mapped = mapTorchStateDict(checkpoint, network, path, options);
    } catch {
      network.dispose();
      throw error;
    }
  }
  loadReferenceStateDict(network, mapped.tensors, path);
  const { weights: _, ...meta } = checkpoint;
  const { tensors: __, ...mapping } = mapped;
  return { network, checkpoint: meta, mapping, patch };
}

/** Metadata voxssl writes into `network.safetensors` (also by pretraining). */
export interface NetworkFileMeta {
  /** `name@version` of the architecture (and the method, when trained by voxssl). */
  plugins: { architecture: string; method?: string };
  /** voxssl's adaptation plan. */
  adaptationPlan: AdaptationPlan;
  /** Where an imported network came from. */
  importedFrom?: {
    file: string;
    trainerName: string | null;
    currentEpoch: number | null;
    nnsslAdaptationPlan: Json | null;
  };
}

/** Writes an imported network as `<out>/network.safetensors` and nnssl's plan as `<out>/adaptation_plan.json`. */
export async function writeImportedNetwork(
  out: string,
  imported: ImportedNetwork,
  architecture: string,
  path: string,
): Promise<string> {
  await Deno.mkdir(out, { recursive: true });
  const meta: NetworkFileMeta = {
    plugins: { architecture },
    adaptationPlan: imported.network.adaptationPlan(),
    importedFrom: {
      file: path,
      trainerName: imported.checkpoint.trainerName,
      currentEpoch: imported.checkpoint.currentEpoch,
      nnsslAdaptationPlan: imported.checkpoint.adaptationPlan,
    },
  };
  const file = join(out, "network.safetensors");
  await writeFileAtomic(
    file,
    encodeSafetensors(await referenceStateDict(imported.network), {
      format: "pt",
      voxssl: JSON.stringify(meta),
    }),
  );
  if (imported.checkpoint.adaptationPlan) {
    await writeFileAtomic(
      join(out, "adaptation_plan.json"),
      JSON.stringify(imported.checkpoint.adaptationPlan, null, 2) + "\n",
    );
  }
  return file;
}

/**
 * Loads initial weights into `network` (pretraining's `--init`): a `.pth` (mapped as on import), or a
 * safetensors file in the reference form (`network.safetensors`) or a voxssl checkpoint (`network.*`).
 */
export async function loadInitialWeights(
  network: Network,
  path: string,
  options: { positionEmbeddingOrder?: TokenOrder | "auto" } = {},
): Promise<{ skipped: string[] }> {
  if (/\.(pth|pt)$/i.test(path)) {
    const checkpoint = readTorchCheckpoint(await readPth(path));
    const mapped = mapTorchStateDict(checkpoint, network, path, options);
    loadReferenceStateDict(network, mapped.tensors, path);
    return { skipped: mapped.skipped };
  }
  const { tensors, metadata } = decodeSafetensors(await Deno.readFile(path), path);
  const isCheckpoint = metadata.voxssl && JSON.parse(metadata.voxssl).format !== undefined;
  const own: Record<string, HostTensor> = {};
  const names = new Set<string>();
  for (const [n] of network.namedParameters()) {
    names.add(n);
    for (const a of network.referenceAliases?.(n) ?? []) names.add(a);
  }
  for (const n of Object.keys(network.referenceBuffers?.() ?? {})) names.add(n);
  const skipped: string[] = [];
  for (const [k, t] of Object.entries(tensors)) {
    const name = isCheckpoint ? (k.startsWith("network.") ? k.slice(8) : undefined) : k;
    if (name !== undefined && names.has(name)) own[name] = t;
    else skipped.push(k);
  }
  loadReferenceStateDict(network, own, path);
  return { skipped };
}

/** Output formats of {@link exportWeights}. */
export type ExportFormat = "nnssl" | "pth" | "safetensors";

/** What {@link exportWeights} writes. */
export interface ExportRequest {
  /** The network's weights in reference form (aliases included). */
  tensors: Record<string, HostTensor>;
  /** voxssl's adaptation plan of the network. */
  adaptationPlan: AdaptationPlan;
  /** `name@version` of the plugins. */
  plugins: { architecture: string; method?: string };
  /** The architecture plugin's name and resolved config (for nnssl's `architecture_plans`). */
  architecture: { plugin: string; config: unknown };
  /** Epochs of pretraining (nnssl's `current_epoch`). */
  epoch: number;
  /** An nnssl plan the network was imported with (its pretrain_plan is kept). */
  nnsslPlan?: Json | null;
  /** The position embedding's row order to write (default "primus", voxssl's). */
  positionEmbeddingOrder?: TokenOrder;
  /** The token grid (needed for "evamae"). */
  grid?: [number, number, number];
}

const RESENC_L = {
  features: [32, 64, 128, 256, 320, 320],
  blocksPerStage: [1, 3, 4, 6, 6, 6],
  strides: [1, 2, 2, 2, 2, 2],
  kernel: 3,
  convsPerDecoderStage: 1,
};
const PRIMUS = {
  PrimusS: [396, 12, 6],
  PrimusB: [792, 12, 12],
  PrimusM: [864, 16, 12],
  PrimusL: [1056, 24, 16],
} as const;

/** nnssl's `architecture_plans` for a voxssl architecture. */
export function nnsslArchitecturePlans(arch: { plugin: string; config: unknown }): Json {
  const c = (arch.config ?? {}) as Record<string, unknown>;
  if (arch.plugin === "resenc") {
    const same = (Object.keys(RESENC_L) as (keyof typeof RESENC_L)[]).every((k) =>
      JSON.stringify(c[k]) === JSON.stringify(RESENC_L[k])
    );
    if (same) return { arch_class_name: "ResEncL", arch_kwargs: null, arch_kwargs_requiring_import: null };
    const n = (c.features as number[]).length;
    const k = c.kernel as number;
    return {
      arch_class_name: "ResidualEncoderUNet",
      arch_kwargs: {
        n_stages: n,
        features_per_stage: c.features as number[],
        conv_op: "torch.nn.modules.conv.Conv3d",
        kernel_sizes: Array.from({ length: n }, () => [k, k, k]),
        strides: (c.strides as number[]).map((s) => [s, s, s]),
        n_blocks_per_stage: c.blocksPerStage as number[],
        n_conv_per_stage_decoder: Array.from({ length: n - 1 }, () => c.convsPerDecoderStage as number),
        conv_bias: true,
        norm_op: "torch.nn.modules.instancenorm.InstanceNorm3d",
        norm_op_kwargs: { eps: 1e-5, affine: true },
        dropout_op: null,
        dropout_op_kwargs: null,
        nonlin: "torch.nn.modules.activation.LeakyReLU",
        nonlin_kwargs: { inplace: true },
      },
      arch_kwargs_requiring_import: ["conv_op", "norm_op", "dropout_op", "nonlin"],
    };
  }
  if (arch.plugin === "primus") {
    for (const [name, [d, depth, heads]] of Object.entries(PRIMUS)) {
      if (c.embedDim === d && c.depth === depth && c.heads === heads && c.patchEmbedSize === 8) {
        return { arch_class_name: name, arch_kwargs: null, arch_kwargs_requiring_import: null };
      }
    }
    throw new PthError(
      `Primus with embedDim ${c.embedDim}, depth ${c.depth}, heads ${c.heads}, patch embedding ` +
        `${
          JSON.stringify(c.patchEmbedSize)
        } is no nnssl preset (PrimusS/B/M/L); nnU-Net cannot build it from ` +
        `the plan (export --format safetensors, or pass the architecture to nnU-Net yourself)`,
    );
  }
  throw new PthError(`architecture plugin "${arch.plugin}" has no nnssl counterpart`);
}

/** nnssl's adaptation plan (methods.md §11) for a voxssl network. */
export function nnsslAdaptationPlan(request: ExportRequest): Json {
  const p = request.adaptationPlan;
  const kept = asObject(asObject(request.nnsslPlan ?? null)?.pretrain_plan);
  const pretrainPlan: Json = kept ?? {
    dataset_name: "voxssl",
    plans_name: "voxsslPlans",
    original_median_spacing_after_transp: [1, 1, 1],
    image_reader_writer: "SimpleITKIO",
    transpose_forward: [0, 1, 2],
    transpose_backward: [0, 1, 2],
    experiment_planner_used: "voxssl preprocess",
    configurations: {
      onemmiso: {
        data_identifier: "voxssl_onemmiso",
        preprocessor_name: "DefaultPreprocessor",
        spacing_style: "onemmiso",
        normalization_schemes: Array.from({ length: p.inChannels }, () => "ZScoreNormalization"),
        use_mask_for_norm: Array.from({ length: p.inChannels }, () => false),
        resampling_fn_data: "resample_data_or_seg_to_shape",
        resampling_fn_data_kwargs: { is_seg: false, order: 3, order_z: 0, force_separate_z: null },
        resampling_fn_mask: "resample_data_or_seg_to_shape",
        resampling_fn_mask_kwargs: { is_seg: false, order: 1, order_z: 0, force_separate_z: null },
        spacing: [1, 1, 1],
        patch_size: [...p.patchSize],
      },
    },
  };
  return {
    architecture_plans: nnsslArchitecturePlans(request.architecture),
    pretrain_plan: pretrainPlan,
    pretrain_num_input_channels: p.inChannels,
    recommended_downstream_patchsize: [...p.recommendedDownstreamPatchSize],
    key_to_encoder: p.encoderKeys[0],
    key_to_stem: p.stemKeys[0],
    keys_to_in_proj: [...p.inputProjectionKeys],
    key_to_lpe: p.positionEmbeddingKeys[0] ?? null,
  };
}

/**
 * Writes the weights: "nnssl"/"pth" → `<out>` as torch.save would (`network_weights`,
 * `nnssl_adaptation_plan`, `trainer_name`, `current_epoch`) plus `adaptation_plan.json` beside it;
 * "safetensors" → `<out>` in the reference form with voxssl's metadata. Returns the files written.
 */
export async function exportWeights(
  out: string,
  format: ExportFormat,
  request: ExportRequest,
): Promise<string[]> {
  await Deno.mkdir(dirname(out), { recursive: true });
  let tensors = request.tensors;
  if (request.positionEmbeddingOrder === "evamae" && request.adaptationPlan.positionEmbeddingKeys.length) {
    if (!request.grid) throw new Error("exporting in EvaMAE's token order needs the token grid");
    tensors = { ...tensors };
    for (const key of request.adaptationPlan.positionEmbeddingKeys) {
      tensors[key] = permuteTokens(tensors[key], request.grid, "primus→evamae");
    }
  }
  if (format === "safetensors") {
    await writeFileAtomic(
      out,
      encodeSafetensors(tensors, {
        format: "pt",
        voxssl: JSON.stringify({ plugins: request.plugins, adaptationPlan: request.adaptationPlan }),
      }),
    );
    return [out];
  }
  const plan = nnsslAdaptationPlan(request);
  const checkpoint: Record<string, PickleValue> = {
    network_weights: new PyOrderedDict(Object.entries(tensors)),
    current_epoch: request.epoch,
    trainer_name: `voxssl:${request.plugins.method ?? "import"}`,
    nnssl_adaptation_plan: plan as PickleValue,
  };
  await writeFileAtomic(out, encodePth(checkpoint));
  const planFile = join(dirname(out), "adaptation_plan.json");
  await writeFileAtomic(planFile, JSON.stringify(plan, null, 2) + "\n");
  return [out, planFile];
}

/** Reads a voxssl run's network (its `network.safetensors`, else the latest checkpoint) in reference form. */
export async function readVoxsslWeights(
  path: string,
  build: (
    arch: string,
    config: unknown,
    shape: {
      inChannels: number;
      patch: Vec3;
      encoderOnly: boolean;
      method?: { plugin: string; config: unknown };
    },
  ) => Network,
): Promise<
  {
    tensors: Record<string, HostTensor>;
    meta: NetworkFileMeta;
    architecture: { plugin: string; config: unknown };
    epoch: number;
    grid?: [number, number, number];
  }
> {
  let file = path;
  const stat = await Deno.stat(path);
  if (stat.isDirectory) {
    const net = join(path, "network.safetensors");
    file = await Deno.stat(net).then(() => net, () => join(path, "checkpoints", "latest.safetensors"));
  }
  const { tensors, metadata } = decodeSafetensors(await Deno.readFile(file), file);
  if (!metadata.voxssl) throw new PthError(`${file}: no voxssl metadata (not written by voxssl)`);
  const meta = JSON.parse(metadata.voxssl);
  if (meta.format === undefined) {
    const m = meta as NetworkFileMeta;
    const architecture = m.adaptationPlan.architecture;
    const needsGrid = m.adaptationPlan.positionEmbeddingKeys.length > 0;
    let grid: [number, number, number] | undefined;
    if (needsGrid) {
      const net = build(
        architecture.plugin,
        architecture.config,
        { inChannels: m.adaptationPlan.inChannels, patch: m.adaptationPlan.patchSize, encoderOnly: true },
      );
      grid = tokenGrid(net);
      net.dispose();
    }
    const epoch = m.importedFrom?.currentEpoch ?? 0;
    return { tensors, meta: m, architecture, epoch, grid };
  }
  // a voxssl checkpoint: the network's own names under "network."; the aliases come from the network
  const ckpt = await loadCheckpoint(file);
  const c = ckpt.meta.config;
  const arch = c.resolvedArch;
  const own: Record<string, HostTensor> = {};
  for (const [k, t] of Object.entries(ckpt.weights)) if (k.startsWith("network.")) own[k.slice(8)] = t;
  const shape = { inChannels: c.inChannels, patch: c.patch, encoderOnly: false, method: c.resolvedMethod };
  let net = build(arch.plugin, arch.config, shape);
  if ([...net.namedParameters()].some(([n]) => !(n in own))) {
    net.dispose(); // an encoder-only run (contrastive methods)
    net = build(arch.plugin, arch.config, { ...shape, encoderOnly: true });
  }
  try {
    const names = new Set([...net.namedParameters()].map(([n]) => n));
    for (const k of Object.keys(own)) if (!names.has(k)) delete own[k];
    loadReferenceStateDict(net, own, file);
    const planOf = net.adaptationPlan();
    return {
      tensors: await referenceStateDict(net),
      meta: { plugins: ckpt.meta.plugins, adaptationPlan: planOf },
      architecture: { plugin: arch.plugin, config: arch.config },
      epoch: ckpt.meta.epoch,
      grid: planOf.positionEmbeddingKeys.length ? tokenGrid(net) : undefined,
    };
  } finally {
    net.dispose();
  }
}
