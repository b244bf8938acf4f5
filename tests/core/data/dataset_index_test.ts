import { join } from "node:path";
import {
  filterImages,
  filterIndex,
  listImages,
  type PretrainIndex,
  readPretrainIndex,
  resolveIndexPath,
  selectSplit,
  splitSubjects,
  writePretrainIndex,
} from "../../../core/data/dataset_index.ts";
import { DataFileError } from "../../../core/data/errors.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "../../assert.ts";
import { tempDir } from "./fixtures.ts";

/** An index in nnssl's format, as its OpenMind conversion writes it (abridged). */
const nnsslIndex = {
  collection_index: 1,
  collection_name: "Dataset001_OpenMind",
  datasets: {
    ds000001: {
      dataset_index: "ds000001",
      name: null,
      dataset_info: {
        image_quality_score: [{ modality: "T1w", derived_from: null, image_quality_score: 2.0 }, {
          modality: "T2w",
          derived_from: null,
          image_quality_score: 4.0,
        }],
      },
      subjects: {
        "sub-01": {
          subject_id: "sub-01",
          subject_info: { age: 31, sex: "F" },
          sessions: {
            "ses-DEFAULT": {
              session_id: "ses-DEFAULT",
              session_info: null,
              images: [
                {
                  name: "sub-01_T1w.nii.gz",
                  image_path: "$OPENMIND_ROOT/ds000001/sub-01/anat/sub-01_T1w.nii.gz",
                  modality: "T1w",
                  image_info: {},
                  associated_masks: { anonymization_mask: "rel/deface.nii.gz", anatomy_mask: null },
                },
                {
                  name: "sub-01_T2w.nii.gz",
                  image_path: "/abs/sub-01_T2w.nii.gz",
                  modality: "T2w",
                  image_info: { image_quality_score: 1.0 },
                  associated_masks: null,
                },
              ],
            },
          },
        },
        "sub-02": {
          subject_id: "sub-02",
          sessions: {
            "ses-1": {
              session_id: "ses-1",
              images: [{ name: "b.nii", image_path: "b.nii", modality: "T2w" }],
            },
          },
        },
      },
    },
  },
};

Deno.test("readPretrainIndex() accepts nnssl's format and writePretrainIndex() round-trips it", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const path = join(dir, "pretrain_data.json");
    await Deno.writeTextFile(path, JSON.stringify(nnsslIndex));
    const index = await readPretrainIndex(path);
    assertEquals(index.collection_name, "Dataset001_OpenMind");
    const out = join(dir, "again.json");
    await writePretrainIndex(out, index);
    assertEquals(JSON.parse(await Deno.readTextFile(out)), nnsslIndex);
  } finally {
    await cleanup();
  }
});

Deno.test("readPretrainIndex() names the file and the JSON path of a schema problem", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const path = join(dir, "bad.json");
    const bad = structuredClone(nnsslIndex) as Record<string, unknown>;
    (bad.datasets as Record<string, Record<string, unknown>>).ds000001.subjects = {
      "sub-01": { subject_id: 7, sessions: {} },
    };
    await Deno.writeTextFile(path, JSON.stringify(bad));
    const error = await assertRejects(
      () => readPretrainIndex(path),
      DataFileError,
      "datasets.ds000001.subjects.sub-01.subject_id",
    );
    assert(error.message.startsWith(path));
    await Deno.writeTextFile(path, "{not json");
    await assertRejects(() => readPretrainIndex(path), DataFileError, "not valid JSON");
    await assertRejects(() => readPretrainIndex(join(dir, "missing.json")), DataFileError, "file not found");
  } finally {
    await cleanup();
  }
});

Deno.test("listImages() flattens with resolved paths, ids and quality scores", () => {
  Deno.env.set("OPENMIND_ROOT", "/data/om");
  const images = listImages(nnsslIndex as PretrainIndex, "/idx");
  assertEquals(images.map((i) => i.path), [
    "/data/om/ds000001/sub-01/anat/sub-01_T1w.nii.gz",
    "/abs/sub-01_T2w.nii.gz",
    "/idx/b.nii",
  ]);
  assertEquals(images[0].id, "ds000001__sub-01__ses-DEFAULT__sub-01_T1w");
  assertEquals(images[0].anonymizationMask, "/idx/rel/deface.nii.gz");
  assertEquals(images[0].anatomyMask, undefined);
  // own score wins; else the dataset's table by modality
  assertEquals(images.map((i) => i.qualityScore), [2.0, 1.0, 4.0]);
  assertThrows(
    () => resolveIndexPath("$NOT_SET_ANYWHERE_42/x", "/"),
    DataFileError,
    "NOT_SET_ANYWHERE_42 is not set",
  );
});

Deno.test("filterImages() and filterIndex() apply quality and modality filters", () => {
  const images = listImages(nnsslIndex as PretrainIndex, "/idx");
  assertEquals(filterImages(images, { maxQualityScore: 2.5 }).map((i) => i.name), [
    "sub-01_T1w.nii.gz",
    "sub-01_T2w.nii.gz",
  ]);
  assertEquals(filterImages(images, { modalities: ["T2w"] }).length, 2);
  const { index, removed } = filterIndex(nnsslIndex as PretrainIndex, { maxQualityScore: 1.5 });
  assertEquals(removed, 2);
  assertEquals(Object.keys(index.datasets.ds000001.subjects), ["sub-01"]); // sub-02 emptied and dropped
  assertEquals(nnsslIndex.datasets.ds000001.subjects["sub-01"].sessions["ses-DEFAULT"].images.length, 2); // input untouched
});

Deno.test("splitSubjects() follows nnssl's rule: min(1000, max(N/100, 5)) validation subjects, seeded", () => {
  const subjects = Array.from({ length: 1234 }, (_, i) => `ds__sub-${i}`);
  const a = splitSubjects(subjects);
  assertEquals(a.val.length, 12);
  assertEquals(a.train.length, 1222);
  assertEquals(splitSubjects([...subjects].reverse()), a); // order of input does not matter
  assertEquals(new Set([...a.train, ...a.val]).size, 1234);
  assertEquals(splitSubjects(Array.from({ length: 200 }, (_, i) => `s${i}`)).val.length, 5);
  assertEquals(splitSubjects(Array.from({ length: 200000 }, (_, i) => `s${i}`)).val.length, 1000);
  assertEquals(splitSubjects(["a", "b", "c"]).val.length, 2); // one subject always stays in train
  assert(splitSubjects(subjects, 1).val.join() !== a.val.join(), "seed changes the draw");
});

Deno.test("selectSplit() keeps all images of a subject on the same side", () => {
  const images = Array.from({ length: 60 }, (_, i) => ({ dataset: "d", subject: `sub-${i % 20}`, n: i }));
  const train = selectSplit(images, "train");
  const val = selectSplit(images, "val");
  assertEquals(train.length + val.length, 60);
  assertEquals(val.length, 15); // 5 subjects × 3 images
  const valSubjects = new Set(val.map((i) => i.subject));
  assert(train.every((i) => !valSubjects.has(i.subject)));
  assertEquals(selectSplit(images, "all"), images);
});
