/**
 * The downstream cache: an nnU-Net raw dataset preprocessed into voxssl's chunked cache format (`.vxc`,
 * core/data/cache_format.ts), one file per training case, plus a properties JSON per case and the
 * manifest `downstream.json`. Layout and arrays (docs/downstream.md):
 *
 * ```
 * <cache>/downstream.json        DownstreamManifest: dataset facts, parameters, one entry per case
 * <cache>/<case>.vxc             channel_0 … channel_{C-1} (float32), label (uint8; absent for
 *                                unlabelled cases, e.g. classification's, which read as all 0),
 *                                locations_<k> (int32 [N, 3]) for each foreground class k present
 * <cache>/<case>.json            DownstreamCaseProperties (written last: marks the case complete)
 * ```
 *
 * Resumable: a case whose properties JSON exists, was made with the same parameters and whose source
 * files have not changed is not preprocessed again.
 *
 * @module
 */
import { join } from "node:path";
import {
  type CacheFile,
  DataFileError,
  DEFAULT_CHUNK,
  DEFAULT_LEVEL,
  openCacheFile,
  PRODUCER,
  sampleLocations,
  type Shape3,
  writeCacheFile,
} from "../data/mod.ts";
import { type CaseGeometry, preprocessCase } from "./case_preprocess.ts";
import type { NnunetCase, NnunetDataset } from "./nnunet_dataset.ts";
import { medianSpacingOf } from "./target_spacing.ts";

/** Format tag of `downstream.json`. */
export const DOWNSTREAM_FORMAT = "voxssl-downstream/1";
/** Name of the manifest in a downstream cache folder. */
export const DOWNSTREAM_MANIFEST = "downstream.json";

/** The parameters that shape a downstream cache's content (compared on resume). */
export interface DownstreamParameters {
  /** Where the spacing came from: "median" (nnU-Net's rule), "given" (e.g. a checkpoint's plan) or "none". */
  spacingMode: "median" | "given" | "none";
  /** The resolved target spacing `[sd, sh, sw]` in mm, or null to keep each case's spacing. */
  targetSpacing: Shape3 | null;
  /** Axes are reoriented to RAS. */
  orientation: "RAS";
  /** Each channel z-scored over its crop box. */
  normalization: "zscore-per-channel";
  /** Image interpolation (nearest along an axis coarser than `anisotropyThreshold` × the finest). */
  imageInterpolation: "cubic";
  /** Labels resample with nearest neighbour. */
  labelInterpolation: "nearest";
  /** Anisotropy threshold (nnU-Net's 3). */
  anisotropyThreshold: number;
  /** Chunk shape of the `.vxc` arrays. */
  chunk: Shape3;
  /** zstd level. */
  compressionLevel: number;
  /** Most stored voxel locations per foreground class (nnU-Net samples 10,000 for oversampling). */
  maxLocationsPerClass: number;
  /** What an all-background label does: a warning or an error. */
  emptyLabel: "warn" | "error";
}

/** The properties JSON written beside each case's `.vxc`. */
export interface DownstreamCaseProperties {
  /** What wrote it. */
  producer: { name: string; version: string; cacheFormat: number };
  /** The case id. */
  id: string;
  /** The parameters used. */
  parameters: DownstreamParameters;
  /** Source files with size and modification time (to notice changes on resume). */
  sources: { path: string; size: number; mtimeMs: number }[];
  /** Grids of every preprocessing stage. */
  geometry: CaseGeometry;
  /** z-score statistics per channel. */
  normalization: { mean: number; std: number }[];
  /** Voxels per label value in the preprocessed label. */
  classVoxels: Record<string, number>;
  /** Arrays stored in the `.vxc`. */
  arrays: string[];
  /** Non-fatal findings. */
  warnings: string[];
  /** Bytes of the `.vxc`. */
  bytes: number;
}

/** One case in `downstream.json`. */
export interface DownstreamCaseEntry {
  /** Case id (also the file stem in the cache). */
  id: string;
  /** Preprocessed shape `[D, H, W]`. */
  shape: Shape3;
  /** Preprocessed spacing. */
  spacing: Shape3;
  /** Foreground classes present in the preprocessed label, ascending. */
  classes: number[];
  /** Voxels per label value. */
  classVoxels: Record<string, number>;
}

/** `downstream.json`. */
export interface DownstreamManifest {
  /** Format tag. */
  format: typeof DOWNSTREAM_FORMAT;
  /** What wrote it. */
  producer: { name: string; version: string; cacheFormat: number };
  /** The source dataset's facts. */
  dataset: {
    root: string;
    name: string;
    channels: string[];
    labels: Record<string, number>;
    foreground: number[];
    fileEnding: string;
  };
  /** Parameters used. */
  parameters: DownstreamParameters;
  /** When written (ISO 8601). */
  created: string;
  /** Every training case, sorted by id. */
  cases: DownstreamCaseEntry[];
  /** Warnings of all cases (empty labels). */
  warnings: string[];
}

/** Options of {@link preprocessNnunetDataset}. */
export interface DownstreamPreprocessOptions {
  /**
   * Target spacing `[sd, sh, sw]` in mm (e.g. the spacing a pretraining cache was made with), "median"
   * for nnU-Net's rule over the dataset (the from-scratch default), or "none".
   */
  spacing?: Shape3 | "median" | "none";
  /** Only these case ids (default: every training case). */
  cases?: string[];
  /** Empty (background-only) label: "warn" (default) or "error". */
  emptyLabel?: "warn" | "error";
  /** Called after each case (cached ones included). */
  onProgress?: (done: number, total: number, id: string) => void;
  /** Overrides of chunk shape, compression level, locations per class, anisotropy threshold. */
  parameters?: Partial<
    Pick<DownstreamParameters, "chunk" | "compressionLevel" | "maxLocationsPerClass" | "anisotropyThreshold">
  >;
}

/** What a run did. */
export interface DownstreamPreprocessSummary {
  /** Cases preprocessed now. */
  processed: number;
  /** Cases whose entry was already complete and current. */
  cached: number;
  /** The manifest written. */
  manifest: DownstreamManifest;
}

function caseFiles(cacheDir: string, id: string): { data: string; properties: string } {
  const stem = id.replace(/[^A-Za-z0-9._-]/g, "_");
  return { data: join(cacheDir, `${stem}.vxc`), properties: join(cacheDir, `${stem}.json`) };
}

async function stamps(c: NnunetCase): Promise<DownstreamCaseProperties["sources"]> {
  const paths = c.label ? [...c.images, c.label] : c.images;
  return await Promise.all(paths.map(async (path) => {
    const info = await Deno.stat(path);
    return { path, size: info.size, mtimeMs: info.mtime?.getTime() ?? 0 };
  }));
}

async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  const tmp = `${path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify(value, null, 1));
  await Deno.rename(tmp, path);
}

async function currentProperties(
  path: string,
  parameters: DownstreamParameters,
  sources: DownstreamCaseProperties["sources"],
): Promise<DownstreamCaseProperties | undefined> {
  try {
    const stored = JSON.parse(await Deno.readTextFile(path)) as DownstreamCaseProperties;
    if (JSON.stringify(stored.parameters) !== JSON.stringify(parameters)) return undefined;
    if (JSON.stringify(stored.sources) !== JSON.stringify(sources)) return undefined;
    if ((await Deno.stat(path.replace(/\.json$/, ".vxc"))).size !== stored.bytes) return undefined;
    return stored;
  } catch {
    return undefined;
  }
}

/** The parameters a run uses (target spacing resolved by the caller). */
export function downstreamParameters(
  targetSpacing: Shape3 | null,
  spacingMode: DownstreamParameters["spacingMode"],
  overrides: DownstreamPreprocessOptions["parameters"] & { emptyLabel?: "warn" | "error" } = {},
): DownstreamParameters {
  return {
    spacingMode,
    targetSpacing,
    orientation: "RAS",
    normalization: "zscore-per-channel",
    imageInterpolation: "cubic",
    labelInterpolation: "nearest",
    anisotropyThreshold: overrides.anisotropyThreshold ?? 3,
    chunk: overrides.chunk ?? DEFAULT_CHUNK,
    compressionLevel: overrides.compressionLevel ?? DEFAULT_LEVEL,
    maxLocationsPerClass: overrides.maxLocationsPerClass ?? 10000,
    emptyLabel: overrides.emptyLabel ?? "warn",
  };
}

/**
 * Preprocesses a dataset's training cases into `cacheDir` (resumable) and writes `downstream.json`.
 * A bad case stops the run with a `DataFileError` naming its file (a segmentation set with a silently
 * dropped case would not be the dataset asked for); cases done before it stay cached.
 *
 * @example
 * ```ts ignore
 * import { preprocessNnunetDataset, readNnunetDataset } from "@voxssl/core";
 * const ds = await readNnunetDataset("../shared/data/hippocampus");
 * const { manifest } = await preprocessNnunetDataset(ds, "/tmp/hippo-cache", { spacing: "median" });
 * console.log(manifest.parameters.targetSpacing, manifest.cases.length); // [1, 1, 1] 129
 * ```
 */
export async function preprocessNnunetDataset(
  dataset: NnunetDataset,
  cacheDir: string,
  options: DownstreamPreprocessOptions = {},
): Promise<DownstreamPreprocessSummary> {
  let cases = dataset.training;
  if (options.cases) {
    const known = new Map(cases.map((c) => [c.id, c]));
    cases = options.cases.map((id) => {
      const c = known.get(id);
      if (!c) throw new DataFileError(join(dataset.root, "imagesTr"), `no training case "${id}"`);
      return c;
    });
  }
  const mode = options.spacing ?? "median";
  let target: Shape3 | null = null;
  let spacingMode: DownstreamParameters["spacingMode"] = "none";
  if (mode === "median") {
    target = await medianSpacingOf(cases);
    spacingMode = "median";
  } else if (Array.isArray(mode)) {
    if (mode.length !== 3 || !mode.every((s) => s > 0)) {
      throw new RangeError(
        `spacing must be three positive numbers [sd, sh, sw], got ${JSON.stringify(mode)}`,
      );
    }
    target = [...mode] as Shape3;
    spacingMode = "given";
  }
  const parameters = downstreamParameters(target, spacingMode, {
    ...options.parameters,
    emptyLabel: options.emptyLabel,
  });
  await Deno.mkdir(cacheDir, { recursive: true });
  const labelValues = Object.values(dataset.labels);
  const entries: DownstreamCaseEntry[] = [];
  const warnings: string[] = [];
  let processed = 0;
  let cached = 0;
  for (const [i, c] of cases.entries()) {
    const files = caseFiles(cacheDir, c.id);
    const sources = await stamps(c).catch((error) => {
      throw new DataFileError(c.images[0], `unreadable case files (${(error as Error).message})`);
    });
    let properties = await currentProperties(files.properties, parameters, sources);
    if (properties) cached++;
    else {
      const pre = await preprocessCase(c, {
        targetSpacing: target,
        labelValues,
        emptyLabel: parameters.emptyLabel,
        anisotropyThreshold: parameters.anisotropyThreshold,
      });
      const shape = pre.geometry.final.shape;
      const arrays: Record<
        string,
        { data: Float32Array | Uint8Array | Int32Array; shape: number[]; chunk?: Shape3 }
      > = {};
      pre.channels.forEach((data, k) => arrays[`channel_${k}`] = { data, shape, chunk: parameters.chunk });
      // unlabelled cases (classification) store the channels alone
      if (pre.label) arrays.label = { data: pre.label, shape, chunk: parameters.chunk };
      for (const k of dataset.foreground) {
        if (!pre.label || !pre.classVoxels![k]) continue;
        const mask = new Uint8Array(pre.label!.length);
        for (let v = 0; v < mask.length; v++) mask[v] = pre.label![v] === k ? 1 : 0;
        const locations = sampleLocations(mask, shape, parameters.maxLocationsPerClass, `${c.id}/${k}`);
        arrays[`locations_${k}`] = { data: locations, shape: [locations.length / 3, 3] };
      }
      const bytes = await writeCacheFile(files.data, arrays, { level: parameters.compressionLevel });
      properties = {
        producer: PRODUCER,
        id: c.id,
        parameters,
        sources,
        geometry: pre.geometry,
        normalization: pre.normalization,
        classVoxels: pre.classVoxels ?? {},
        arrays: Object.keys(arrays),
        warnings: pre.warnings,
        bytes,
      };
      await writeJsonAtomic(files.properties, properties);
      processed++;
    }
    warnings.push(...properties.warnings);
    entries.push({
      id: c.id,
      shape: properties.geometry.final.shape,
      spacing: properties.geometry.final.spacing,
      classes: dataset.foreground.filter((k) => properties!.classVoxels[k] > 0),
      classVoxels: properties.classVoxels,
    });
    options.onProgress?.(i + 1, cases.length, c.id);
  }
  const manifest: DownstreamManifest = {
    format: DOWNSTREAM_FORMAT,
    producer: PRODUCER,
    dataset: {
      root: dataset.root,
      name: dataset.name,
      channels: dataset.channels,
      labels: dataset.labels,
      foreground: dataset.foreground,
      fileEnding: dataset.fileEnding,
    },
    parameters,
    created: new Date().toISOString(),
    cases: entries,
    warnings,
  };
  await writeJsonAtomic(join(cacheDir, DOWNSTREAM_MANIFEST), manifest);
  return { processed, cached, manifest };
}

/** Reads and checks `downstream.json` of a downstream cache folder. */
export async function readDownstreamManifest(cacheDir: string): Promise<DownstreamManifest> {
  const path = join(cacheDir, DOWNSTREAM_MANIFEST);
  let manifest: DownstreamManifest;
  try {
    manifest = JSON.parse(await Deno.readTextFile(path));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new DataFileError(path, "missing: not a downstream cache (run preprocessNnunetDataset first)");
    }
    throw new DataFileError(path, `not valid JSON (${(error as Error).message})`);
  }
  if (manifest.format !== DOWNSTREAM_FORMAT) {
    throw new DataFileError(path, `format "${manifest.format}", expected "${DOWNSTREAM_FORMAT}"`);
  }
  return manifest;
}

/** An open case of a downstream cache: reads patches of all channels and the label. */
export interface DownstreamCase {
  /** The manifest entry. */
  entry: DownstreamCaseEntry;
  /** Channels. */
  channels: number;
  /**
   * Reads `start .. start+size` (may leave the volume: zeros there, label 0): the image as
   * `[C, sd, sh, sw]` float32 and the label as `[sd, sh, sw]` uint8.
   */
  readPatch(start: readonly number[], size: Shape3): { image: Float32Array; label: Uint8Array };
  /** Up to `maxLocationsPerClass` voxel locations `[N, 3]` (d, h, w) of foreground class `k` (empty if absent). */
  locations(k: number): Int32Array;
  /** The case's properties (geometry of every stage, normalisation). */
  properties(): Promise<DownstreamCaseProperties>;
  /** Closes the file. */
  close(): void;
}

/**
 * Opens a case of a downstream cache for reading. Synchronous reads, so it can run in loader workers.
 *
 * @example
 * ```ts ignore
 * import { openDownstreamCase, readDownstreamManifest } from "@voxssl/core";
 * const manifest = await readDownstreamManifest("/tmp/hippo-cache");
 * const c = openDownstreamCase("/tmp/hippo-cache", manifest, manifest.cases[0].id);
 * const { image, label } = c.readPatch([0, 0, 0], [16, 16, 16]); // image [C,16,16,16], label [16,16,16]
 * c.close();
 * ```
 */
export function openDownstreamCase(
  cacheDir: string,
  manifest: DownstreamManifest,
  id: string,
): DownstreamCase {
  const entry = manifest.cases.find((e) => e.id === id);
  if (!entry) throw new DataFileError(join(cacheDir, DOWNSTREAM_MANIFEST), `no case "${id}"`);
  const files = caseFiles(cacheDir, id);
  const file: CacheFile = openCacheFile(files.data);
  const channels = manifest.dataset.channels.length;
  return {
    entry,
    channels,
    readPatch(start, size) {
      const n = size[0] * size[1] * size[2];
      const image = new Float32Array(channels * n);
      for (let c = 0; c < channels; c++) {
        image.set(file.readRegion<Float32Array>(`channel_${c}`, start, size), c * n);
      }
      const label = file.header.arrays.label
        ? file.readRegion<Uint8Array>("label", start, size)
        : new Uint8Array(n); // an unlabelled (classification) case
      return { image, label };
    },
    locations(k) {
      return file.header.arrays[`locations_${k}`]
        ? file.readArray<Int32Array>(`locations_${k}`)
        : new Int32Array(0);
    },
    async properties() {
      return JSON.parse(await Deno.readTextFile(files.properties)) as DownstreamCaseProperties;
    },
    close: () => file.close(),
  };
}
