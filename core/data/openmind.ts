/**
 * Building the index of the OpenMind dataset from its `openneuro_metadata.csv`, as nnssl does: the
 * hierarchy comes from `image_path` (`ds…/sub-…/[ses-…/]anat/<name>`), subject facts (age, sex, …) go to
 * `subject_info`, acquisition facts and the image-quality score to `image_info`, and each dataset gets
 * nnssl's table of quality scores per (modality, derived_from) in `dataset_info`. Mask paths come from
 * `anat_mask_path` / `anon_mask_path`. Rows whose files are missing or bad are skipped with the reason.
 *
 * @module
 */
import { join, resolve } from "node:path";
import { parseCsvRecords } from "./csv.ts";
import { asDataFileError, DataFileError } from "./errors.ts";
import {
  assembleIndex,
  type IndexBuildOptions,
  type IndexBuildResult,
  type IndexCandidate,
} from "./index_build.ts";

const SUBJECT_KEYS = ["age", "sex", "handedness", "race", "weight", "bmi", "health_status"];
const IMAGE_KEYS = [
  "derived_from",
  "is_brain_extract",
  "manufacturer",
  "model_name",
  "phase_encoding_direction",
  "magnetic_field_strength",
  "repetition_time",
  "echo_time",
  "image_quality_score",
];

/** A CSV cell as JSON: numbers become numbers, empty and NaN cells are left out. */
function cell(value: string | undefined): string | number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (text === "" || text.toLowerCase() === "nan") return undefined;
  const n = Number(text);
  return Number.isFinite(n) && /^[-+0-9.eE]+$/.test(text) ? n : text;
}

function pick(row: Record<string, string>, keys: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of keys) {
    const v = cell(row[k]);
    if (v !== undefined) out[k] = v;
  }
  return out;
}

/** The folder `image_path` is relative to: `<folder>/OpenMind` when it exists, else `<folder>`. */
async function imageBase(folder: string): Promise<string> {
  const nested = join(folder, "OpenMind");
  return (await Deno.stat(nested).then((s) => s.isDirectory, () => false)) ? nested : folder;
}

/** One CSV row → a candidate (hierarchy from the path, as nnssl's conversion script). */
function candidateOf(
  row: Record<string, string>,
  base: string,
  csvPath: string,
  line: number,
): IndexCandidate {
  const rel = row.image_path?.trim();
  if (!rel) throw new DataFileError(`${csvPath}:${line}`, "row without image_path");
  const parts = rel.split("/");
  if (parts.length < 3) {
    throw new DataFileError(`${csvPath}:${line}`, `image_path ${rel} is not ds…/sub-…/…/<name>`);
  }
  const imageInfo = pick(row, IMAGE_KEYS);
  // derived maps (MD, FA, …) sit in `<source>__Data/`; nnssl names them after their source image
  const name = imageInfo.derived_from !== undefined && parts[parts.length - 2].endsWith("__Data")
    ? parts[parts.length - 2].slice(0, -6) + "_" + parts[parts.length - 1]
    : parts[parts.length - 1];
  const maskPath = (p: string | undefined) => (p && p.trim() ? join(base, p.trim()) : undefined);
  return {
    path: join(base, rel),
    dataset: parts[0],
    subject: parts[1],
    session: parts[2].startsWith("ses-") ? parts[2] : "ses-DEFAULT",
    name,
    modality: row.modality?.trim() || "unknown",
    anatomyMask: maskPath(row.anat_mask_path),
    anonymizationMask: maskPath(row.anon_mask_path),
    imageInfo,
    subjectInfo: pick(row, SUBJECT_KEYS),
  };
}

/** nnssl's per-dataset table: the first quality score seen per (modality, derived_from). */
function qualityTables(candidates: IndexCandidate[]): Record<string, Record<string, unknown>> {
  const tables: Record<string, Map<string, Record<string, unknown>>> = {};
  for (const c of candidates) {
    const derived = c.imageInfo?.derived_from ?? null;
    const key = `${c.modality}\u0000${derived}`;
    const table = tables[c.dataset] ??= new Map();
    if (!table.has(key)) {
      table.set(key, {
        modality: c.modality,
        derived_from: derived,
        image_quality_score: c.imageInfo?.image_quality_score ?? null,
      });
    }
  }
  return Object.fromEntries(
    Object.entries(tables).map(([ds, t]) => [ds, { image_quality_score: [...t.values()] }]),
  );
}

/**
 * Indexes an OpenMind download: `folder` holds `OpenMind/` (or is it), `csvPath` is
 * `openneuro_metadata.csv`.
 */
export async function buildOpenMindIndex(
  folder: string,
  csvPath: string,
  options: IndexBuildOptions = {},
): Promise<IndexBuildResult> {
  let text: string;
  try {
    text = await Deno.readTextFile(csvPath);
  } catch (error) {
    throw asDataFileError(csvPath, error);
  }
  const records = parseCsvRecords(text);
  if (records.length > 0 && !("image_path" in records[0])) {
    throw new DataFileError(csvPath, "has no image_path column");
  }
  const base = await imageBase(resolve(folder));
  const skippedRows: { path: string; reason: string }[] = [];
  const candidates: IndexCandidate[] = [];
  records.forEach((row, i) => {
    try {
      candidates.push(candidateOf(row, base, csvPath, i + 2));
    } catch (error) {
      const e = asDataFileError(`${csvPath}:${i + 2}`, error);
      skippedRows.push({ path: e.path, reason: e.problem });
    }
  });
  const result = await assembleIndex(candidates, {
    ...options,
    collectionName: options.collectionName ?? "OpenMind",
    datasetInfo: qualityTables(candidates),
  });
  return { ...result, skipped: [...skippedRows, ...result.skipped] };
}
