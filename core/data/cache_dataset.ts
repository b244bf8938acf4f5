/**
 * The cache folder as a whole: `cache.json` (the manifest: producer, parameters, one entry per image,
 * skipped files) written by preprocessing and read by loaders. When the manifest is missing (a run was
 * interrupted before writing it), the entries are rebuilt from the per-image properties files.
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
  id: string;
  /** Path of the entry relative to the cache folder, without extension (`.vxc` / `.json` beside). */
  key: string;
  dataset: string;
  subject: string;
  session: string;
  modality: string;
  qualityScore?: number;
  shape: Shape3;
  spacing: Shape3;
  arrays: string[];
  anatomyVoxels?: number;
}

/** `cache.json`. */
export interface CacheManifest {
  producer: typeof PRODUCER;
  parameters: PreprocessParameters | null;
  created: string;
  images: CacheEntry[];
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

/** Reads a cache folder's manifest, or rebuilds the entries from the properties files. */
export async function readCacheManifest(cacheDir: string): Promise<CacheManifest> {
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
  const images: CacheEntry[] = [];
  let parameters: PreprocessParameters | null = null;
  for await (const file of propertyFiles(cacheDir)) {
    try {
      const properties = JSON.parse(await Deno.readTextFile(file)) as ImageProperties;
      if (properties.producer?.cacheFormat !== PRODUCER.cacheFormat) continue;
      parameters ??= properties.parameters;
      images.push(entryOf(properties, relative(cacheDir, file).split(sep).join("/").replace(/\.json$/, "")));
    } catch {
      // an unreadable properties file means an unfinished entry: not part of the cache
    }
  }
  if (images.length === 0) {
    throw new DataFileError(cacheDir, "is not a voxssl cache (no cache.json, no properties files)");
  }
  images.sort((a, b) => (a.key < b.key ? -1 : 1));
  return { producer: PRODUCER, parameters, created: "", images, skipped: [] };
}
