import { join } from "node:path";
import { readNifti } from "../../../core/data/nifti_read.ts";
import { affineToQuaternion, encodeNifti, writeNifti } from "../../../core/data/nifti_write.ts";
import { assert, assertEquals, assertThrows } from "../../assert.ts";
import { assertClose } from "../../helpers.ts";
import { obliqueAffine, randomFloats, tempDir } from "./fixtures.ts";

Deno.test("writeNifti() → readNifti() round-trips .nii and .nii.gz with the affine", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const shape: [number, number, number] = [5, 6, 7];
    const data = randomFloats(210, 11, -3, 3);
    const affine = obliqueAffine();
    for (const name of ["a.nii", "a.nii.gz"]) {
      const path = join(dir, name);
      await writeNifti(path, { data, shape, affine });
      const back = await readNifti(path);
      assertEquals(Array.from(back.data), Array.from(data));
      assertEquals(back.shape, shape);
      assertClose(back.affine, affine, { atol: 1e-5 });
      const head = (await Deno.readFile(path)).subarray(0, 2);
      assertEquals(head[0] === 0x1f && head[1] === 0x8b, name.endsWith(".gz"));
    }
    // no temporary files left behind
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["a.nii", "a.nii.gz"]);
  } finally {
    await cleanup();
  }
});

Deno.test("encodeNifti() rounds and clamps to integer datatypes", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const data = Float32Array.from([-5, 0.4, 0.6, 254.6, 300, NaN, 1, 2]);
    const path = join(dir, "u8.nii");
    await writeNifti(path, { data, shape: [2, 2, 2], affine: obliqueAffine() }, { datatype: "uint8" });
    assertEquals(Array.from((await readNifti(path)).data), [0, 0, 1, 255, 255, 0, 1, 2]);
    const path16 = join(dir, "i16.nii.gz");
    await writeNifti(path16, {
      data: Float32Array.from([-40000, -1.5, 2.5, 40000, 0, 0, 0, 0]),
      shape: [2, 2, 2],
      affine: obliqueAffine(),
    }, { datatype: "int16" });
    assertEquals(Array.from((await readNifti(path16)).data).slice(0, 4), [-32768, -1, 3, 32767]);
  } finally {
    await cleanup();
  }
});

Deno.test("encodeNifti() rejects data whose length does not match the shape", () => {
  assertThrows(
    () => encodeNifti({ data: new Float32Array(7), shape: [2, 2, 2], affine: obliqueAffine() }),
    RangeError,
    "8",
  );
});

Deno.test("affineToQuaternion() reproduces rotations with and without a reflection", () => {
  for (
    const affine of [obliqueAffine(), [0, 0, 2, 1, -1.5, 0, 0, 2, 0, 3, 0, 3, 0, 0, 0, 1], [
      1,
      0,
      0,
      0,
      0,
      -1,
      0,
      0,
      0,
      0,
      -1,
      0,
      0,
      0,
      0,
      1,
    ]]
  ) {
    const q = affineToQuaternion(affine);
    // rebuild with the NIfTI formula and compare
    const a = Math.sqrt(Math.max(0, 1 - (q.b ** 2 + q.c ** 2 + q.d ** 2)));
    const { b, c, d } = q;
    const R = [
      [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
      [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
      [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b],
    ];
    const rebuilt = [0, 1, 2].flatMap((r) =>
      [0, 1, 2].map((col) => R[r][col] * q.pixdim[col] * (col === 2 ? q.qfac : 1))
    );
    const want = [0, 1, 2].flatMap((r) => [0, 1, 2].map((col) => affine[r * 4 + col]));
    assertClose(rebuilt, want, { atol: 1e-6 });
    assert(q.qfac === 1 || q.qfac === -1);
  }
});
