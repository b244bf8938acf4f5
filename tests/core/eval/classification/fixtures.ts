/**
 * A tiny synthetic classification dataset written by tests: NIfTI volumes of non-zero noise, each with a
 * cube at a seeded place that is bright (class "bright") or dark (class "dark"), and the CSV naming
 * them. The class is in the content alone: both classes share the background, the cube's size and the
 * spread of its place.
 */
import { join } from "node:path";
import { writeNifti } from "../../../../core/data/nifti_write.ts";
import type { Shape3 } from "../../../../core/data/volume.ts";
import { seededRandom } from "../../../helpers.ts";

/** Options of {@link writeCubeDataset}. */
export interface CubeDatasetOptions {
  /** Cases per class (default 6). */
  perClass?: number;
  /** Volume shape (default 8³). */
  shape?: Shape3;
  /** Edge of the cube (default 4). */
  cube?: number;
  seed?: number;
}

/** Writes `<dir>/images/*.nii.gz` and `<dir>/labels.csv` (columns image,label); returns the CSV path. */
export async function writeCubeDataset(dir: string, options: CubeDatasetOptions = {}): Promise<string> {
  const perClass = options.perClass ?? 6;
  const shape = options.shape ?? [8, 8, 8];
  const [D, H, W] = shape;
  const cube = options.cube ?? 4;
  const next = seededRandom(options.seed ?? 11);
  await Deno.mkdir(join(dir, "images"), { recursive: true });
  const rows = ["image,label"];
  for (let n = 0; n < 2 * perClass; n++) {
    const bright = n % 2 === 1;
    const data = new Float32Array(D * H * W);
    // background 5 + U[0, 1): never 0, so cropping to non-zero keeps the whole volume
    for (let i = 0; i < data.length; i++) data[i] = 5 + next();
    const at = [0, 1, 2].map((a) => Math.floor(next() * (shape[a] - cube + 1)));
    for (let d = 0; d < cube; d++) {
      for (let h = 0; h < cube; h++) {
        for (let w = 0; w < cube; w++) {
          data[((at[0] + d) * H + at[1] + h) * W + at[2] + w] = (bright ? 9 : 1) + next();
        }
      }
    }
    const name = `case_${String(n).padStart(2, "0")}.nii.gz`;
    await writeNifti(join(dir, "images", name), {
      data,
      shape,
      affine: [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1],
    });
    rows.push(`images/${name},${bright ? "bright" : "dark"}`);
  }
  const csv = join(dir, "labels.csv");
  await Deno.writeTextFile(csv, rows.join("\n") + "\n");
  return csv;
}
