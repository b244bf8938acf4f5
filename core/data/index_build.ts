/**
 * Building a dataset index from any folder of NIfTI files. Every file is checked (its header by
 * default, or fully decoded); bad files are skipped with their reason and never stop the scan.
 * Dataset, subject, session and modality come from BIDS names when present (`ds…`, `sub-…`, `ses-…`,
 * `_T1w`), otherwise from the folder name and the file name. Masks in a `<name>__Data/` folder beside an
 * image (`fb_mask` → anatomy, `deface_mask` → anonymization) are attached to it, as in OpenMind.
 *
 * @module
 */
import { basename, relative, resolve, sep } from "node:path";
import type { PretrainIndex, VoxsslImageInfo } from "./dataset_index.ts";
import { asDataFileError, DataFileError, type SkippedFile } from "./errors.ts";
import {
  type NiftiHeader,
  type NiftiLimits,
  readNifti,
  readNiftiFrames,
  readNiftiHeader,
} from "./nifti_read.ts";
import { orientationOf } from "./orientation.ts";

/** How thoroughly each file is checked: header (+ size checks), full decode (gzip CRC, NaN/Inf), none. */
export type IndexCheck = "header" | "full" | "none";

/** What to do with 4D files: skip them (default), take the first volume, or index every volume. */
export type FramePolicy = "skip" | "first" | "split";

/** An image found by a scanner, before it is checked. */
export interface IndexCandidate {
  path: string;
  dataset: string;
  subject: string;
  session: string;
  name: string;
  modality: string;
  anatomyMask?: string;
  anonymizationMask?: string;
  imageInfo?: Record<string, unknown>;
  subjectInfo?: Record<string, unknown>;
}

/** Options shared by the index builders. */
export interface IndexBuildOptions {
  /** `collection_name` (default: the folder's name). */
  collectionName?: string;
  /** How thoroughly each file is checked (default "header"). */
  check?: IndexCheck;
  /** What to do with 4D files (default "skip"). */
  frames?: FramePolicy;
  /** Write paths relative to this folder (the index file's folder); default: absolute paths. */
  relativeTo?: string;
  /** Concurrent file checks (default 8; the work is I/O and native gzip). */
  concurrency?: number;
  /** Called after each file with the count done, the total and the file. */
  onProgress?: (done: number, total: number, path: string) => void;
  /** Size limits a file must stay within to be indexed. */
  limits?: NiftiLimits;
  /** Extra `dataset_info` per dataset key. */
  datasetInfo?: Record<string, Record<string, unknown>>;
}

/** Options of {@link buildFolderIndex}. */
export interface FolderIndexOptions extends IndexBuildOptions {
  /** Relative paths (with `/`) matching any of these are ignored (default: nnU-Net label folders). */
  exclude?: RegExp[];
  /** Modality of files without a BIDS suffix (default "unknown"). */
  defaultModality?: string;
}

/** An index, the number of images in it, and every skipped file with its reason. */
export interface IndexBuildResult {
  /** The index, as written to `pretrain_data.json`. */
  index: PretrainIndex;
  /** Images in the index. */
  images: number;
  /** Files left out, each with its reason. */
  skipped: SkippedFile[];
}

/** BIDS suffixes recognised as modalities. */
const BIDS_SUFFIXES = new Set([
  "T1w",
  "T2w",
  "FLAIR",
  "PDw",
  "PD",
  "T2starw",
  "T2star",
  "T1map",
  "T2map",
  "PDT2",
  "inplaneT1",
  "inplaneT2",
  "angio",
  "MTw",
  "UNIT1",
  "MP2RAGE",
  "dwi",
  "bold",
  "MD",
  "FA",
  "ADC",
  "SWI",
  "CT",
]);

const NIFTI_NAME = /\.nii(\.gz)?$/;

async function* walk(dir: string): AsyncGenerator<string> {
  const entries = await Array.fromAsync(Deno.readDir(dir));
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const entry of entries) {
    if (entry.name.startsWith(".")) continue;
    const full = `${dir}${sep}${entry.name}`;
    if (entry.isDirectory && NIFTI_NAME.test(entry.name)) yield full; // reported as "is a directory"
    else if (entry.isDirectory) {
      if (!entry.name.endsWith("__Data")) yield* walk(full);
    } else if (NIFTI_NAME.test(entry.name)) yield full; // symlinks too: a dangling one is a bad file
  }
}

/** Reads one mask of an image if its file exists; a missing or mismatched mask is reported, not fatal. */
async function maskIfPresent(
  path: string | undefined,
  image: NiftiHeader,
  options: IndexBuildOptions,
  skipped: SkippedFile[],
): Promise<string | undefined> {
  if (!path) return undefined;
  try {
    const header = await readNiftiHeader(path, options.limits);
    if (header.shape.join() !== image.shape.join()) {
      throw new DataFileError(
        path,
        `mask shape ${header.dims.join("×")} does not match its image (${
          image.dims.join("×")
        }); mask ignored`,
      );
    }
    return path;
  } catch (error) {
    const e = asDataFileError(path, error);
    skipped.push({
      path: e.path,
      reason: e.problem.endsWith("mask ignored") ? e.problem : `${e.problem}; mask ignored`,
    });
    return undefined;
  }
}

/** A checked image: what goes into the index (one per frame of a split 4D file). */
interface CheckedEntry {
  name: string;
  anatomy?: string;
  anonymization?: string;
  imageInfo: Record<string, unknown>;
}

/** Checks one candidate; returns its index entries (one per frame when split) or throws. */
async function inspect(
  candidate: IndexCandidate,
  options: IndexBuildOptions,
  skipped: SkippedFile[],
): Promise<CheckedEntry[]> {
  const check = options.check ?? "header";
  const header = await readNiftiHeader(candidate.path, options.limits);
  const policy = options.frames ?? "skip";
  if (header.frames > 1 && policy === "skip") {
    throw new DataFileError(
      candidate.path,
      `4D image with ${header.frames} volumes skipped (choose --frames first or split)`,
    );
  }
  const frames = header.frames === 1
    ? [undefined]
    : policy === "first"
    ? [0]
    : Array.from({ length: header.frames }, (_, f) => f);
  if (check === "full") {
    if (header.frames > 1) await readNiftiFrames(candidate.path, options.limits);
    else await readNifti(candidate.path, options.limits);
  }
  const anatomy = await maskIfPresent(candidate.anatomyMask, header, options, skipped);
  const anonymization = await maskIfPresent(candidate.anonymizationMask, header, options, skipped);
  return frames.map((frame) => {
    const voxssl: VoxsslImageInfo = {
      shape: header.shape,
      spacing: header.spacing.map((s) => Math.round(s * 1e6) / 1e6) as [number, number, number],
      datatype: header.datatype,
      orientation: orientationOf(header.affine),
      ...(frame !== undefined ? { frame } : {}),
    };
    return {
      name: candidate.name,
      anatomy,
      anonymization,
      imageInfo: { ...candidate.imageInfo, voxssl },
    };
  });
}

/** `check: "none"`: only that the file exists. */
async function inspectExistence(candidate: IndexCandidate): Promise<CheckedEntry[]> {
  await Deno.stat(candidate.path).catch((error) => {
    throw asDataFileError(candidate.path, error);
  });
  return [{
    name: candidate.name,
    anatomy: candidate.anatomyMask,
    anonymization: candidate.anonymizationMask,
    imageInfo: candidate.imageInfo ?? {},
  }];
}

/**
 * Checks every candidate (concurrently) and assembles the nnssl hierarchy from the good ones. Bad files
 * go to `skipped` with their reason; the order of the output follows the order of the candidates.
 */
export async function assembleIndex(
  candidates: IndexCandidate[],
  options: IndexBuildOptions & { collectionName: string },
): Promise<IndexBuildResult> {
  const skipped: SkippedFile[] = [];
  const results = new Array<CheckedEntry[] | undefined>(candidates.length);
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < candidates.length) {
      const i = next++;
      const candidate = candidates[i];
      try {
        results[i] = options.check === "none"
          ? await inspectExistence(candidate)
          : await inspect(candidate, options, skipped);
      } catch (error) {
        const e = asDataFileError(candidate.path, error);
        skipped.push({ path: e.path, reason: e.problem });
      }
      options.onProgress?.(++done, candidates.length, candidate.path);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, options.concurrency ?? 8) }, worker));

  const rel = (
    p: string | undefined,
  ) => (p === undefined ? undefined : options.relativeTo ? relativeIfNear(options.relativeTo, p) : p);
  const index: PretrainIndex = { collection_index: 1, collection_name: options.collectionName, datasets: {} };
  const seen = new Set<string>();
  let images = 0;
  candidates.forEach((c, i) => {
    for (const entry of results[i] ?? []) {
      const frame = (entry.imageInfo.voxssl as VoxsslImageInfo | undefined)?.frame;
      const key = `${c.dataset}/${c.subject}/${c.session}/${entry.name}#${frame ?? ""}`;
      if (seen.has(key)) {
        skipped.push({
          path: c.path,
          reason: `duplicate image ${c.dataset}/${c.subject}/${c.session}/${entry.name}`,
        });
        continue;
      }
      seen.add(key);
      const dataset = index.datasets[c.dataset] ??= {
        dataset_index: c.dataset,
        name: c.dataset,
        dataset_info: { ...options.datasetInfo?.[c.dataset] },
        subjects: {},
      };
      const subject = dataset.subjects[c.subject] ??= {
        subject_id: c.subject,
        subject_info: c.subjectInfo ?? {},
        sessions: {},
      };
      const session = subject.sessions[c.session] ??= { session_id: c.session, session_info: {}, images: [] };
      session.images.push({
        name: entry.name,
        image_path: rel(c.path)!,
        modality: c.modality,
        image_info: entry.imageInfo,
        associated_masks: {
          anatomy_mask: rel(entry.anatomy) ?? null,
          anonymization_mask: rel(entry.anonymization) ?? null,
        },
      });
      images++;
    }
  });
  return { index, images, skipped };
}

/** `to` relative to `from`, unless the two only share the root folder (then `to` stays absolute). */
function relativeIfNear(from: string, to: string): string {
  const rel = relative(from, to);
  const up = rel.split(sep).filter((p) => p === "..").length;
  return up >= resolve(from).split(sep).filter(Boolean).length ? to : rel;
}

/** Dataset, subject, session, modality of a file from its path relative to the scanned folder. */
export function describePath(
  relPath: string,
  collection: string,
  defaultModality = "unknown",
): Omit<IndexCandidate, "path"> {
  const parts = relPath.split("/");
  const name = parts[parts.length - 1];
  const fileStem = name.replace(NIFTI_NAME, "");
  const entities = Object.fromEntries(
    fileStem.split("_").map((t) => t.split("-")).filter((kv) => kv.length === 2),
  );
  const dirs = parts.slice(0, -1);
  const dataset = dirs.find((d) => /^ds\d+/.test(d)) ?? collection;
  const subject = dirs.find((d) => d.startsWith("sub-")) ??
    (entities.sub ? `sub-${entities.sub}` : fileStem.replace(/_\d{4}$/, ""));
  const session = dirs.find((d) => d.startsWith("ses-")) ??
    (entities.ses ? `ses-${entities.ses}` : "ses-DEFAULT");
  const suffix = fileStem.split("_").pop() ?? "";
  return { dataset, subject, session, name, modality: BIDS_SUFFIXES.has(suffix) ? suffix : defaultModality };
}

/**
 * Indexes every `.nii`/`.nii.gz` under `folder` (recursively, in sorted order).
 *
 * @example
 * ```ts
 * import { buildFolderIndex, writeSyntheticDataset } from "@voxssl/core";
 * import { writePretrainIndex } from "./dataset_index.ts";
 *
 * const root = await Deno.makeTempDir();
 * await writeSyntheticDataset(`${root}/scans`, { count: 2, shape: [8, 8, 8], layout: "flat" });
 * const { index, images, skipped } = await buildFolderIndex(`${root}/scans`, { relativeTo: root });
 * await writePretrainIndex(`${root}/pretrain_data.json`, index);
 * console.log(images, skipped.length); // 2 0
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export async function buildFolderIndex(
  folder: string,
  options: FolderIndexOptions = {},
): Promise<IndexBuildResult> {
  const root = resolve(folder);
  try {
    if (!(await Deno.stat(root)).isDirectory) throw new DataFileError(folder, "is not a folder");
  } catch (error) {
    throw asDataFileError(folder, error);
  }
  const collection = options.collectionName ?? basename(root);
  const exclude = options.exclude ?? [/(^|\/)labels(Tr|Ts)\//];
  const candidates: IndexCandidate[] = [];
  for await (const path of walk(root)) {
    const rel = relative(root, path).split(sep).join("/");
    if (exclude.some((re) => re.test(rel))) continue;
    const description = describePath(rel, collection, options.defaultModality);
    const dataDir = path.replace(NIFTI_NAME, "__Data");
    const ext = path.endsWith(".gz") ? ".nii.gz" : ".nii";
    const maybe = async (name: string) => {
      for (const e of [ext, ext === ".nii" ? ".nii.gz" : ".nii"]) {
        const p = `${dataDir}${sep}${name}${e}`;
        if (await Deno.lstat(p).then(() => true, () => false)) return p;
      }
      return undefined;
    };
    candidates.push({
      path,
      ...description,
      anatomyMask: await maybe("fb_mask"),
      anonymizationMask: await maybe("deface_mask"),
    });
  }
  return await assembleIndex(candidates, { ...options, collectionName: collection });
}
