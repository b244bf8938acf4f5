/**
 * The dataset index: nnssl's `pretrain_data.json` (Collection → Dataset → Subject → Session → Image),
 * validated with zod, plus what the pipeline does with it: flatten to a list of images with resolved
 * paths, filter by image-quality score and modality, and split subjects into train/validation with the
 * reference's rule.
 *
 * Unknown keys are kept (the schemas are loose), so an index written by nnssl reads here and one written
 * here reads in nnssl. voxssl's own per-image facts (shape, spacing, orientation, frame) live under
 * `image_info.voxssl`.
 *
 * @module
 */
import { dirname, isAbsolute, join, resolve } from "node:path";
import { z } from "zod";
import { asDataFileError, DataFileError } from "./errors.ts";
import { createRng } from "./rng.ts";

const info = z.record(z.string(), z.unknown()).nullish();
const id = z.union([z.string(), z.number()]);

/** `associated_masks` of an image. */
export const associatedMasksSchema = z.looseObject({
  anonymization_mask: z.string().nullish(),
  anatomy_mask: z.string().nullish(),
});

/** One image of a session. */
export const imageSchema = z.looseObject({
  name: z.string(),
  image_path: z.string(),
  modality: z.string(),
  image_info: info,
  associated_masks: associatedMasksSchema.nullish(),
});

/** One session of a subject. */
export const sessionSchema = z.looseObject({
  session_id: id,
  session_info: info,
  images: z.array(imageSchema),
});

/** One subject of a dataset. */
export const subjectSchema = z.looseObject({
  subject_id: z.string(),
  subject_info: info,
  sessions: z.record(z.string(), sessionSchema),
});

/** One dataset of the collection. */
export const datasetSchema = z.looseObject({
  dataset_index: id,
  name: z.string().nullish(),
  dataset_info: info,
  subjects: z.record(z.string(), subjectSchema),
});

/** The whole `pretrain_data.json`. */
export const pretrainIndexSchema = z.looseObject({
  collection_index: id,
  collection_name: z.string(),
  datasets: z.record(z.string(), datasetSchema),
});

/** Free-form facts of an index level (`dataset_info`, `subject_info`, …). */
export type IndexInfo = Record<string, unknown> | null | undefined;

/** `associated_masks` of an image: paths of its masks (relative to the index file or absolute). */
export interface IndexMasks {
  /** The anonymisation (deface) mask. */
  anonymization_mask?: string | null;
  /** The anatomy (foreground) mask. */
  anatomy_mask?: string | null;
  /** Keys nnssl or other tools add are kept. */
  [key: string]: unknown;
}

/** One image of a session in `pretrain_data.json`. */
export interface IndexImageEntry {
  /** File name. */
  name: string;
  /** Path of the image (relative to the index file or absolute). */
  image_path: string;
  /** Modality (T1w, T2w, FLAIR, …). */
  modality: string;
  /** Facts about the image; voxssl's own are under `voxssl` ({@link VoxsslImageInfo}). */
  image_info?: IndexInfo;
  /** Its masks. */
  associated_masks?: IndexMasks | null;
  /** Keys nnssl or other tools add are kept. */
  [key: string]: unknown;
}

/** One session of a subject in `pretrain_data.json`. */
export interface IndexSession {
  /** The session's id. */
  session_id: string | number;
  /** Facts about the session. */
  session_info?: IndexInfo;
  /** Its images. */
  images: IndexImageEntry[];
  /** Keys nnssl or other tools add are kept. */
  [key: string]: unknown;
}

/** One subject of a dataset in `pretrain_data.json`. */
export interface IndexSubject {
  /** The subject's id. */
  subject_id: string;
  /** Facts about the subject. */
  subject_info?: IndexInfo;
  /** Sessions by key. */
  sessions: Record<string, IndexSession>;
  /** Keys nnssl or other tools add are kept. */
  [key: string]: unknown;
}

/** One dataset of the collection in `pretrain_data.json`. */
export interface IndexDataset {
  /** The dataset's index. */
  dataset_index: string | number;
  /** Its name. */
  name?: string | null;
  /** Facts about the dataset. */
  dataset_info?: IndexInfo;
  /** Subjects by key. */
  subjects: Record<string, IndexSubject>;
  /** Keys nnssl or other tools add are kept. */
  [key: string]: unknown;
}

/** A parsed `pretrain_data.json` (Collection → Dataset → Subject → Session → Image). */
export interface PretrainIndex {
  /** The collection's index. */
  collection_index: string | number;
  /** The collection's name. */
  collection_name: string;
  /** Datasets by key. */
  datasets: Record<string, IndexDataset>;
  /** Keys nnssl or other tools add are kept. */
  [key: string]: unknown;
}

// PretrainIndex is written out for the docs; this fails to compile when it and the schema drift apart.
const _pretrainIndexIsTheSchemaOutput: [PretrainIndex, z.output<typeof pretrainIndexSchema>] extends
  [z.output<typeof pretrainIndexSchema>, PretrainIndex] ? true : never = true;
/** One image entry of the index. */
export type IndexImage = z.infer<typeof imageSchema>;

/** voxssl's facts about an image, stored in `image_info.voxssl` by `voxssl index`. */
export interface VoxsslImageInfo {
  /** Array shape `[D, H, W]` and spacing `[sd, sh, sw]` as stored in the file (before reorientation). */
  shape: [number, number, number];
  /** Voxel size `[sd, sh, sw]` as stored. */
  spacing: [number, number, number];
  /** Stored datatype. */
  datatype: string;
  /** Orientation code of the stored axes, e.g. "LAS". */
  orientation: string;
  /** For an entry that is one frame of a 4D file. */
  frame?: number;
}

/** One image of the index, flattened, with absolute paths: what preprocessing and loaders iterate. */
export interface ImageRecord {
  /** Unique and stable: `dataset__subject__session__name` (plus `#frame` for a split 4D file). */
  id: string;
  /** Dataset key. */
  dataset: string;
  /** Subject key. */
  subject: string;
  /** Session key. */
  session: string;
  /** Image file name. */
  name: string;
  /** Modality (T1w, T2w, FLAIR, …). */
  modality: string;
  /** Absolute path of the image. */
  path: string;
  /** Absolute path of the anatomy (foreground) mask. */
  anatomyMask?: string;
  /** Absolute path of the anonymisation (deface) mask. */
  anonymizationMask?: string;
  /** Image quality score (1 best … 5 worst) when known. */
  qualityScore?: number;
  /** Frame of a 4D file, when the entry is one. */
  frame?: number;
  /** What `voxssl index` recorded about the file. */
  voxssl?: VoxsslImageInfo;
}

/** Reads and validates a `pretrain_data.json`; problems name the file and the JSON path. */
export async function readPretrainIndex(path: string): Promise<PretrainIndex> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw asDataFileError(path, error);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new DataFileError(path, `not valid JSON (${(error as Error).message})`);
  }
  const parsed = pretrainIndexSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new DataFileError(
      path,
      `not a pretrain_data.json: ${issue.path.join(".") || "(root)"}: ${issue.message}`,
    );
  }
  return parsed.data;
}

/** Writes an index as JSON (4-space indent, like nnssl), atomically. */
export async function writePretrainIndex(path: string, index: PretrainIndex): Promise<void> {
  const tmp = `${path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify(pretrainIndexSchema.parse(index), null, 4) + "\n");
  await Deno.rename(tmp, path);
}

/**
 * Resolves a path of the index: `$NAME/rest` takes the environment variable NAME (nnssl's convention),
 * a relative path is relative to the index file's folder, an absolute path stays.
 */
export function resolveIndexPath(path: string, indexDir: string): string {
  const match = /^\$([A-Za-z_][A-Za-z0-9_]*)(\/.*)?$/.exec(path);
  if (match) {
    const value = Deno.env.get(match[1]);
    if (value === undefined) throw new DataFileError(path, `environment variable ${match[1]} is not set`);
    return join(value, match[2] ?? "");
  }
  return isAbsolute(path) ? path : resolve(indexDir, path);
}

function stem(name: string): string {
  return name.replace(/\.nii(\.gz)?$/, "");
}

/** The image quality score of an entry: `image_info.image_quality_score`, else the dataset's table. */
function qualityScore(
  image: IndexImage,
  datasetInfo: Record<string, unknown> | null | undefined,
): number | undefined {
  const own = Number(image.image_info?.image_quality_score);
  if (image.image_info?.image_quality_score != null && Number.isFinite(own)) return own;
  const table = datasetInfo?.image_quality_score;
  if (!Array.isArray(table)) return undefined;
  const derived = image.image_info?.derived_from ?? null;
  const row = table.find((r) => r?.modality === image.modality && (r?.derived_from ?? null) === derived);
  const score = Number(row?.image_quality_score);
  return row && Number.isFinite(score) ? score : undefined;
}

/** Flattens an index to image records with absolute paths (relative paths resolve against `indexDir`). */
export function listImages(index: PretrainIndex, indexDir: string): ImageRecord[] {
  const out: ImageRecord[] = [];
  for (const [datasetKey, dataset] of Object.entries(index.datasets)) {
    for (const [subjectKey, subject] of Object.entries(dataset.subjects)) {
      for (const [sessionKey, session] of Object.entries(subject.sessions)) {
        for (const image of session.images) {
          const voxssl = image.image_info?.voxssl as VoxsslImageInfo | undefined;
          const masks = image.associated_masks;
          const frame = typeof voxssl?.frame === "number" ? voxssl.frame : undefined;
          out.push({
            id: `${datasetKey}__${subjectKey}__${sessionKey}__${stem(image.name)}${
              frame !== undefined ? `#${frame}` : ""
            }`,
            dataset: datasetKey,
            subject: subjectKey,
            session: sessionKey,
            name: image.name,
            modality: image.modality,
            path: resolveIndexPath(image.image_path, indexDir),
            anatomyMask: masks?.anatomy_mask ? resolveIndexPath(masks.anatomy_mask, indexDir) : undefined,
            anonymizationMask: masks?.anonymization_mask
              ? resolveIndexPath(masks.anonymization_mask, indexDir)
              : undefined,
            qualityScore: qualityScore(image, dataset.dataset_info),
            frame,
            voxssl,
          });
        }
      }
    }
  }
  return out;
}

/** Reads an index file and flattens it (paths resolved against the file's folder). */
export async function loadImageList(indexPath: string): Promise<ImageRecord[]> {
  return listImages(await readPretrainIndex(indexPath), dirname(resolve(indexPath)));
}

/** Filters of {@link filterImages}. */
export interface ImageFilter {
  /** Keep images whose quality score is at most this (the paper's thresholds: 1.5, 2.5, 3.0). */
  maxQualityScore?: number;
  /** Keep only these modalities (e.g. T1w, T2w, FLAIR). */
  modalities?: string[];
  /** Drop images without a quality score when `maxQualityScore` is set (default: keep them). */
  dropUnscored?: boolean;
}

/** Applies quality and modality filters (to image records or cache entries alike). */
export function filterImages<T extends Pick<ImageRecord, "modality" | "qualityScore">>(
  images: T[],
  filter: ImageFilter,
): T[] {
  const modalities = filter.modalities && new Set(filter.modalities);
  return images.filter((image) => {
    if (modalities && !modalities.has(image.modality)) return false;
    if (filter.maxQualityScore === undefined) return true;
    if (image.qualityScore === undefined) return !filter.dropUnscored;
    return image.qualityScore <= filter.maxQualityScore;
  });
}

/** The key that identifies a subject across datasets. */
export function subjectKey(image: Pick<ImageRecord, "dataset" | "subject">): string {
  return `${image.dataset}__${image.subject}`;
}

/** Default seed of the validation split (nnssl's). */
export const SPLIT_SEED = 12345;

/**
 * nnssl's subject-level split: subjects sorted, `min(1000, max(⌊N/100⌋, 5))` of them drawn as
 * validation with a fixed seed, the rest train. Our generator differs from Python's `random`, so the
 * drawn subjects differ from nnssl's; the rule and its sizes are the same. At least one subject always
 * stays in train.
 */
export function splitSubjects(
  subjects: Iterable<string>,
  seed = SPLIT_SEED,
): { train: string[]; val: string[] } {
  const sorted = [...new Set(subjects)].sort();
  const nVal = Math.min(1000, Math.max(Math.floor(sorted.length / 100), 5), Math.max(0, sorted.length - 1));
  const rng = createRng(seed, "split");
  const pool = sorted.slice();
  for (let i = 0; i < nVal; i++) { // partial Fisher–Yates: the first nVal become the sample
    const j = i + rng.int(pool.length - i);
    [pool[i], pool[j]] = [pool[j], pool[i]];
  }
  const val = new Set(pool.slice(0, nVal));
  return { train: sorted.filter((s) => !val.has(s)), val: sorted.filter((s) => val.has(s)) };
}

/** Which part of the data a loader or tool uses. */
export type DataSplit = "train" | "val" | "all";

/** The images of one part of the subject-level split (`"all"` returns them unchanged). */
export function selectSplit<T extends Pick<ImageRecord, "dataset" | "subject">>(
  images: T[],
  split: DataSplit,
  seed = SPLIT_SEED,
): T[] {
  if (split === "all") return images;
  const parts = splitSubjects(images.map(subjectKey), seed);
  const keep = new Set(parts[split]);
  return images.filter((image) => keep.has(subjectKey(image)));
}

/** A copy of the index without the images `filter` drops (empty sessions, subjects, datasets go too). */
export function filterIndex(
  index: PretrainIndex,
  filter: ImageFilter,
): { index: PretrainIndex; removed: number } {
  const out: PretrainIndex = structuredClone(index);
  let removed = 0;
  const modalities = filter.modalities && new Set(filter.modalities);
  const keep = (image: IndexImage, datasetInfo: Record<string, unknown> | null | undefined) => {
    if (modalities && !modalities.has(image.modality)) return false;
    if (filter.maxQualityScore === undefined) return true;
    const score = qualityScore(image, datasetInfo);
    return score === undefined ? !filter.dropUnscored : score <= filter.maxQualityScore;
  };
  for (const [dk, dataset] of Object.entries(out.datasets)) {
    for (const [sk, subject] of Object.entries(dataset.subjects)) {
      for (const [ek, session] of Object.entries(subject.sessions)) {
        const before = session.images.length;
        session.images = session.images.filter((image) => keep(image, dataset.dataset_info));
        removed += before - session.images.length;
        if (session.images.length === 0) delete subject.sessions[ek];
      }
      if (Object.keys(subject.sessions).length === 0) delete dataset.subjects[sk];
    }
    if (Object.keys(dataset.subjects).length === 0) delete out.datasets[dk];
  }
  return { index: out, removed };
}
