import { join } from "node:path";
import { DataFileError } from "../../../core/data/errors.ts";
import { writeNifti } from "../../../core/data/nifti_write.ts";
import type { Shape3 } from "../../../core/data/volume.ts";
import { preprocessCase } from "../../../core/eval/case_preprocess.ts";
import {
  openDownstreamCase,
  preprocessNnunetDataset,
  readDownstreamManifest,
} from "../../../core/eval/downstream_cache.ts";
import { DatasetProblemsError, readNnunetDataset } from "../../../core/eval/nnunet_dataset.ts";
import { nnunetTargetSpacing, percentile } from "../../../core/eval/target_spacing.ts";
import { assert, assertEquals, assertRejects } from "../../assert.ts";
import { haveFolder, sharedData, tempDir } from "../data/fixtures.ts";
import { diagonalAffine, writeTinyDataset } from "./fixtures.ts";

/** float64 z-score of the box [m, n-m) per axis of an array of `shape`, after flipping H and W. */
function expectedChannel(data: Float32Array, shape: Shape3, m: number, flipHW: boolean): Float64Array {
  const [D, H, W] = shape;
  const values: number[] = [];
  for (let d = m; d < D - m; d++) {
    for (let h = m; h < H - m; h++) {
      for (let w = m; w < W - m; w++) {
        const sh = flipHW ? H - 1 - h : h;
        const sw = flipHW ? W - 1 - w : w;
        values.push(data[(d * H + sh) * W + sw]);
      }
    }
  }
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const std = Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length);
  return Float64Array.from(values, (v) => (v - mean) / std);
}

Deno.test("nnU-Net dataset: multi-channel, flipped anisotropic grid preprocesses to z-score(crop(RAS))", async () => {
  const { dir, cleanup } = await tempDir("voxssl-eval-");
  try {
    const shape: Shape3 = [6, 10, 9];
    const cases = await writeTinyDataset(dir, {
      channels: 3,
      shape,
      affine: diagonalAffine([3, 1, 1], true),
    });
    const ds = await readNnunetDataset(dir);
    assertEquals(ds.channels, ["MR0", "MR1", "MR2"]);
    assertEquals(ds.foreground, [1, 2]);
    assertEquals(ds.training.map((c) => c.images.length), [3, 3]);
    const pre = await preprocessCase(ds.training[1], { targetSpacing: null, labelValues: [0, 1, 2] });
    assertEquals(pre.geometry.original.orientation, "LPS");
    assertEquals(pre.geometry.crop, { start: [1, 1, 1], end: [5, 9, 8] });
    assertEquals(pre.geometry.final.shape, [4, 8, 7]);
    assertEquals(pre.geometry.final.spacing, [3, 1, 1]);
    for (let c = 0; c < 3; c++) {
      const expected = expectedChannel(cases[1].channels[c], shape, 1, true);
      let worst = 0;
      for (let i = 0; i < expected.length; i++) {
        worst = Math.max(worst, Math.abs(pre.channels[c][i] - expected[i]));
      }
      assert(worst < 1e-5, `channel ${c}: max |error| ${worst}`);
    }
    // the label went through the same flip and crop, and kept its integer values
    const [D, H, W] = shape;
    let i = 0;
    for (let d = 1; d < D - 1; d++) {
      for (let h = 1; h < H - 1; h++) {
        for (let w = 1; w < W - 1; w++, i++) {
          assertEquals(pre.label![i], cases[1].label[(d * H + (H - 1 - h)) * W + (W - 1 - w)]);
        }
      }
    }
  } finally {
    await cleanup();
  }
});

Deno.test("nnU-Net dataset: labels resample with nearest neighbour to a given spacing", async () => {
  const { dir, cleanup } = await tempDir("voxssl-eval-");
  try {
    const shape: Shape3 = [6, 10, 9];
    const cases = await writeTinyDataset(dir, { cases: 1, shape, affine: diagonalAffine([3, 1, 1]) });
    const ds = await readNnunetDataset(dir);
    const pre = await preprocessCase(ds.training[0], { targetSpacing: [1.5, 2, 1], labelValues: [0, 1, 2] });
    const crop: Shape3 = [4, 8, 7];
    const out: Shape3 = [8, 4, 7];
    assertEquals(pre.geometry.final.shape, out);
    assertEquals(pre.channels[0].length, 8 * 4 * 7);
    // nearest: out voxel o reads in voxel round((o + 0.5)·n_in/n_out − 0.5), written out here per axis
    const near = (o: number, nIn: number, nOut: number) =>
      Math.min(nIn - 1, Math.max(0, Math.floor((o + 0.5) * nIn / nOut - 0.5 + 0.5)));
    const [, H, W] = shape;
    for (let d = 0; d < out[0]; d++) {
      for (let h = 0; h < out[1]; h++) {
        for (let w = 0; w < out[2]; w++) {
          const sd = near(d, crop[0], out[0]) + 1,
            sh = near(h, crop[1], out[1]) + 1,
            sw = near(w, crop[2], out[2]) + 1;
          assertEquals(pre.label![(d * out[1] + h) * out[2] + w], cases[0].label[(sd * H + sh) * W + sw]);
        }
      }
    }
  } finally {
    await cleanup();
  }
});

Deno.test("nnU-Net target spacing: median, and the 10th percentile along a strongly anisotropic axis", () => {
  assertEquals(percentile([4, 5, 6], 10), 4.2);
  assertEquals(
    nnunetTargetSpacing([[2, 1, 1], [3, 0.5, 1], [4, 1, 2]], [[10, 10, 10], [10, 10, 10], [10, 10, 10]]),
    [
      3,
      1,
      1,
    ],
  );
  // 5 > 3·1 and 10·3 < 100: the coarse axis takes the 10th percentile of 4, 5, 6
  assertEquals(
    nnunetTargetSpacing([[5, 1, 1], [4, 1, 1], [6, 0.9, 0.9]], [[10, 100, 100], [10, 100, 100], [
      10,
      100,
      100,
    ]]),
    [4.2, 1, 1],
  );
  // anisotropic spacing but not few voxels along it: plain median
  assertEquals(nnunetTargetSpacing([[5, 1, 1]], [[100, 100, 100]]), [5, 1, 1]);
});

Deno.test("downstream cache: writes channels, label and class locations; resumes without redoing cases", async () => {
  const { dir, cleanup } = await tempDir("voxssl-eval-");
  try {
    await writeTinyDataset(join(dir, "raw"), {
      channels: 2,
      shape: [5, 8, 7],
      affine: diagonalAffine([2, 1, 1]),
    });
    const ds = await readNnunetDataset(join(dir, "raw"));
    const cache = join(dir, "cache");
    const first = await preprocessNnunetDataset(ds, cache, { spacing: "median" });
    assertEquals([first.processed, first.cached], [2, 0]);
    assertEquals(first.manifest.parameters.targetSpacing, [2, 1, 1]);
    const again = await preprocessNnunetDataset(ds, cache, { spacing: "median" });
    assertEquals([again.processed, again.cached], [0, 2]);
    const manifest = await readDownstreamManifest(cache);
    assertEquals(manifest.cases.map((c) => c.id), ["case_000", "case_001"]);
    assertEquals(manifest.cases[0].classes, [1, 2]);
    const pre = await preprocessCase(ds.training[0], { targetSpacing: [2, 1, 1] });
    const c = openDownstreamCase(cache, manifest, "case_000");
    try {
      const shape = manifest.cases[0].shape;
      const n = shape[0] * shape[1] * shape[2];
      const { image, label } = c.readPatch([0, 0, 0], shape);
      assertEquals(Array.from(image.subarray(n, 2 * n)), Array.from(pre.channels[1]));
      assertEquals(Array.from(label), Array.from(pre.label!));
      const loc = c.locations(2);
      assert(loc.length > 0 && loc.length % 3 === 0);
      for (let i = 0; i < loc.length; i += 3) {
        assertEquals(pre.label![(loc[i] * shape[1] + loc[i + 1]) * shape[2] + loc[i + 2]], 2);
      }
      // a patch leaving the volume is zero-padded
      const outside = c.readPatch([-2, 0, 0], [2, 2, 2]);
      assert(outside.image.every((v) => v === 0) && outside.label.every((v) => v === 0));
    } finally {
      c.close();
    }
    // a different spacing is a different cache content: every case is redone
    const other = await preprocessNnunetDataset(ds, cache, { spacing: [1, 1, 1] });
    assertEquals([other.processed, other.cached], [2, 0]);
  } finally {
    await cleanup();
  }
});

/** Runs `change` on a fresh 2-case, 2-channel dataset and expects reading + preprocessing to fail. */
async function expectFailure(
  change: (root: string) => Promise<void>,
  includes: string[],
  ErrorType: Parameters<typeof assertRejects>[1] = DataFileError,
): Promise<void> {
  const { dir, cleanup } = await tempDir("voxssl-eval-");
  try {
    await writeTinyDataset(dir, { channels: 2, shape: [4, 6, 5] });
    await change(dir);
    const error = await assertRejects(async () => {
      const ds = await readNnunetDataset(dir);
      await preprocessNnunetDataset(ds, join(dir, "cache"), { spacing: "none" });
    }, ErrorType);
    for (const part of includes) assert(error.message.includes(part), `"${error.message}" lacks "${part}"`);
  } finally {
    await cleanup();
  }
}

Deno.test("nnU-Net dataset errors: each bad-data case names the file and what was expected", async () => {
  const affine = diagonalAffine([3, 1, 1]);
  // label geometry disagrees with the image
  await expectFailure(
    (root) =>
      writeNifti(join(root, "labelsTr", "case_001.nii.gz"), {
        data: new Float32Array(4 * 6 * 4),
        shape: [4, 6, 4],
        affine,
      }),
    ["labelsTr/case_001.nii.gz", "shape 4×6×4 differs", "case_001_0000.nii.gz", "expected the same grid"],
  );
  // a channel's affine disagrees
  await expectFailure(
    (root) =>
      writeNifti(join(root, "imagesTr", "case_000_0001.nii.gz"), {
        data: new Float32Array(4 * 6 * 5).fill(1),
        shape: [4, 6, 5],
        affine: diagonalAffine([3, 1, 2]),
      }),
    ["imagesTr/case_000_0001.nii.gz", "channel 1 affine", "expected the same voxel-to-world geometry"],
  );
  // a missing channel
  await expectFailure(
    (root) => Deno.remove(join(root, "imagesTr", "case_001_0001.nii.gz")),
    ["imagesTr/case_001_0001.nii.gz", "missing", "no channel 1"],
    DatasetProblemsError,
  );
  // label values absent from dataset.json
  const bad = new Float32Array(4 * 6 * 5);
  bad[7] = 3;
  bad[9] = 1;
  await expectFailure(
    (root) => writeNifti(join(root, "labelsTr", "case_000.nii.gz"), { data: bad, shape: [4, 6, 5], affine }),
    ["labelsTr/case_000.nii.gz", "label value(s) 3 are not in dataset.json's labels (0, 1, 2)"],
  );
  // a non-integer label value
  const fractional = new Float32Array(4 * 6 * 5);
  fractional[5] = 1.5;
  await expectFailure(
    (root) =>
      writeNifti(join(root, "labelsTr", "case_000.nii.gz"), { data: fractional, shape: [4, 6, 5], affine }),
    ["labelsTr/case_000.nii.gz", "label value 1.5", "expected integer label values"],
  );
  // a missing label, a label without image and a wrong numTraining are all listed at once
  await expectFailure(
    async (root) => {
      await Deno.rename(join(root, "labelsTr", "case_001.nii.gz"), join(root, "labelsTr", "case_009.nii.gz"));
      const json = JSON.parse(await Deno.readTextFile(join(root, "dataset.json")));
      await Deno.writeTextFile(join(root, "dataset.json"), JSON.stringify({ ...json, numTraining: 3 }));
    },
    [
      "3 problems",
      "labelsTr/case_001.nii.gz: missing: the label of case case_001",
      "labelsTr/case_009.nii.gz: label without an image",
      "dataset.json: numTraining is 3 but imagesTr holds 2 case(s)",
    ],
    DatasetProblemsError,
  );
  // a malformed image name
  await expectFailure(
    (root) => Deno.writeFile(join(root, "imagesTr", "case_002.nii.gz"), new Uint8Array(4)),
    ["imagesTr/case_002.nii.gz", "expected <case>_<4-digit channel>.nii.gz"],
    DatasetProblemsError,
  );
});

Deno.test("nnU-Net dataset: an empty label is a warning by default and an error when asked", async () => {
  const { dir, cleanup } = await tempDir("voxssl-eval-");
  try {
    await writeTinyDataset(dir, { shape: [4, 6, 5] });
    const empty = join(dir, "labelsTr", "case_001.nii.gz");
    await writeNifti(empty, {
      data: new Float32Array(4 * 6 * 5),
      shape: [4, 6, 5],
      affine: diagonalAffine([3, 1, 1]),
    });
    const ds = await readNnunetDataset(dir);
    const { manifest } = await preprocessNnunetDataset(ds, join(dir, "cache"), { spacing: "none" });
    assertEquals(manifest.warnings, [`${empty}: label is empty (background only)`]);
    assertEquals(manifest.cases[1].classes, []);
    const error = await assertRejects(
      () => preprocessNnunetDataset(ds, join(dir, "cache2"), { spacing: "none", emptyLabel: "error" }),
      DataFileError,
    );
    assertEquals(error.message, `${empty}: label is empty (background only)`);
  } finally {
    await cleanup();
  }
});

const hippocampus = sharedData("hippocampus");
const haveHippocampus = haveFolder(hippocampus, "hippocampus downstream data");
Deno.test({
  name: "nnU-Net dataset: real hippocampus cases read and preprocess at nnU-Net's median spacing",
  ignore: !haveHippocampus,
  fn: async () => {
    const ds = await readNnunetDataset(hippocampus);
    assertEquals(ds.channels.length, 1);
    assertEquals(ds.foreground, [1, 2]);
    assert(ds.training.length > 100);
    const { dir, cleanup } = await tempDir("voxssl-eval-");
    try {
      const ids = ds.training.slice(0, 3).map((c) => c.id);
      const { manifest } = await preprocessNnunetDataset(ds, dir, { spacing: "median", cases: ids });
      assertEquals(manifest.parameters.targetSpacing, [1, 1, 1]);
      assertEquals(manifest.cases.map((c) => c.classes), [[1, 2], [1, 2], [1, 2]]);
    } finally {
      await cleanup();
    }
  },
});
