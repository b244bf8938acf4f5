/**
 * A tiny synthetic classification dataset written by tests: NIfTI volumes of non-zero noise where class
 * "blob" holds a bright 4³ cube at a seeded place and class "none" holds none, and the CSV naming them.
 */
import { join } from "node:path";
import { writeNifti } from "../../../../core/data/nifti_write.ts";
import type { Shape3 } from "../../../../core/data/volume.ts";
import { seededRandom } from "../../../helpers.ts";

/** Options of {@link writeBlobDataset}. */
export interface BlobDatasetOptions {
  /** Cases per class (default 6). */
  perClass?: number;
  /** Volume shape (default 8³). */
  shape?: Shape3;
  seed?: number;
}

/** Writes `<dir>/images/*.nii.gz` and `<dir>/labels.csv` (columns image,label); returns the CSV path. */
export async function writeBlobDataset(dir: string, options: BlobDatasetOptions = {}): Promise<string> {
  const perClass = options.perClass ?? 6;
  const shape = options.shape ?? [8, 8, 8];
  const [D, H, W] = shape;
  const next = seededRandom(options.seed ?? 11);
  await Deno.mkdir(join(dir, "images"), { recursive: true });
  const rows = ["image,label"];
  for (let n = 0; n < 2 * perClass; n++) {
    const blob = n % 2 === 1;
    const data = new Float32Array(D * H * W);
    // noise never reaches 0, so cropping to non-zero keeps the whole volume
    for (let i = 0; i < data.length; i++) data[i] = 1 + next();
    if (blob) {
      const at = [0, 1, 2].map((a) => Math.floor(next() * (shape[a] - 3)));
      for (let d = 0; d < 4; d++) {
        for (let h = 0; h < 4; h++) {
          for (let w = 0; w < 4; w++) data[((at[0] + d) * H + at[1] + h) * W + at[2] + w] = 8 + next();
        }
      }
    }
    const name = `case_${String(n).padStart(2, "0")}.nii.gz`;
    await writeNifti(join(dir, "images", name), {
      data,
      shape,
      affine: [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1],
    });
    rows.push(`images/${name},${blob ? "blob" : "none"}`);
  }
  const csv = join(dir, "labels.csv");
  await Deno.writeTextFile(csv, rows.join("\n") + "\n");
  return csv;
}
