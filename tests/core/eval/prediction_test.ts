import { join } from "node:path";
import { readNifti, readNiftiHeader } from "../../../core/data/nifti_read.ts";
import { writeNifti } from "../../../core/data/nifti_write.ts";
import type { Shape3 } from "../../../core/data/volume.ts";
import { evaluateFolders } from "../../../core/eval/evaluate.ts";
import { readNnunetDataset } from "../../../core/eval/nnunet_dataset.ts";
import { predictCase, undoReorientation, writePrediction } from "../../../core/eval/prediction.ts";
import type { PatchPredictor } from "../../../core/eval/sliding_window.ts";
import { applyReorientation, planCanonical } from "../../../core/data/orientation.ts";
import { assert, assertEquals } from "../../assert.ts";
import { randomFloats, tempDir } from "../data/fixtures.ts";
import { diagonalAffine } from "./fixtures.ts";

Deno.test("undoReorientation inverts the reorientation to RAS for flipped and permuted axes", () => {
  const shape: Shape3 = [3, 4, 5];
  const permuted = [0, 0, -2, 1, 0, 1.5, 0, 2, 3, 0, 0, -1, 0, 0, 0, 1]; // i→S, j→A, k→L
  for (const affine of [diagonalAffine([2, 1, 1], true), permuted]) {
    const plan = planCanonical(shape, affine);
    const data = randomFloats(60, 5);
    const back = undoReorientation(applyReorientation(data, shape, plan), shape, plan);
    assertEquals(Array.from(back), Array.from(data));
  }
});

/**
 * A 2-channel, anisotropic, LPS dataset whose channel 0 is +1 on label voxels and −1 on background
 * voxels of the non-zero box (equal counts, so z-scoring keeps the sign), channel 1 noise in the box; the label
 * splits the box along W asymmetrically, so a wrong flip would move it.
 */
async function writeSignDataset(root: string): Promise<void> {
  const shape: Shape3 = [5, 6, 10];
  const [D, H, W] = shape;
  const affine = diagonalAffine([3, 1, 1], true);
  await Deno.mkdir(join(root, "imagesTr"), { recursive: true });
  await Deno.mkdir(join(root, "labelsTr"), { recursive: true });
  for (const id of ["a", "b"]) {
    const image = new Float32Array(D * H * W);
    const label = new Uint8Array(D * H * W);
    const random = randomFloats(D * H * W, id === "a" ? 1 : 2, 1, 2);
    const noise = new Float32Array(D * H * W);
    for (let d = 1; d < D - 1; d++) {
      for (let h = 1; h < H - 1; h++) {
        for (let w = 1; w < W - 1; w++) {
          const i = (d * H + h) * W + w;
          const inside = id === "a" ? w <= 4 : w >= 5; // box w = 1..8: 4 of 8 columns labelled
          image[i] = inside ? 1 : -1;
          noise[i] = random[i];
          label[i] = inside ? 1 : 0;
        }
      }
    }
    await writeNifti(join(root, "imagesTr", `${id}_0000.nii.gz`), { data: image, shape, affine });
    await writeNifti(join(root, "imagesTr", `${id}_0001.nii.gz`), { data: noise, shape, affine });
    await writeNifti(join(root, "labelsTr", `${id}.nii.gz`), { data: label, shape, affine }, {
      datatype: "uint8",
    });
  }
  await Deno.writeTextFile(
    join(root, "dataset.json"),
    JSON.stringify({ channel_names: { 0: "A", 1: "B" }, labels: { background: 0, x: 1 }, numTraining: 2 }),
  );
}

Deno.test("predict → evaluate round trip: NIfTI predictions on the input's grid and affine score Dice 1", async () => {
  const { dir, cleanup } = await tempDir("voxssl-eval-");
  try {
    await writeSignDataset(join(dir, "raw"));
    const ds = await readNnunetDataset(join(dir, "raw"));
    // an oracle "network": background logit −x, foreground logit +x of channel 0 (its sign is the label)
    const oracle: PatchPredictor = (patch, size) => {
      const n = size[0] * size[1] * size[2];
      const out = new Float32Array(2 * n);
      for (let i = 0; i < n; i++) {
        out[i] = -patch[i];
        out[n + i] = patch[i];
      }
      return Promise.resolve(out);
    };
    await Deno.mkdir(join(dir, "pred"));
    for (const c of ds.training) {
      // spacing 3 → 1.5 along D (resampled and back), windows smaller than the volume, mirroring on
      const prediction = await predictCase(c, oracle, {
        targetSpacing: [1.5, 1, 1],
        patchSize: [4, 4, 4],
        numClasses: 2,
        mirrorAxes: [0, 1, 2],
        keepProbabilities: true,
      });
      assertEquals(prediction.geometry.final.shape, [6, 4, 8]);
      const n = 5 * 6 * 10;
      for (let i = 0; i < n; i++) {
        const s = prediction.probabilities![i] + prediction.probabilities![n + i];
        assert(Math.abs(s - 1) < 1e-5, `probabilities sum to ${s}`);
      }
      await writePrediction(join(dir, "pred", `${c.id}.nii.gz`), prediction);
    }
    const written = await readNiftiHeader(join(dir, "pred", "a.nii.gz"));
    const input = await readNiftiHeader(join(dir, "raw", "imagesTr", "a_0000.nii.gz"));
    assertEquals(written.affine, input.affine);
    assertEquals(written.shape, input.shape);
    assertEquals(written.datatype, "uint8");
    assertEquals([written.qformCode, written.sformCode], [input.qformCode, input.sformCode]);
    const summary = await evaluateFolders(join(dir, "pred"), join(dir, "raw", "labelsTr"));
    assertEquals(summary.cases.map((c) => c.classes[1].dice), [1, 1]);
    assertEquals(summary.foregroundMean.dice, 1);
    // the prediction is not trivially all foreground
    const label = (await readNifti(join(dir, "pred", "b.nii.gz"))).data;
    assertEquals(label.reduce((a, b) => a + b, 0), 3 * 4 * 4);
  } finally {
    await cleanup();
  }
});
