/**
 * Reading an nnU-Net raw dataset as it is on disk (nnU-Net v2 layout, docs/downstream.md):
 *
 * ```
 * <root>/dataset.json                       channel_names (or v1 `modality`), labels, numTraining, file_ending
 * <root>/imagesTr/<case>_0000<ending> …     one file per channel, 4-digit channel index
 * <root>/labelsTr/<case><ending>            integer label map, same geometry as the images
 * <root>/imagesTs/<case>_0000<ending> …     optional, unlabelled
 * ```
 *
 * Only the layout is checked here (files present, names well formed, counts); voxel-level checks
 * (geometry, label values) happen when a case is read (case_preprocess.ts). Every problem found is
 * collected and reported at once, each line naming the file and what was expected.
 *
 * @module
 */
import { join } from "node:path";
import { DataFileError } from "../data/mod.ts";

/** One case: its channel files in channel order and, for training cases, its label file. */
export interface NnunetCase {
  /** Case identifier (file name without channel suffix and ending), e.g. `hippocampus_001`. */
  id: string;
  /** Image file of each channel, index = channel (`<id>_0000<ending>`, `<id>_0001<ending>`, …). */
  images: string[];
  /** Label file (`labelsTr/<id><ending>`); absent for `imagesTs` cases. */
  label?: string;
}

/** A parsed nnU-Net raw dataset. */
export interface NnunetDataset {
  /** The dataset folder. */
  root: string;
  /** `name` from dataset.json (the folder name when absent). */
  name: string;
  /** Channel names in channel order (from `channel_names`, or v1's `modality`). */
  channels: string[];
  /** Label name → integer value, background (0) included. */
  labels: Record<string, number>;
  /** Foreground label values, ascending (every declared value except 0). */
  foreground: number[];
  /** File ending of every image and label (default `.nii.gz`). */
  fileEnding: string;
  /** `imagesTr` cases, sorted by id, each with its label. */
  training: NnunetCase[];
  /** `imagesTs` cases (no labels), sorted by id; empty when the folder is absent. */
  test: NnunetCase[];
}

/** Everything wrong with a dataset, each line `file: problem` (thrown by {@link readNnunetDataset}). */
export class DatasetProblemsError extends DataFileError {
  /** Each problem found, with its file. */
  readonly problems: { path: string; problem: string }[];

  /** An error for the dataset at `root` listing `problems`. */
  constructor(root: string, problems: { path: string; problem: string }[]) {
    super(
      problems.length === 1 ? problems[0].path : root,
      problems.length === 1
        ? problems[0].problem
        : `${problems.length} problems:\n` + problems.map((p) => `  ${p.path}: ${p.problem}`).join("\n"),
    );
    this.name = "DatasetProblemsError";
    this.problems = problems;
  }
}

function parseIndexedNames(raw: unknown, field: string, path: string): string[] {
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) {
    throw new DataFileError(path, `"${field}" must be an object {"0": "<name>", …}`);
  }
  const entries = Object.entries(raw as Record<string, unknown>);
  const names: string[] = [];
  for (const [key, value] of entries) {
    const index = Number(key);
    if (!Number.isInteger(index) || index < 0 || index >= entries.length) {
      throw new DataFileError(
        path,
        `"${field}" keys must be 0..${entries.length - 1}, got "${key}"`,
      );
    }
    names[index] = String(value);
  }
  return names;
}

/**
 * Parses dataset.json's `labels`: v2's `{"background": 0, "liver": 1}` or v1's `{"0": "background", …}`.
 * Region-based labels (a list of values per name) are not supported and rejected.
 */
function parseLabels(raw: unknown, path: string): Record<string, number> {
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) {
    throw new DataFileError(path, `"labels" must be an object {"background": 0, "<name>": 1, …}`);
  }
  const labels: Record<string, number> = {};
  for (const [key, value] of Object.entries(raw as Record<string, unknown>)) {
    if (typeof value === "number") labels[key] = value;
    else if (typeof value === "string" && /^\d+$/.test(key)) labels[value] = Number(key); // v1 layout
    else if (Array.isArray(value)) {
      throw new DataFileError(path, `label "${key}" is a region (list of values): not supported`);
    } else {throw new DataFileError(
        path,
        `label "${key}" must map to an integer, got ${JSON.stringify(value)}`,
      );}
  }
  for (const [name, value] of Object.entries(labels)) {
    if (!Number.isInteger(value) || value < 0 || value > 255) {
      throw new DataFileError(path, `label "${name}" has value ${value}; expected an integer 0..255`);
    }
  }
  if (!Object.values(labels).includes(0)) {
    throw new DataFileError(path, `"labels" has no background (value 0)`);
  }
  if (new Set(Object.values(labels)).size !== Object.keys(labels).length) {
    throw new DataFileError(path, `"labels" gives two names the same value`);
  }
  return labels;
}

async function listFiles(dir: string): Promise<string[] | undefined> {
  try {
    const names: string[] = [];
    for await (const entry of Deno.readDir(dir)) if (entry.isFile) names.push(entry.name);
    return names.sort();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

const CHANNEL_SUFFIX = /^(.+)_(\d{4})$/;

/** Groups `<id>_<cccc><ending>` files into cases, recording every malformed or missing file. */
function groupCases(
  dir: string,
  names: string[],
  fileEnding: string,
  channels: number,
  problems: { path: string; problem: string }[],
): NnunetCase[] {
  const byCase = new Map<string, Map<number, string>>();
  for (const name of names) {
    if (name.startsWith(".")) continue;
    const path = join(dir, name);
    if (!name.endsWith(fileEnding)) {
      problems.push({
        path,
        problem: `expected a file ending in "${fileEnding}" (dataset.json file_ending)`,
      });
      continue;
    }
    const match = CHANNEL_SUFFIX.exec(name.slice(0, -fileEnding.length));
    if (!match) {
      problems.push({
        path,
        problem: `expected <case>_<4-digit channel>${fileEnding}, e.g. case_0000${fileEnding}`,
      });
      continue;
    }
    const channel = Number(match[2]);
    if (channel >= channels) {
      problems.push({
        path,
        problem: `channel ${channel} but dataset.json declares ${channels} channel(s) (0..${channels - 1})`,
      });
      continue;
    }
    if (!byCase.has(match[1])) byCase.set(match[1], new Map());
    byCase.get(match[1])!.set(channel, path);
  }
  const cases: NnunetCase[] = [];
  for (const [id, files] of [...byCase].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const images: string[] = [];
    for (let c = 0; c < channels; c++) {
      const path = files.get(c) ?? join(dir, `${id}_${String(c).padStart(4, "0")}${fileEnding}`);
      if (!files.has(c)) {
        problems.push({
          path,
          problem: `missing: case ${id} has no channel ${c} (dataset.json declares ${channels})`,
        });
      }
      images.push(path);
    }
    cases.push({ id, images });
  }
  return cases;
}

/**
 * Reads an nnU-Net raw dataset folder: dataset.json and the case lists of `imagesTr`/`labelsTr` (and
 * `imagesTs` when present). Throws a {@link DatasetProblemsError} listing every layout problem (missing
 * channel or label file, malformed name, a label without image, `numTraining` that disagrees), and a
 * `DataFileError` for an unusable dataset.json.
 *
 * @example
 * ```ts ignore
 * import { readNnunetDataset } from "@voxssl/core";
 * const ds = await readNnunetDataset("../shared/data/hippocampus");
 * console.log(ds.channels, ds.foreground, ds.training.length); // ["MRI"] [1, 2] 129
 * ```
 */
export async function readNnunetDataset(root: string): Promise<NnunetDataset> {
  const jsonPath = join(root, "dataset.json");
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(await Deno.readTextFile(jsonPath));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new DataFileError(jsonPath, "missing: an nnU-Net raw dataset folder holds a dataset.json");
    }
    throw new DataFileError(jsonPath, `not valid JSON (${(error as Error).message})`);
  }
  if (!json || typeof json !== "object") throw new DataFileError(jsonPath, "expected a JSON object");
  const channelField = json.channel_names !== undefined ? "channel_names" : "modality";
  if (json[channelField] === undefined) {
    throw new DataFileError(jsonPath, `missing "channel_names" (or v1 "modality")`);
  }
  const channels = parseIndexedNames(json[channelField], channelField, jsonPath);
  if (json.labels === undefined) throw new DataFileError(jsonPath, `missing "labels"`);
  const labels = parseLabels(json.labels, jsonPath);
  const fileEnding = json.file_ending === undefined ? ".nii.gz" : String(json.file_ending);
  if (!/\.nii(\.gz)?$/.test(fileEnding)) {
    throw new DataFileError(
      jsonPath,
      `file_ending "${fileEnding}": voxssl reads NIfTI (.nii or .nii.gz) only`,
    );
  }

  const problems: { path: string; problem: string }[] = [];
  const imagesTr = join(root, "imagesTr");
  const labelsTr = join(root, "labelsTr");
  const trainNames = await listFiles(imagesTr);
  if (!trainNames) throw new DataFileError(imagesTr, "missing: the training images folder");
  const labelNames = await listFiles(labelsTr);
  if (!labelNames) throw new DataFileError(labelsTr, "missing: the training labels folder");
  const training = groupCases(imagesTr, trainNames, fileEnding, channels.length, problems);
  const labelSet = new Set(labelNames.filter((n) => !n.startsWith(".")));
  for (const c of training) {
    const name = `${c.id}${fileEnding}`;
    c.label = join(labelsTr, name);
    if (!labelSet.delete(name)) {
      problems.push({ path: c.label, problem: `missing: the label of case ${c.id}` });
    }
  }
  for (const name of labelSet) {
    problems.push({
      path: join(labelsTr, name),
      problem: `label without an image (expected imagesTr/${name.replace(fileEnding, "")}_0000${fileEnding})`,
    });
  }
  if (json.numTraining !== undefined && json.numTraining !== training.length) {
    problems.push({
      path: jsonPath,
      problem: `numTraining is ${json.numTraining} but imagesTr holds ${training.length} case(s)`,
    });
  }
  const testDir = join(root, "imagesTs");
  const testNames = await listFiles(testDir);
  const test = testNames ? groupCases(testDir, testNames, fileEnding, channels.length, problems) : [];
  if (problems.length > 0) throw new DatasetProblemsError(root, problems);
  return {
    root,
    name: typeof json.name === "string" ? json.name : root.split("/").filter(Boolean).pop() ?? root,
    channels,
    labels,
    foreground: Object.values(labels).filter((v) => v !== 0).sort((a, b) => a - b),
    fileEnding,
    training,
    test,
  };
}

/**
 * Lists the cases of a folder of images named like `imagesTs` (`<case>_0000<ending>`, …), for
 * predicting a folder that is not part of a dataset. Throws a {@link DatasetProblemsError} for malformed
 * names or missing channels.
 */
export async function listCaseFolder(
  dir: string,
  channels: number,
  fileEnding = ".nii.gz",
): Promise<NnunetCase[]> {
  const names = await listFiles(dir);
  if (!names) {
    throw new DataFileError(dir, "missing: expected a folder of <case>_0000" + fileEnding + " files");
  }
  const problems: { path: string; problem: string }[] = [];
  const cases = groupCases(dir, names, fileEnding, channels, problems);
  if (problems.length > 0) throw new DatasetProblemsError(dir, problems);
  if (cases.length === 0) throw new DataFileError(dir, `no <case>_0000${fileEnding} images found`);
  return cases;
}
