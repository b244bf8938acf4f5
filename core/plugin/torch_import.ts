/**
 * PyTorch state dicts into voxssl networks. voxssl's architecture plugins already use the reference
 * implementation's parameter names (dynamic_network_architectures' ResidualEncoderUNet and Primus), so the
 * mapping is: strip DDP's `module.` and torch.compile's `_orig_mod.` prefixes (and an outer `encoder.`
 * of nnssl's contrastive Eva wrappers when that is what matches), take each parameter from its own key or,
 * when absent, from one of the reference's alias keys (ResEnc's `all_modules.0/1.*`, `decoder.encoder.*`;
 * aliases present beside their original must hold the same values), check shapes and dtypes, and reorder
 * the position embedding when it was learned in nnssl EvaMAE's token order (methods.md §15.2).
 *
 * Token orders: Primus (and voxssl everywhere) flattens the token grid of dims (2, 3, 4) row-major; nnssl's
 * EvaMAE flattened (3, 2, 4), so an EvaMAE-pretrained `eva.pos_embed` has its rows in that order. voxssl
 * permutes such rows into Primus's order on import ("evamae"), and writes Primus's order on export unless
 * asked to reproduce EvaMAE's.
 */
import type { HostTensor } from "../nn/mod.ts";
import { PthError, toHostTensor, type TorchCheckpoint, type TorchTensor } from "../nn/mod.ts";
import type { Network } from "./architecture.ts";

/** The row order of a stored position embedding. */
export type TokenOrder = "primus" | "evamae";

/** Options of {@link mapTorchStateDict}. */
export interface TorchImportOptions {
  /** The stored position embedding's row order ("auto": EvaMAE's for nnssl Eva trainers but SimMIM). */
  positionEmbeddingOrder?: TokenOrder | "auto";
}

/** What {@link mapTorchStateDict} produced. */
export interface TorchImport {
  /** The network's reference-form weights (its own names), ready for `loadReferenceStateDict`. */
  tensors: Record<string, HostTensor>;
  /** File keys that belong to nothing in the network (a method's heads, EvaMAE's decoder, …). */
  skipped: string[];
  /** The prefix stripped from every key ("" when none). */
  prefix: string;
  /** The position embedding's row order in the file (null without a position embedding). */
  positionEmbeddingOrder: TokenOrder | null;
}

/** nnssl trainers whose Primus learned its position embedding in EvaMAE's (dims 3, 2, 4) order. */
export function evaMaeTokenOrder(trainerName: string | null): boolean {
  return trainerName !== null && /Eva/.test(trainerName) && !/SimMIM/i.test(trainerName);
}

function stripRuntimePrefixes(key: string): string {
  let k = key;
  while (true) {
    if (k.startsWith("module.")) k = k.slice(7);
    else if (k.startsWith("_orig_mod.")) k = k.slice(10);
    else return k;
  }
}

/**
 * Maps a checkpoint's state dict onto `network`'s parameter names. Missing parameters, shape mismatches,
 * non-float dtypes and disagreeing aliases are errors naming the file and the key.
 */
export function mapTorchStateDict(
  checkpoint: TorchCheckpoint,
  network: Network,
  source: string,
  { positionEmbeddingOrder = "auto" }: TorchImportOptions = {},
): TorchImport {
  const where = (k: string) => `${source}: "${checkpoint.weightsKey ? checkpoint.weightsKey + "/" : ""}${k}"`;
  const stripped = new Map<string, { key: string; t: TorchTensor }>();
  for (const [key, t] of checkpoint.weights) stripped.set(stripRuntimePrefixes(key), { key, t });
  const params = [...network.namedParameters()];
  // an outer prefix (e.g. nnssl's contrastive wrappers' "encoder.") only when it is what matches
  let prefix = "";
  const hits = (p: string) => params.filter(([n]) => stripped.has(p + n)).length;
  for (const candidate of ["encoder.", "network.", "model."]) {
    if (hits(candidate) > hits(prefix)) prefix = candidate;
  }
  const used = new Set<string>();
  const tensors: Record<string, HostTensor> = {};
  const missing: string[] = [];
  for (const [name, p] of params) {
    const keys = [name, ...(network.referenceAliases?.(name) ?? [])].map((k) => prefix + k);
    const present = keys.filter((k) => stripped.has(k));
    for (const k of present) used.add(k);
    if (present.length === 0) {
      missing.push(name);
      continue;
    }
    const first = stripped.get(present[0])!;
    const host = toHostTensor(first.t, where(first.key));
    for (const k of present.slice(1)) {
      const t = stripped.get(k)!.t;
      if (t === first.t) continue; // the same view of the same storage (how PyTorch saves aliases)
      const other = toHostTensor(t, where(stripped.get(k)!.key));
      if (other.shape.join() !== host.shape.join() || !sameBits(other.data, host.data)) {
        throw new PthError(
          `${where(stripped.get(k)!.key)} is an alias of "${first.key}" but holds other values`,
        );
      }
    }
    if (host.shape.join() !== p.shape.join()) {
      throw new PthError(
        `${where(first.key)} has shape [${host.shape}], the network's "${name}" is [${p.shape}]`,
      );
    }
    tensors[name] = host;
  }
  if (missing.length > 0) {
    const list = missing.slice(0, 6).join(", ") +
      (missing.length > 6 ? `, … (${missing.length} in all)` : "");
    throw new PthError(`${source}: the checkpoint has no weights for ${list}`);
  }
  for (const name of Object.keys(network.referenceBuffers?.() ?? {})) used.add(prefix + name);
  const skipped = [...stripped.entries()].filter(([k]) => !used.has(k)).map(([, v]) => v.key);

  // position embedding order
  const plan = network.adaptationPlan();
  let order: TokenOrder | null = null;
  if (plan.positionEmbeddingKeys.length > 0) {
    order = positionEmbeddingOrder === "auto"
      ? (evaMaeTokenOrder(checkpoint.trainerName) ? "evamae" : "primus")
      : positionEmbeddingOrder;
    if (order === "evamae") {
      for (const key of plan.positionEmbeddingKeys) {
        if (tensors[key]) tensors[key] = permuteTokens(tensors[key], tokenGrid(network), "evamae→primus");
      }
    }
  }
  return { tensors, skipped, prefix, positionEmbeddingOrder: order };
}

/** The token grid of a ViT network: its patch divided by its patch embedding's kernel. */
export function tokenGrid(network: Network): [number, number, number] {
  const plan = network.adaptationPlan();
  const proj = [...network.namedParameters()].find(([n]) => n === `${plan.inputProjectionKeys[0]}.weight`);
  if (!proj || proj[1].shape.length !== 5) {
    throw new Error(`cannot find the patch embedding ${plan.inputProjectionKeys[0]}.weight of the network`);
  }
  const k = proj[1].shape.slice(2);
  return [0, 1, 2].map((a) => plan.patchSize[a] / k[a]) as [number, number, number];
}

/**
 * Reorders the rows of a `[1, N, D]` position embedding between Primus's token order (row
 * (i2·n3 + i3)·n4 + i4) and nnssl EvaMAE's (row (i3·n2 + i2)·n4 + i4).
 */
export function permuteTokens(
  t: HostTensor,
  grid: readonly [number, number, number],
  direction: "evamae→primus" | "primus→evamae",
): HostTensor {
  const [n2, n3, n4] = grid;
  const rows = n2 * n3 * n4;
  const d = t.shape[t.shape.length - 1];
  if (t.data.length !== rows * d) {
    throw new Error(`position embedding [${t.shape}] does not hold the ${n2}×${n3}×${n4} token grid`);
  }
  const out = new Float32Array(t.data.length);
  for (let i2 = 0; i2 < n2; i2++) {
    for (let i3 = 0; i3 < n3; i3++) {
      for (let i4 = 0; i4 < n4; i4++) {
        const primus = (i2 * n3 + i3) * n4 + i4;
        const evamae = (i3 * n2 + i2) * n4 + i4;
        const [to, from] = direction === "evamae→primus" ? [primus, evamae] : [evamae, primus];
        out.set(t.data.subarray(from * d, (from + 1) * d), to * d);
      }
    }
  }
  return { dtype: t.dtype, shape: [...t.shape], data: out };
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}
