/**
 * Loading a pretrained encoder into a downstream network through the checkpoint's adaptation plan, as
 * nnU-Net's `PretrainedTrainer.load_pretrained_weights` does it (methods.md §12):
 *
 * - only the parameters under the plan's encoder and stem prefixes are loaded, strictly (every target
 *   parameter under them must be in the checkpoint, nothing extra may be there); the decoder keeps its
 *   fresh initialisation;
 * - an input projection pretrained on one channel and used with C: its weight is repeated C times along
 *   the input-channel axis and divided by C (the bias is copied);
 * - a position embedding made for another patch: the [1, N, D] table is reshaped to the pretraining
 *   token grid, resized trilinearly (align_corners = false) to the downstream grid and flattened.
 *
 * Token order: voxssl flattens a ViT's token grid row-major over (D, H, W) everywhere, in pretraining and
 * downstream alike, so a voxssl checkpoint's `eva.pos_embed` is reshaped row-major and needs no
 * permutation. nnssl's EvaMAE pretraining learns its table in an axis-2/3-transposed order
 * (methods.md §15.2) that nnssl's downstream loader does not undo; a table imported from an nnssl `.pth`
 * keeps whatever order the importer gave it, and this module does not permute it.
 *
 * Everything here is host arithmetic in float64 on the checkpoint's f32 values.
 *
 * @module
 */
import { decodeSafetensors, type HostTensor } from "../nn/mod.ts";
import type { AdaptationPlan, Network, Vec3 } from "../plugin/mod.ts";
import { CHECKPOINT_FORMAT, type CheckpointMeta } from "../train/mod.ts";

/** The pretrained side: its adaptation plan and its network weights under the network's own names. */
export interface PretrainedWeights {
  /** The plan the checkpoint recorded (`network.adaptationPlan()` at pretraining). */
  plan: AdaptationPlan;
  /** Network parameters by their names in the network (no `network.` prefix). */
  weights: Record<string, HostTensor>;
  /** The file, for error messages. */
  source: string;
}

/**
 * Reads a pretraining checkpoint (`checkpoints/*.safetensors`, format v2: weights under `network.`, the
 * plan in the metadata) or a network export (`network.safetensors`: reference names, the plan in its
 * `voxssl` metadata).
 */
export async function readPretrainedWeights(path: string): Promise<PretrainedWeights> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (error) {
    throw new Error(`pretrained checkpoint ${path}: cannot read it (${(error as Error).message})`);
  }
  const { tensors, metadata } = decodeSafetensors(bytes, path);
  if (!metadata.voxssl) {
    throw new Error(
      `${path}: no "voxssl" metadata, so no adaptation plan (not a voxssl checkpoint or export)`,
    );
  }
  const meta = JSON.parse(metadata.voxssl) as Partial<CheckpointMeta>;
  if (!meta.adaptationPlan) throw new Error(`${path}: the "voxssl" metadata holds no adaptationPlan`);
  const weights: Record<string, HostTensor> = {};
  if (meta.format !== undefined) {
    if (meta.format !== CHECKPOINT_FORMAT) {
      throw new Error(`${path}: checkpoint format ${meta.format}, this voxssl reads ${CHECKPOINT_FORMAT}`);
    }
    for (const [name, t] of Object.entries(tensors)) {
      if (name.startsWith("network.")) weights[name.slice("network.".length)] = t;
    }
  } else {
    Object.assign(weights, tensors);
  }
  return { plan: meta.adaptationPlan, weights, source: path };
}

const under = (name: string, prefixes: readonly string[]) =>
  prefixes.some((p) => name === p || name.startsWith(p + "."));

/**
 * Repeats an input projection's weight [O, 1, ...k] C times along axis 1 and divides it by C
 * ([O, C, ...k]), as nnU-Net does for more input channels than pretrained.
 */
export function repeatInputChannels(weight: HostTensor, channels: number): HostTensor {
  const [out, cin, ...kernel] = weight.shape;
  if (cin !== 1) {
    throw new RangeError(`repeatInputChannels(): weight [${weight.shape}] has ${cin} input channels, not 1`);
  }
  const k = kernel.reduce((a, b) => a * b, 1);
  const data = new Float32Array(out * channels * k);
  for (let o = 0; o < out; o++) {
    for (let c = 0; c < channels; c++) {
      for (let i = 0; i < k; i++) data[(o * channels + c) * k + i] = weight.data[o * k + i] / channels;
    }
  }
  return { dtype: "F32", shape: [out, channels, ...kernel], data };
}

/**
 * Resizes a position embedding [1, N, D] from token grid `from` to `to` (N = ∏from): the rows form a
 * [D, d, h, w] volume (row-major grid), resampled trilinearly with align_corners = false (PyTorch's
 * `F.interpolate(mode="trilinear")`: source coordinate (i + ½)·in/out − ½, clamped at 0, upper neighbour
 * clamped to the edge), flattened back to [1, N', D].
 */
export function resizePositionTable(pos: HostTensor, from: Vec3, to: Vec3): HostTensor {
  const [one, n, d] = pos.shape;
  if (pos.shape.length !== 3 || one !== 1 || n !== from[0] * from[1] * from[2]) {
    throw new RangeError(`resizePositionTable(): table [${pos.shape}] is not [1, ${from.join("·")}, D]`);
  }
  // per axis: for each output index, the two source indices and the weight of the upper one
  const taps = [0, 1, 2].map((a) =>
    Array.from({ length: to[a] }, (_, i) => {
      const src = Math.max(0, (i + 0.5) * from[a] / to[a] - 0.5);
      const lo = Math.min(Math.floor(src), from[a] - 1);
      const hi = Math.min(lo + 1, from[a] - 1);
      return { lo, hi, t: src - lo };
    })
  );
  const out = new Float32Array(to[0] * to[1] * to[2] * d);
  const row = (z: number, y: number, x: number) => ((z * from[1] + y) * from[2] + x) * d;
  let o = 0;
  for (const tz of taps[0]) {
    for (const ty of taps[1]) {
      for (const tx of taps[2]) {
        for (let c = 0; c < d; c++) {
          let v = 0;
          for (let k = 0; k < 8; k++) {
            const z = k & 4 ? tz.hi : tz.lo, y = k & 2 ? ty.hi : ty.lo, x = k & 1 ? tx.hi : tx.lo;
            const w = (k & 4 ? tz.t : 1 - tz.t) * (k & 2 ? ty.t : 1 - ty.t) * (k & 1 ? tx.t : 1 - tx.t);
            v += w * pos.data[row(z, y, x) + c];
          }
          out[o++] = v;
        }
      }
    }
  }
  return { dtype: "F32", shape: [1, to[0] * to[1] * to[2], d], data: out };
}

/** What {@link loadPretrainedEncoder} did. */
export interface AdaptReport {
  /** Target parameters written from the checkpoint. */
  loaded: string[];
  /** Input projections whose weight was repeated over more channels (name → channels). */
  repeated: Record<string, number>;
  /** Position embeddings resized (name → [from grid, to grid]). */
  resized: Record<string, [Vec3, Vec3]>;
  /** Target parameters left as initialised (the decoder and head). */
  fresh: string[];
}

/**
 * The tensors to write into `network` from `pretrained`, adapted as the module doc says, keyed by the
 * network's parameter names. `patchSize` is the downstream patch (for the position embedding).
 * Errors name the key and both shapes.
 */
export function adaptPretrainedWeights(
  network: Network,
  pretrained: PretrainedWeights,
  patchSize: Vec3,
): { tensors: Record<string, HostTensor>; report: AdaptReport } {
  const { plan, weights, source } = pretrained;
  const targetPlan = network.adaptationPlan();
  if (targetPlan.architecture.plugin !== plan.architecture.plugin) {
    throw new Error(
      `${source}: pretrained with architecture "${plan.architecture.plugin}", the downstream network is ` +
        `"${targetPlan.architecture.plugin}"`,
    );
  }
  const loadable = [...plan.encoderKeys, ...plan.stemKeys];
  const targets = new Map([...network.namedParameters()].map(([n, t]) => [n, t.shape]));
  const aliases = new Set<string>();
  for (const name of targets.keys()) for (const a of network.referenceAliases?.(name) ?? []) aliases.add(a);
  const tensors: Record<string, HostTensor> = {};
  const report: AdaptReport = { loaded: [], repeated: {}, resized: {}, fresh: [] };
  for (const [name, shape] of targets) {
    if (!under(name, loadable)) {
      report.fresh.push(name);
      continue;
    }
    const src = weights[name];
    if (!src) {
      throw new Error(
        `${source}: no "${name}" [${shape}] in the checkpoint (the plan's encoder/stem keys ` +
          `${loadable.join(", ")} cover it)`,
      );
    }
    let value = src;
    const same = src.shape.join() === shape.join();
    if (!same && under(name, plan.inputProjectionKeys) && name.endsWith(".weight")) {
      if (src.shape[1] !== 1 || src.shape.length !== shape.length || src.shape[0] !== shape[0]) {
        throw new Error(
          `${source}: input projection "${name}" is [${src.shape}], the network's is [${shape}]; only a ` +
            "one-channel projection can be repeated over more input channels",
        );
      }
      value = repeatInputChannels(src, shape[1]);
      report.repeated[name] = shape[1];
    } else if (!same && under(name, plan.positionEmbeddingKeys)) {
      if (!network.tokens) {
        throw new Error(`${source}: "${name}" is a position embedding, but the network has no token grid`);
      }
      const from = network.tokens.grid(plan.patchSize);
      const to = network.tokens.grid(patchSize);
      value = resizePositionTable(src, from, to);
      report.resized[name] = [from, to];
    }
    if (value.shape.join() !== shape.join()) {
      throw new Error(
        `${source}: "${name}" has shape [${src.shape}], the downstream network's is [${shape}]`,
      );
    }
    tensors[name] = value;
    report.loaded.push(name);
  }
  const unexpected = Object.keys(weights).filter((n) =>
    under(n, loadable) && !targets.has(n) && !aliases.has(n)
  );
  if (unexpected.length > 0) {
    const list = unexpected.slice(0, 6).map((n) => `"${n}" [${weights[n].shape}]`).join(", ");
    throw new Error(
      `${source}: ${unexpected.length} encoder/stem key(s) the downstream network does not have: ${list}` +
        (unexpected.length > 6 ? ", …" : ""),
    );
  }
  return { tensors, report };
}

/** Writes the adapted encoder and stem of `pretrained` into `network` (see {@link adaptPretrainedWeights}). */
export function loadPretrainedEncoder(
  network: Network,
  pretrained: PretrainedWeights,
  patchSize: Vec3,
): AdaptReport {
  const { tensors, report } = adaptPretrainedWeights(network, pretrained, patchSize);
  const params = new Map(network.namedParameters());
  for (const [name, t] of Object.entries(tensors)) params.get(name)!.write(t.data);
  return report;
}
