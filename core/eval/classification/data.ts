/**
 * A classification CSV (dataset_csv.ts) preprocessed like a segmentation dataset and read into memory:
 * its cases become an unlabelled nnU-Net dataset, preprocessed into the downstream cache
 * (downstream_cache.ts: RAS, crop to non-zero, per-channel z-score, resampled to the target spacing;
 * resumable), then loaded whole. Before any voxel is read, the labels must name at least two classes and
 * every image header is checked: one 3D volume per channel column (a 4D file is a channel-count
 * mistake), named with its case and CSV line.
 *
 * @module
 */
import { basename } from "node:path";
import { DataFileError, readNiftiHeader, type Shape3 } from "../../data/mod.ts";
import { preprocessNnunetDataset } from "../downstream_cache.ts";
import { loadDownstreamDataset } from "../load_cases.ts";
import type { NnunetDataset } from "../nnunet_dataset.ts";
import type { ClassificationVolume } from "./batches.ts";
import type { ClassificationDataset } from "./dataset_csv.ts";

/** A classification dataset preprocessed and in memory. */
export interface ClassificationData {
  /** The CSV file. */
  name: string;
  /** Class names (a volume's `classIndex` indexes them). */
  classes: string[];
  /** The image columns, in channel order. */
  channelNames: string[];
  /** The spacing [D, H, W] mm the cases were resampled to (null: as they were). */
  spacing: [number, number, number] | null;
  /** The cases, in CSV order. */
  cases: ClassificationVolume[];
  /** Each case's first image file (for the per-case results). */
  sources: Record<string, string>;
}

/** Options of {@link loadClassificationData}. */
export interface ClassificationDataOptions {
  /** Target spacing, "median" (nnU-Net's rule over the CSV's cases; default) or "none". */
  spacing?: Shape3 | "median" | "none";
  /** Called after each case is preprocessed (or found in the cache). */
  onProgress?: (done: number, total: number, id: string) => void;
}

/** Checks that every image is one 3D volume; errors name the case, its CSV line and the file. */
export async function checkClassificationImages(dataset: ClassificationDataset): Promise<void> {
  for (const [i, c] of dataset.cases.entries()) {
    for (const [k, path] of c.images.entries()) {
      const header = await readNiftiHeader(path);
      if (header.frames !== 1) {
        throw new DataFileError(
          dataset.path,
          `case ${c.id} (line ${i + 2}): ${path} holds ${header.frames} volumes (dims ${
            header.dims.join("×")
          }); expected one 3D volume per channel column (` +
            `${dataset.cases[0].images.length === 1 ? "image" : `image_${String(k).padStart(4, "0")}`}; ` +
            "several channels go in image_0000, image_0001, … columns)",
        );
      }
    }
  }
}

/** The channel column names of a dataset with `channels` images per case. */
export function channelColumns(channels: number): string[] {
  return channels === 1
    ? ["image"]
    : Array.from({ length: channels }, (_, k) => `image_${String(k).padStart(4, "0")}`);
}

/**
 * Preprocesses the CSV's cases into `cacheDir` (resumable) and loads them. Errors are `DataFileError`s
 * naming the file (and, for the CSV's images, the case).
 */
export async function loadClassificationData(
  dataset: ClassificationDataset,
  cacheDir: string,
  options: ClassificationDataOptions = {},
): Promise<ClassificationData> {
  if (dataset.classes.length < 2) {
    throw new DataFileError(
      dataset.path,
      `only one class (${dataset.classes.join("")}) in the label column; classification needs at least 2`,
    );
  }
  // the cache names a case's files by its id with other characters as "_" (downstream_cache.ts)
  const stems = new Map<string, string>();
  for (const c of dataset.cases) {
    const stem = c.id.replace(/[^A-Za-z0-9._-]/g, "_");
    const other = stems.get(stem);
    if (other !== undefined) {
      throw new DataFileError(
        dataset.path,
        `cases "${other}" and "${c.id}" would share the cache file ${stem}.vxc: give them ids that differ ` +
          "in letters, digits, '.', '_' or '-'",
      );
    }
    stems.set(stem, c.id);
  }
  await checkClassificationImages(dataset);
  const channelNames = channelColumns(dataset.cases[0].images.length);
  const raw: NnunetDataset = {
    root: dataset.path,
    name: basename(dataset.path),
    channels: channelNames,
    labels: { background: 0 },
    foreground: [],
    fileEnding: ".nii.gz",
    training: dataset.cases.map((c) => ({ id: c.id, images: c.images })),
    test: [],
  };
  const { manifest } = await preprocessNnunetDataset(raw, cacheDir, {
    spacing: options.spacing ?? "median",
    onProgress: options.onProgress,
  });
  const loaded = await loadDownstreamDataset(cacheDir, dataset.cases.map((c) => c.id));
  const classOf = new Map(dataset.cases.map((c) => [c.id, c.classIndex]));
  const spacing = manifest.parameters.targetSpacing;
  return {
    name: dataset.path,
    classes: dataset.classes,
    channelNames,
    spacing: spacing ? [spacing[0], spacing[1], spacing[2]] : null,
    cases: loaded.cases.map((c) => ({
      id: c.id,
      image: c.image,
      shape: c.shape,
      classIndex: classOf.get(c.id)!,
    })),
    sources: Object.fromEntries(dataset.cases.map((c) => [c.id, c.images[0]])),
  };
}
