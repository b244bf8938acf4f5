/**
 * Tiny synthetic nnU-Net raw datasets written by tests: random channels inside a non-zero box, a label
 * map of ellipsoid-ish blobs, any affine (anisotropic, flipped) and channel count.
 */
import { join } from "node:path";
import { writeNifti } from "../../../core/data/nifti_write.ts";
import type { Affine, Shape3 } from "../../../core/data/volume.ts";
import { seededRandom } from "../../helpers.ts";

/** One synthetic case's content (what the test compares against). */
export interface SyntheticCase {
  id: string;
  channels: Float32Array[];
  label: Uint8Array;
  shape: Shape3;
  affine: Affine;
}

/** Options of {@link writeTinyDataset}. */
export interface TinyDatasetOptions {
  cases?: number;
  channels?: number;
  shape?: Shape3;
  /** Voxel sizes `[sw, sh, sd]` of NIfTI axes i, j, k (default [1, 1, 3]: anisotropic). */
  affine?: Affine;
  labels?: Record<string, number>;
  seed?: number;
  /** A zero margin of this many voxels around the image (default 1). */
  margin?: number;
}

/** An affine with spacing `[sd, sh, sw]` and optional flips of NIfTI axes i, j (LPS-like). */
export function diagonalAffine(spacing: Shape3, flip = false): Affine {
  const [sd, sh, sw] = spacing;
  const f = flip ? -1 : 1;
  return [f * sw, 0, 0, 3, 0, f * sh, 0, -2, 0, 0, sd, 5, 0, 0, 0, 1];
}

/** Writes a dataset folder (dataset.json, imagesTr, labelsTr) and returns what it holds. */
export async function writeTinyDataset(
  root: string,
  options: TinyDatasetOptions = {},
): Promise<SyntheticCase[]> {
  const count = options.cases ?? 2;
  const channels = options.channels ?? 1;
  const shape = options.shape ?? [6, 10, 9];
  const affine = options.affine ?? diagonalAffine([3, 1, 1]);
  const labels = options.labels ?? { background: 0, a: 1, b: 2 };
  const margin = options.margin ?? 1;
  const next = seededRandom(options.seed ?? 7);
  await Deno.mkdir(join(root, "imagesTr"), { recursive: true });
  await Deno.mkdir(join(root, "labelsTr"), { recursive: true });
  const [D, H, W] = shape;
  const out: SyntheticCase[] = [];
  for (let n = 0; n < count; n++) {
    const id = `case_${String(n).padStart(3, "0")}`;
    const chans: Float32Array[] = [];
    for (let c = 0; c < channels; c++) {
      const data = new Float32Array(D * H * W);
      for (let d = 0; d < D; d++) {
        for (let h = 0; h < H; h++) {
          for (let w = 0; w < W; w++) {
            const inside = d >= margin && d < D - margin && h >= margin && h < H - margin && w >= margin &&
              w < W - margin;
            // channel c shifted and scaled differently, never 0 inside
            if (inside) data[(d * H + h) * W + w] = 10 * (c + 1) + 50 * next() + 1;
          }
        }
      }
      chans.push(data);
      await writeNifti(join(root, "imagesTr", `${id}_${String(c).padStart(4, "0")}.nii.gz`), {
        data,
        shape,
        affine,
      });
    }
    const label = new Uint8Array(D * H * W);
    const fg = Object.values(labels).filter((v) => v !== 0);
    for (let i = 0; i < label.length; i++) {
      const h = Math.floor(i / W) % H;
      const w = i % W;
      if (h >= margin + 1 && h < H - margin - 1 && w >= margin + 1 && w < W - margin - 1) {
        label[i] = fg[(h + w + n) % fg.length];
      }
    }
    await writeNifti(join(root, "labelsTr", `${id}.nii.gz`), { data: label, shape, affine }, {
      datatype: "uint8",
    });
    out.push({ id, channels: chans, label, shape, affine });
  }
  const channelNames = Object.fromEntries(Array.from({ length: channels }, (_, c) => [String(c), `MR${c}`]));
  await Deno.writeTextFile(
    join(root, "dataset.json"),
    JSON.stringify({
      name: "tiny",
      channel_names: channelNames,
      labels,
      numTraining: count,
      file_ending: ".nii.gz",
    }),
  );
  return out;
}
