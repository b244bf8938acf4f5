/**
 * The classification dataset format: a CSV file with a header row, one case per row.
 *
 *     image,label                        one image per case
 *     image_0000,image_0001,label        several channels (nnU-Net's _0000 … _000N order)
 *     case,image,label                   an optional case id (default: the first image's file name)
 *
 * Image paths are relative to the CSV's folder (or absolute). Labels are strings ("0", "AD", "control");
 * the classes are the sorted distinct labels of the training CSV (numeric labels in numeric order), and a
 * test CSV given those classes refuses a label outside them. Every problem names the file, the line and
 * what was expected.
 *
 * @module
 */
import { basename, isAbsolute, resolve } from "node:path";
import { parseCsv } from "../../data/csv.ts";
import { DataFileError } from "../../data/errors.ts";

/** One case of a classification dataset. */
export interface ClassificationCase {
  /** Case id. */
  id: string;
  /** Absolute image paths, one per channel. */
  images: string[];
  /** The label as written. */
  label: string;
  /** Index of the label in the dataset's classes. */
  classIndex: number;
}

/** A parsed classification CSV. */
export interface ClassificationDataset {
  /** The CSV file. */
  path: string;
  /** Class names; a case's `classIndex` indexes this list. */
  classes: string[];
  /** The cases, in file order. */
  cases: ClassificationCase[];
}

/** Options of {@link parseClassificationCsv}. */
export interface ClassificationCsvOptions {
  /** The classes (e.g. a training set's): labels outside them are errors. Default: the CSV's own labels. */
  classes?: string[];
  /** Check that every image file exists (default true). */
  checkFiles?: boolean;
}

function sortClasses(labels: Iterable<string>): string[] {
  const list = [...new Set(labels)];
  const numeric = list.every((l) => l.trim() !== "" && Number.isFinite(Number(l)));
  return numeric ? list.sort((a, b) => Number(a) - Number(b)) : list.sort();
}

/** Parses and validates classification CSV text read from `path` (used to resolve relative paths). */
export async function parseClassificationCsv(
  text: string,
  path: string,
  options: ClassificationCsvOptions = {},
): Promise<ClassificationDataset> {
  const rows = parseCsv(text);
  const fail = (problem: string): never => {
    throw new DataFileError(path, problem);
  };
  if (rows.length === 0) fail("empty file: expected a header row such as image,label");
  const header = rows[0].map((h) => h.trim());
  const labelColumn = header.indexOf("label");
  const caseColumn = header.indexOf("case");
  const single = header.indexOf("image");
  const channels = header.filter((h) => /^image_\d{4}$/.test(h)).sort();
  if (labelColumn < 0 || (single < 0 && channels.length === 0)) {
    fail(
      `header "${rows[0].join(",")}": expected the columns image (or image_0000, image_0001, …) and label`,
    );
  }
  if (single >= 0 && channels.length > 0) {
    fail("header: use either image or image_0000, image_0001, …, not both");
  }
  channels.forEach((c, i) => {
    if (c !== `image_${String(i).padStart(4, "0")}`) {
      fail(`header: channel columns must be image_0000 … without gaps (found ${channels.join(", ")})`);
    }
  });
  const known = new Set(header);
  if (known.size !== header.length) fail(`header "${rows[0].join(",")}": a column name repeats`);
  const unknown = header.filter((h) =>
    h !== "label" && h !== "case" && h !== "image" && !/^image_\d{4}$/.test(h)
  );
  if (unknown.length > 0) {
    fail(`header: unknown column(s) ${unknown.join(", ")} (expected case, image or image_NNNN, label)`);
  }
  const imageColumns = single >= 0 ? [single] : channels.map((c) => header.indexOf(c));
  const base = resolve(path, "..");

  const parsed: Omit<ClassificationCase, "classIndex">[] = [];
  const ids = new Set<string>();
  for (let r = 1; r < rows.length; r++) {
    const row = rows[r];
    const line = r + 1;
    if (row.every((f) => f.trim() === "")) continue;
    if (row.length !== header.length) {
      fail(`line ${line}: ${row.length} fields, the header has ${header.length}`);
    }
    const label = row[labelColumn].trim();
    if (label === "") fail(`line ${line}: empty label`);
    const images = imageColumns.map((c) => {
      const p = row[c].trim();
      if (p === "") fail(`line ${line}: empty image path in column ${header[c]}`);
      return isAbsolute(p) ? p : resolve(base, p);
    });
    const id = caseColumn >= 0
      ? row[caseColumn].trim()
      : basename(images[0]).replace(/(_\d{4})?\.nii(\.gz)?$/, "");
    if (id === "") fail(`line ${line}: empty case id`);
    if (ids.has(id)) fail(`line ${line}: case ${id} appears twice`);
    ids.add(id);
    parsed.push({ id, images, label });
  }
  if (parsed.length === 0) fail("no cases: expected one row per case after the header");
  const classes = options.classes ?? sortClasses(parsed.map((c) => c.label));
  const index = new Map(classes.map((c, i) => [c, i]));
  const cases = parsed.map((c, i) => {
    const classIndex = index.get(c.label);
    if (classIndex === undefined) {
      fail(
        `case ${c.id} (line ${i + 2}): unknown label "${c.label}" (expected one of ${classes.join(", ")})`,
      );
    }
    return { ...c, classIndex: classIndex! };
  });
  if (options.checkFiles ?? true) {
    for (const c of cases) {
      for (const image of c.images) {
        const stat = await Deno.stat(image).catch(() => undefined);
        if (!stat?.isFile) fail(`case ${c.id}: image file ${image} not found`);
      }
    }
  }
  return { path, classes, cases };
}

/** Reads and validates a classification CSV file. */
export async function readClassificationCsv(
  path: string,
  options: ClassificationCsvOptions = {},
): Promise<ClassificationDataset> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new DataFileError(path, `cannot read it (${(error as Error).message})`, { cause: error });
  }
  return parseClassificationCsv(text, path, options);
}
