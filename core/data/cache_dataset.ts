/**
 * The cache folder as a whole: `cache.json` (the manifest: producer, parameters, one entry per image,
 * skipped files) written by preprocessing and read by loaders. When the manifest is missing (a run was
 * interrupted before writing it), the entries are rebuilt from the per-image properties files; a
 * properties file that cannot be used (not JSON, not an entry's properties, another cache format) is
 * reported with its path and reason and listed in the rebuilt manifest's `skipped`.
 *
 * @module
 */
import { join, relative, sep } from "node:path";
import { asDataFileError, DataFileError, type SkippedFile } from "./errors.ts";
import type { ImageProperties, PreprocessParameters } from "./preprocess.ts";
import { PRODUCER } from "./version.ts";
import type { Shape3 } from "./volume.ts";

/** One image of the cache, as listed in the manifest. */
export interface CacheEntry {
  /** The image's id in the dataset index (`ImageRecord.id`). */
  id: string;
  /** Path of the entry relative to the cache folder, without extension (`.vxc` / `.json` beside). */
  key: string;
  /** Dataset key. */
  dataset: string;
  /** Subject key. */
  subject: string;
  /** Session key. */
  session: string;
  /** Modality (T1w, T2w, FLAIR, …). */
  modality: string;
  /** Image quality score (1 best … 5 worst) when known. */
  qualityScore?: number;
  /** Array shape `[D, H, W]` after preprocessing. */
  shape: Shape3;
  /** Voxel size `[sd, sh, sw]` in mm after preprocessing. */
  spacing: Shape3;
  /** Arrays stored for the image ("image" and its masks). */
  arrays: string[];
  /** Anatomy voxel locations stored for anatomy-centred sampling. */
  anatomyVoxels?: number;
}

/** `cache.json`. */
export interface CacheManifest {
  /** What wrote the cache: voxssl's name and version and the cache format (see `CACHE_FORMAT`). */
  producer: { name: string; version: string; cacheFormat: number };
  /**
   * The parameters the cache was made with (null in a manifest rebuilt from properties files that lack them).
   */
  parameters: PreprocessParameters | null;
  /** When the manifest was written (ISO 8601). */
  created: string;
  /** One entry per cached image. */
  images: CacheEntry[];
  /** Files left out, each with its reason. */
  skipped: SkippedFile[];
}

/** Name of the manifest file in a cache folder. */
export const MANIFEST_NAME = "cache.json";

/** The manifest entry of an image's properties. */
export function entryOf(properties: ImageProperties, key: string): CacheEntry {
  const { image, final } = properties;
  return {
    id: image.id,
    key,
    dataset: image.dataset,
    subject: image.subject,
    session: image.session,
    modality: image.modality,
    ...(image.qualityScore !== undefined ? { qualityScore: image.qualityScore } : {}),
    shape: final.shape,
    spacing: final.spacing,
    arrays: properties.arrays,
    ...(properties.anatomyVoxels !== undefined ? { anatomyVoxels: properties.anatomyVoxels } : {}),
  };
}

/** Writes `cache.json` atomically. */
export async function writeCacheManifest(cacheDir: string, manifest: CacheManifest): Promise<void> {
  const path = join(cacheDir, MANIFEST_NAME);
  const tmp = `${path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify(manifest, null, 1) + "\n");
  await Deno.rename(tmp, path);
}

async function* propertyFiles(dir: string): AsyncGenerator<string> {
  for await (const entry of Deno.readDir(dir)) {
    const full = join(dir, entry.name);
    if (entry.isDirectory) yield* propertyFiles(full);
    else if (entry.name.endsWith(".json") && entry.name !== MANIFEST_NAME) yield full;
  }
}

/** Options of {@link readCacheManifest}. */
export interface ReadCacheManifestOptions {
  /**
   * Called once per properties file that cannot be used when the entries are rebuilt (no `cache.json`):
   * unreadable, not valid JSON, not the properties of a cache entry, or made by another cache format.
   * Default: a warning on stderr with the path and the reason. The files are also listed in the
   * returned manifest's `skipped`.
   */
  onSkip?: (skipped: SkippedFile) => void;
}

const isVec3 = (v: unknown) => Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === "number");

/** Why parsed properties cannot make a cache entry, or undefined when they can. */
function propertiesProblem(value: unknown): string | undefined {
  const expected = "expected the properties of a cache entry written by voxssl preprocess";
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return `not a JSON object; ${expected}`;
  }
  const p = value as Partial<Record<keyof ImageProperties, Record<string, unknown>>>;
  const format = p.producer?.cacheFormat;
  if (typeof format === "number" && format !== PRODUCER.cacheFormat) {
    return `made by another cache format (${p.producer?.name ?? "?"} ${p.producer?.version ?? "?"}, format ` +
      `${format}; this voxssl reads format ${PRODUCER.cacheFormat}): run voxssl preprocess again`;
  }
  const missing = [
    typeof format !== "number" && "producer.cacheFormat",
    ...["id", "dataset", "subject", "session", "modality"]
      .filter((k) => typeof p.image?.[k] !== "string").map((k) => `image.${k}`),
    !isVec3(p.final?.shape) && "final.shape",
    !isVec3(p.final?.spacing) && "final.spacing",
    !Array.isArray(p.arrays) && "arrays",
  ].filter((m): m is string => typeof m === "string");
  return missing.length > 0 ? `lacks ${missing.join(", ")}; ${expected}` : undefined;
}

/** Reads a cache folder's manifest, or rebuilds the entries from the properties files. */
export async function readCacheManifest(
  cacheDir: string,
  options: ReadCacheManifestOptions = {},
): Promise<CacheManifest> {
  const path = join(cacheDir, MANIFEST_NAME);
  try {
    const manifest = JSON.parse(await Deno.readTextFile(path)) as CacheManifest;
    if (manifest.producer?.cacheFormat !== PRODUCER.cacheFormat || !Array.isArray(manifest.images)) {
      throw new DataFileError(
        path,
        `unsupported cache manifest (format ${manifest.producer?.cacheFormat}, expected ${PRODUCER.cacheFormat})`,
      );
    }
    return manifest;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw asDataFileError(path, error);
  }
  try {
    await Deno.stat(cacheDir);
  } catch (error) {
    throw asDataFileError(cacheDir, error);
  }
  const onSkip = options.onSkip ??
    ((s: SkippedFile) => console.warn(`voxssl cache: skipping ${s.path}: ${s.reason}`));
  const images: CacheEntry[] = [];
  const skipped: SkippedFile[] = [];
  let parameters: PreprocessParameters | null = null;
  const files = [];
  for await (const file of propertyFiles(cacheDir)) files.push(file);
  for (const file of files.sort()) {
    let problem: string | undefined;
    try {
      let properties: unknown;
      try {
        properties = JSON.parse(await Deno.readTextFile(file));
      } catch (error) {
        if (!(error instanceof SyntaxError)) throw error;
        throw new DataFileError(
          file,
          `not valid JSON (${error.message}); expected the properties of a cache entry written by voxssl preprocess`,
        );
      }
      problem = propertiesProblem(properties);
      if (!problem) {
        const p = properties as ImageProperties;
        parameters ??= p.parameters;
        images.push(entryOf(p, relative(cacheDir, file).split(sep).join("/").replace(/\.json$/, "")));
      }
    } catch (error) {
      problem = asDataFileError(file, error).problem;
    }
    if (problem) {
      const entry = { path: file, reason: problem };
      skipped.push(entry);
      onSkip(entry);
    }
  }
  if (images.length === 0) {
    const why = skipped.length === 0
      ? "no cache.json, no properties files"
      : `no cache.json, and none of its ${skipped.length} properties files is usable; first: ` +
        `${skipped[0].path}: ${skipped[0].reason}`;
    throw new DataFileError(cacheDir, `is not a voxssl cache (${why})`);
  }
  images.sort((a, b) => (a.key < b.key ? -1 : 1));
  return { producer: PRODUCER, parameters, created: "", images, skipped };
}
