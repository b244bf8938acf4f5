import { join } from "node:path";
import { readNifti, readNiftiMask } from "../../../core/data/nifti_read.ts";
import { orientationOf, reorientToCanonical } from "../../../core/data/orientation.ts";
import { generatePhantom } from "../../../core/data/synthetic.ts";
import { writeSyntheticDataset } from "../../../core/data/synthetic_dataset.ts";
import { assert, assertEquals } from "../../assert.ts";
import { assertClose } from "../../helpers.ts";
import { tempDir } from "./fixtures.ts";

Deno.test("writeSyntheticDataset() writes the OpenMind layout with masks and a metadata CSV", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const ds = await writeSyntheticDataset(dir, {
      count: 5,
      shape: [16, 18, 14],
      seed: 3,
      sessionsPerSubject: 2,
      subjectsPerDataset: 2,
      modalities: ["T1w", "T2w"],
    });
    assertEquals(ds.files.length, 5);
    const f = ds.files[3];
    assertEquals(
      f.image,
      join(dir, "OpenMind", "ds000001", "sub-02", "ses-02", "anat", "sub-02_ses-02_T2w.nii.gz"),
    );
    assertEquals(
      f.anatomyMask,
      join(
        dir,
        "OpenMind",
        "ds000001",
        "sub-02",
        "ses-02",
        "anat",
        "sub-02_ses-02_T2w__Data",
        "fb_mask.nii.gz",
      ),
    );
    assertEquals(ds.files[4].dataset, "ds000002");
    const csv = (await Deno.readTextFile(ds.csv!)).trim().split("\n");
    assertEquals(csv.length, 6);
    assert(csv[0].startsWith("image_path,modality,unique_id"));
    assert(csv[4].startsWith("ds000001/sub-02/ses-02/anat/sub-02_ses-02_T2w.nii.gz,T2w,"));
    const image = await readNifti(f.image);
    const mask = await readNiftiMask(f.anatomyMask!);
    assertEquals(image.shape, [16, 18, 14]);
    image.data.forEach((v, i) => assert(v === 0 || mask.data[i] === 1));
  } finally {
    await cleanup();
  }
});

Deno.test("writeSyntheticDataset() varyGeometry stores scrambled axes that reorient back to the phantom", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const shape: [number, number, number] = [12, 14, 10];
    const ds = await writeSyntheticDataset(dir, {
      count: 6,
      shape,
      seed: 8,
      layout: "flat",
      varyGeometry: true,
      gzip: false,
      labels: true,
    });
    const orientations = new Set<string>();
    for (let i = 0; i < ds.files.length; i++) {
      const stored = await readNifti(ds.files[i].image);
      orientations.add(orientationOf(stored.affine));
      const back = reorientToCanonical(stored);
      assertEquals(back.shape, shape);
      const spacing = back.spacing;
      const phantom = generatePhantom({ shape, spacing, seed: 8, index: i });
      assertClose(back.data, phantom.image.map((v) => Math.round(v * 1000)), {
        atol: 0,
        label: ds.files[i].image,
      });
      assertClose(back.affine, phantom.affine, { atol: 1e-4 });
      const labels = reorientToCanonical(await readNiftiMask(ds.files[i].labels!));
      assertEquals(Array.from(labels.data), Array.from(phantom.labels, (l) => (l > 0 ? 1 : 0)));
    }
    assert(orientations.size > 1, "several orientations");
  } finally {
    await cleanup();
  }
});
