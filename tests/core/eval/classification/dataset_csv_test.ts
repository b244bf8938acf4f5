/** The classification CSV: single- and multi-channel images, class order, and every validation error. */
import { assert, assertEquals, assertRejects } from "../../../assert.ts";
import { DataFileError } from "../../../../core/data/errors.ts";
import { parseClassificationCsv, readClassificationCsv } from "../../../../core/eval/classification/mod.ts";

async function folder(files: string[]): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "voxssl-cls-" });
  await Deno.mkdir(`${dir}/img`);
  for (const f of files) await Deno.writeTextFile(`${dir}/img/${f}`, "not read");
  return dir;
}

Deno.test("classification CSV: paths relative to the file, case ids, numeric classes in numeric order", async () => {
  const dir = await folder(["a.nii.gz", "b.nii.gz", "c.nii.gz"]);
  await Deno.writeTextFile(
    `${dir}/train.csv`,
    "image,label\nimg/a.nii.gz,10\nimg/b.nii.gz,2\n\nimg/c.nii.gz,10\n",
  );
  const data = await readClassificationCsv(`${dir}/train.csv`);
  assertEquals(data.classes, ["2", "10"]);
  assertEquals(data.cases.map((c) => [c.id, c.classIndex]), [["a", 1], ["b", 0], ["c", 1]]);
  assertEquals(data.cases[0].images, [`${dir}/img/a.nii.gz`]);
  // a test set with the training classes
  await Deno.writeTextFile(`${dir}/test.csv`, "case,image,label\nx1,img/a.nii.gz,2\n");
  const test = await readClassificationCsv(`${dir}/test.csv`, { classes: data.classes });
  assertEquals(test.cases.map((c) => [c.id, c.classIndex]), [["x1", 0]]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("classification CSV: multi-channel columns image_0000, image_0001", async () => {
  const dir = await folder(["p_0000.nii.gz", "p_0001.nii.gz"]);
  const data = await parseClassificationCsv(
    'image_0001,label,image_0000\n"img/p_0001.nii.gz",AD,img/p_0000.nii.gz\n',
    `${dir}/d.csv`,
  );
  assertEquals(data.cases[0].id, "p");
  assertEquals(data.cases[0].images, [`${dir}/img/p_0000.nii.gz`, `${dir}/img/p_0001.nii.gz`]);
  assertEquals(data.classes, ["AD"]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("classification CSV: errors name the file, the line and what was expected", async () => {
  const dir = await folder(["a.nii.gz"]);
  const path = `${dir}/d.csv`;
  const expectError = async (text: string, includes: string, classes?: string[]) => {
    const error = await assertRejects(
      () => parseClassificationCsv(text, path, { classes }),
      DataFileError,
      includes,
    );
    assert(error.message.startsWith(`${path}: `), error.message);
  };
  await expectError("", "expected a header row");
  await expectError("path,label\nimg/a.nii.gz,1\n", "expected the columns image (or image_0000");
  await expectError("image,class\nimg/a.nii.gz,1\n", "expected the columns image");
  await expectError("image,label,age\nimg/a.nii.gz,1,70\n", "unknown column(s) age");
  await expectError("image_0000,image_0002,label\nimg/a.nii.gz,img/a.nii.gz,1\n", "without gaps");
  await expectError("image,label\n", "no cases");
  await expectError("image,label\nimg/a.nii.gz\n", "line 2: 1 fields, the header has 2");
  await expectError("image,label\nimg/a.nii.gz, \n", "line 2: empty label");
  await expectError(
    "image,label\nimg/missing.nii.gz,1\n",
    `case missing: image file ${dir}/img/missing.nii.gz not found`,
  );
  await expectError("image,label\nimg/a.nii.gz,1\nimg/a.nii.gz,0\n", "line 3: case a appears twice");
  await expectError("image,label\nimg/a.nii.gz,3\n", 'unknown label "3" (expected one of 0, 1)', ["0", "1"]);
  await assertRejects(() => readClassificationCsv(`${dir}/none.csv`), DataFileError, "cannot read it");
  await Deno.remove(dir, { recursive: true });
});
