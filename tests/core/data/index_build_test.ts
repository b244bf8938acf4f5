import { join } from "node:path";
import { listImages } from "../../../core/data/dataset_index.ts";
import { buildFolderIndex, describePath } from "../../../core/data/index_build.ts";
import { encodeNifti } from "../../../core/data/nifti_write.ts";
import { writeSyntheticDataset } from "../../../core/data/synthetic_dataset.ts";
import { assert, assertEquals } from "../../assert.ts";
import { haveFolder, obliqueAffine, sharedData, tempDir, writeBadCorpus } from "./fixtures.ts";

Deno.test("describePath() reads BIDS entities, nnU-Net names and falls back to the folder", () => {
  assertEquals(describePath("ds000117/sub-01/ses-mri/anat/sub-01_ses-mri_acq-mprage_T1w.nii.gz", "root"), {
    dataset: "ds000117",
    subject: "sub-01",
    session: "ses-mri",
    name: "sub-01_ses-mri_acq-mprage_T1w.nii.gz",
    modality: "T1w",
  });
  assertEquals(describePath("sub-07_FLAIR.nii", "scans"), {
    dataset: "scans",
    subject: "sub-07",
    session: "ses-DEFAULT",
    name: "sub-07_FLAIR.nii",
    modality: "FLAIR",
  });
  assertEquals(
    describePath("imagesTr/hippocampus_001_0000.nii.gz", "hippo", "MRI").subject,
    "hippocampus_001",
  );
  assertEquals(describePath("x/brain.nii.gz", "c").modality, "unknown");
});

Deno.test("buildFolderIndex() indexes a synthetic OpenMind-style tree with masks attached", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    await writeSyntheticDataset(dir, {
      count: 6,
      shape: [12, 12, 12],
      seed: 1,
      sessionsPerSubject: 2,
      subjectsPerDataset: 2,
    });
    const { index, images, skipped } = await buildFolderIndex(join(dir, "OpenMind"), { relativeTo: dir });
    assertEquals(skipped, []);
    assertEquals(images, 6);
    assertEquals(Object.keys(index.datasets), ["ds000001", "ds000002"]);
    const list = listImages(index, dir);
    assertEquals(list.length, 6);
    assert(
      list.every((i) =>
        i.anatomyMask?.endsWith("fb_mask.nii.gz") && i.anonymizationMask?.endsWith("deface_mask.nii.gz")
      ),
    );
    assertEquals(list[1].session, "ses-02");
    assertEquals(list[0].modality, "T1w");
    assertEquals(list[0].voxssl?.shape, [12, 12, 12]);
    assertEquals(list[0].voxssl?.orientation, "RAS");
    // paths are stored relative to `relativeTo`
    const first = index.datasets.ds000001.subjects["sub-01"].sessions["ses-01"].images[0];
    assertEquals(first.image_path, "OpenMind/ds000001/sub-01/ses-01/anat/sub-01_ses-01_T1w.nii.gz");
  } finally {
    await cleanup();
  }
});

Deno.test("buildFolderIndex() skips every bad file with its reason and keeps the good ones", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const bad = await writeBadCorpus(dir);
    await Deno.writeFile(
      join(dir, "good.nii"),
      encodeNifti({ data: new Float32Array(27).fill(1), shape: [3, 3, 3], affine: obliqueAffine() }),
    );
    const header = await buildFolderIndex(dir, { check: "header" });
    assertEquals(header.images, 3); // good.nii, nan_inf and corrupted_body (they need a full decode to see)
    const full = await buildFolderIndex(dir, { check: "full" });
    assertEquals(full.images, 1);
    for (const c of bad) {
      const entry = full.skipped.find((s) => s.path === c.path);
      assert(entry, `${c.name} not reported`);
      assert(entry.reason.includes(c.expect), `${c.name}: ${entry.reason}`);
    }
    assertEquals(full.skipped.length, bad.length);
  } finally {
    await cleanup();
  }
});

Deno.test("buildFolderIndex() skips, takes the first frame of, or splits 4D files", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    await Deno.writeFile(
      join(dir, "series.nii"),
      encodeNifti({ data: new Float32Array(3 * 27).fill(2), shape: [3, 3, 3], affine: obliqueAffine() }, {
        frames: 3,
      }),
    );
    const skip = await buildFolderIndex(dir);
    assertEquals(skip.images, 0);
    assert(skip.skipped[0].reason.includes("4D image with 3 volumes"));
    assertEquals((await buildFolderIndex(dir, { frames: "first" })).images, 1);
    const split = await buildFolderIndex(dir, { frames: "split" });
    assertEquals(split.images, 3);
    assertEquals(
      listImages(split.index, dir).map((i) => i.id),
      ["series", "series", "series"].map((s, f) => `${dir.split("/").pop()}__series__ses-DEFAULT__${s}#${f}`),
    );
  } finally {
    await cleanup();
  }
});

Deno.test("buildFolderIndex() ignores a mask whose shape differs from its image and says so", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    await Deno.writeFile(
      join(dir, "a.nii"),
      encodeNifti({ data: new Float32Array(27).fill(1), shape: [3, 3, 3], affine: obliqueAffine() }),
    );
    await Deno.mkdir(join(dir, "a__Data"));
    await Deno.writeFile(
      join(dir, "a__Data", "fb_mask.nii"),
      encodeNifti({ data: new Float32Array(8).fill(1), shape: [2, 2, 2], affine: obliqueAffine() }),
    );
    const { images, skipped, index } = await buildFolderIndex(dir);
    assertEquals(images, 1);
    assert(
      skipped[0].reason.includes("does not match its image") && skipped[0].reason.endsWith("mask ignored"),
    );
    assertEquals(listImages(index, dir)[0].anatomyMask, undefined);
  } finally {
    await cleanup();
  }
});

const hippo = sharedData("hippocampus");
Deno.test({
  name: "buildFolderIndex() indexes the real hippocampus images and leaves the label folder out",
  ignore: !haveFolder(hippo, "hippocampus index"),
  fn: async () => {
    const { images, skipped, index } = await buildFolderIndex(hippo, { defaultModality: "MRI" });
    assertEquals(skipped, []);
    assertEquals(images, 129);
    const list = listImages(index, hippo);
    assert(list.every((i) => i.path.includes("/imagesTr/") && i.modality === "MRI"));
    assertEquals(new Set(list.map((i) => i.subject)).size, 129);
  },
});
