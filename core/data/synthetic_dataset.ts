/**
 * Writes a synthetic dataset of phantoms to a folder of NIfTI files, in the OpenMind layout (with the
 * `<name>__Data/` mask folders and an `openneuro_metadata.csv`) or flat. Tests of `index`, `preprocess`
 * and the loader run on these; `varyGeometry` stores each volume in a random axis order, flip and
 * anisotropic spacing (world positions kept) so reorientation and resampling are exercised.
 *
 * @module
 */
import { join } from "node:path";
import { writeNifti } from "./nifti_write.ts";
import { createRng, type Rng } from "./rng.ts";
import { generatePhantom, type PhantomModality } from "./synthetic.ts";
import { type Affine, mulAffine, type Shape3 } from "./volume.ts";

/** Options of {@link writeSyntheticDataset}. */
export interface SyntheticDatasetOptions {
  /** Number of images. */
  count: number;
  /** Phantom shape `[D, H, W]` (default 32³). */
  shape?: Shape3;
  /** Seed of the set: the same seed writes the same files (default 0). */
  seed?: number;
  /** `"openmind"` (default): `OpenMind/ds…/sub-…/[ses-…/]anat/…` plus masks and CSV; `"flat"`: `<name>.nii.gz`. */
  layout?: "openmind" | "flat";
  /** Write `.nii.gz` (default) or `.nii`. */
  gzip?: boolean;
  /** Random orientation, flips and anisotropic spacing per volume (default false: RAS, 1 mm). */
  varyGeometry?: boolean;
  /** Modalities cycled over the images (default T1w only). */
  modalities?: PhantomModality[];
  /** Images per subject (sessions) in the OpenMind layout (default 1). */
  sessionsPerSubject?: number;
  /** Subjects per dataset in the OpenMind layout (default 4). */
  subjectsPerDataset?: number;
  /** Also write label maps (`<name>_labels.nii.gz`, beside the image). */
  labels?: boolean;
}

/** One written image and its companions (absolute paths). */
export interface SyntheticFile {
  /** The image file. */
  image: string;
  /** Its anatomy (foreground) mask. */
  anatomyMask?: string;
  /** Its deface mask. */
  defaceMask?: string;
  /** Its label map (with `labels: true`). */
  labels?: string;
  /** Dataset key. */
  dataset: string;
  /** Subject key. */
  subject: string;
  /** Session key. */
  session: string;
  /** Contrast of the image. */
  modality: PhantomModality;
  /** Image quality score written to the CSV (1 best … 5 worst). */
  qualityScore: number;
  /** Voxel size `[sd, sh, sw]` in canonical (RAS) order, i.e. after reorientation. */
  spacing: Shape3;
}

/** What {@link writeSyntheticDataset} wrote. */
export interface SyntheticDataset {
  /** The folder written to. */
  root: string;
  /** Every image written, in order. */
  files: SyntheticFile[];
  /** `openneuro_metadata.csv` (OpenMind layout only). */
  csv?: string;
}

/** Stores `data` (canonical, shape `[D,H,W]`) through a random permutation and flip of the NIfTI axes. */
function scramble<T extends Float32Array | Uint8Array>(
  data: T,
  shape: Shape3,
  affine: Affine,
  perm: number[],
  flips: boolean[],
) {
  const oldN = [shape[2], shape[1], shape[0]];
  const newN = perm.map((p) => oldN[p]);
  const out = new (data.constructor as new (n: number) => T)(data.length);
  const T = new Array<number>(16).fill(0);
  T[15] = 1;
  for (let a = 0; a < 3; a++) {
    T[perm[a] * 4 + a] = flips[a] ? -1 : 1;
    T[perm[a] * 4 + 3] = flips[a] ? oldN[perm[a]] - 1 : 0;
  }
  const oldStride = [1, oldN[0], oldN[0] * oldN[1]];
  let o = 0;
  for (let k = 0; k < newN[2]; k++) {
    for (let j = 0; j < newN[1]; j++) {
      for (let i = 0; i < newN[0]; i++) {
        const nw = [i, j, k];
        let src = 0;
        for (let a = 0; a < 3; a++) {
          src += (flips[a] ? oldN[perm[a]] - 1 - nw[a] : nw[a]) * oldStride[perm[a]];
        }
        out[o++] = data[src];
      }
    }
  }
  return { data: out, shape: [newN[2], newN[1], newN[0]] as Shape3, affine: mulAffine(affine, T) };
}

function randomGeometry(rng: Rng): { perm: number[]; flips: boolean[]; spacing: Shape3 } {
  const perms = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
  const thick = rng.int(3);
  const spacing: Shape3 = [1, 1, 1];
  spacing[thick] = rng.uniform(1.2, 2.5);
  return { perm: perms[rng.int(6)], flips: [rng.chance(0.5), rng.chance(0.5), rng.chance(0.5)], spacing };
}

function csvField(value: string | number | undefined): string {
  if (value === undefined) return "";
  const text = String(value);
  return /[",\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/**
 * Generates `count` phantoms and writes them under `root`. The same options always give the same files.
 *
 * @example
 * ```ts
 * const root = await Deno.makeTempDir();
 * const { files, csv } = await writeSyntheticDataset(root, { count: 2, shape: [8, 8, 8], varyGeometry: true });
 * console.log(files.length, csv !== undefined); // 2 true
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export async function writeSyntheticDataset(
  root: string,
  options: SyntheticDatasetOptions,
): Promise<SyntheticDataset> {
  const layout = options.layout ?? "openmind";
  const ext = options.gzip === false ? ".nii" : ".nii.gz";
  const seed = options.seed ?? 0;
  const perSubject = options.sessionsPerSubject ?? 1;
  const perDataset = options.subjectsPerDataset ?? 4;
  const modalities = options.modalities ?? ["T1w"];
  const files: SyntheticFile[] = [];
  const base = layout === "openmind" ? join(root, "OpenMind") : root;
  for (let index = 0; index < options.count; index++) {
    const rng = createRng(seed, "dataset", index);
    const geometry = options.varyGeometry
      ? randomGeometry(rng)
      : { perm: [0, 1, 2], flips: [false, false, false], spacing: [1, 1, 1] as Shape3 };
    const modality = modalities[index % modalities.length];
    const phantom = generatePhantom({
      shape: options.shape ?? [32, 32, 32],
      spacing: geometry.spacing,
      seed,
      index,
      modality,
      deface: layout === "openmind",
    });
    const subjectIndex = Math.floor(index / perSubject);
    const dataset = `ds${String(1 + Math.floor(subjectIndex / perDataset)).padStart(6, "0")}`;
    const subject = `sub-${String(subjectIndex + 1).padStart(2, "0")}`;
    const session = perSubject > 1
      ? `ses-${String((index % perSubject) + 1).padStart(2, "0")}`
      : "ses-DEFAULT";
    const name = layout === "openmind"
      ? `${subject}${perSubject > 1 ? `_${session}` : ""}_${modality}`
      : `case_${String(index).padStart(3, "0")}_${modality}`;
    const folder = layout === "openmind"
      ? join(base, dataset, subject, ...(perSubject > 1 ? [session] : []), "anat")
      : base;
    await Deno.mkdir(folder, { recursive: true });
    const write = async (path: string, data: Float32Array | Uint8Array, datatype: "int16" | "uint8") => {
      const stored = scramble(data, phantom.shape, phantom.affine, geometry.perm, geometry.flips);
      await writeNifti(path, stored, { datatype });
      return path;
    };
    // images stored as int16 like most scanners, scaled to a typical range
    const image = await write(join(folder, name + ext), phantom.image.map((v) => v * 1000), "int16");
    const file: SyntheticFile = {
      image,
      dataset,
      subject,
      session,
      modality,
      qualityScore: 1 + rng.int(9) * 0.5,
      spacing: geometry.spacing,
    };
    if (layout === "openmind") {
      const dataDir = join(folder, `${name}__Data`);
      await Deno.mkdir(dataDir, { recursive: true });
      file.anatomyMask = await write(join(dataDir, "fb_mask" + ext), phantom.anatomy, "uint8");
      file.defaceMask = await write(join(dataDir, "deface_mask" + ext), phantom.deface, "uint8");
    }
    if (options.labels) {
      file.labels = await write(join(folder, `${name}_labels${ext}`), phantom.labels, "uint8");
    }
    files.push(file);
  }
  if (layout !== "openmind") return { root, files };
  const header = [
    "image_path",
    "modality",
    "unique_id",
    "age",
    "sex",
    "image_quality_score",
    "anon_mask_path",
    "anat_mask_path",
  ];
  const rel = (p?: string) => (p ? p.slice(base.length + 1) : undefined);
  const rows = files.map((f, i) =>
    [
      rel(f.image),
      f.modality,
      `${f.dataset}_${String(i).padStart(5, "0")}`,
      20 + (i % 50),
      i % 2 ? "F" : "M",
      f.qualityScore,
      rel(f.defaceMask),
      rel(f.anatomyMask),
    ]
      .map(csvField).join(",")
  );
  const csv = join(root, "openneuro_metadata.csv");
  await Deno.writeTextFile(csv, [header.join(","), ...rows].join("\n") + "\n");
  return { root, files, csv };
}
