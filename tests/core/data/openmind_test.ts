import { join } from "node:path";
import { filterImages, listImages } from "../../../core/data/dataset_index.ts";
import { buildOpenMindIndex } from "../../../core/data/openmind.ts";
import { writeSyntheticDataset } from "../../../core/data/synthetic_dataset.ts";
import { assert, assertEquals } from "../../assert.ts";
import { tempDir } from "./fixtures.ts";

Deno.test("buildOpenMindIndex() builds the hierarchy, metadata and quality tables from the CSV", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const ds = await writeSyntheticDataset(dir, {
      count: 4,
      shape: [10, 10, 10],
      seed: 2,
      subjectsPerDataset: 2,
      modalities: ["T1w", "FLAIR"],
    });
    // one extra row naming a missing file, one row without a path
    await Deno.writeTextFile(
      ds.csv!,
      "ds000009/sub-01/anat/sub-01_T1w.nii.gz,T1w,x,30,F,1.0,,\n,T1w,y,,,,,\n",
      { append: true },
    );
    const { index, images, skipped } = await buildOpenMindIndex(dir, ds.csv!, { relativeTo: dir });
    assertEquals(images, 4);
    assertEquals(skipped.length, 2);
    assert(
      skipped.some((s) =>
        s.path.endsWith("ds000009/sub-01/anat/sub-01_T1w.nii.gz") && s.reason === "file not found"
      ),
    );
    assert(skipped.some((s) => s.path === `${ds.csv}:7` && s.reason.includes("without image_path")));
    const list = listImages(index, dir);
    assertEquals(list.map((i) => i.qualityScore), ds.files.map((f) => f.qualityScore));
    assertEquals(list.map((i) => i.modality), ["T1w", "FLAIR", "T1w", "FLAIR"]);
    assert(list.every((i) => i.anatomyMask && i.anonymizationMask));
    const subject = index.datasets.ds000001.subjects["sub-01"];
    assertEquals(subject.subject_info, { age: 20, sex: "M" });
    const table = index.datasets.ds000001.dataset_info?.image_quality_score as { modality: string }[];
    assertEquals(table.map((r) => r.modality), ["T1w", "FLAIR"]);
    const best = filterImages(list, { maxQualityScore: 2.5, modalities: ["T1w"] });
    assert(best.every((i) => i.modality === "T1w" && i.qualityScore! <= 2.5));
    assertEquals(
      index.datasets.ds000001.subjects["sub-01"].sessions["ses-DEFAULT"].images[0].image_path,
      join("OpenMind", ds.files[0].image.split("/OpenMind/")[1]),
    );
  } finally {
    await cleanup();
  }
});
