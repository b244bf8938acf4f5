import { join } from "node:path";
import { DataFileError } from "../../../core/data/errors.ts";
import { gzip } from "../../../core/data/gzip.ts";
import {
  decodeNifti,
  parseNiftiHeader,
  readNifti,
  readNiftiFrames,
  readNiftiHeader,
  readNiftiMask,
} from "../../../core/data/nifti_read.ts";
import { encodeNifti } from "../../../core/data/nifti_write.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "../../assert.ts";
import { assertClose } from "../../helpers.ts";
import { haveFolder, obliqueAffine, randomFloats, sharedData, tempDir, writeBadCorpus } from "./fixtures.ts";

const shape: [number, number, number] = [3, 4, 5];

Deno.test("decodeNifti() reads every datatype exactly, in NIfTI-1 and NIfTI-2", () => {
  const ints = Float32Array.from(randomFloats(60, 1, 0, 1), (v) => Math.floor(v * 100));
  const signed = Float32Array.from(ints, (v) => v - 50);
  const floats = randomFloats(60, 2, -1000, 1000);
  const cases = [
    ["uint8", ints],
    ["int8", signed],
    ["int16", Float32Array.from(signed, (v) => v * 300)],
    ["uint16", Float32Array.from(ints, (v) => v * 600)],
    ["int32", Float32Array.from(signed, (v) => v * 40000)],
    ["float32", floats],
    ["float64", floats],
  ] as const;
  for (const version of [1, 2] as const) {
    for (const [datatype, data] of cases) {
      const bytes = encodeNifti({ data, shape, affine: obliqueAffine() }, { datatype, version });
      const vol = decodeNifti(bytes, `${datatype}.nii`);
      assertEquals(vol.header.datatype, datatype);
      assertEquals(vol.header.version, version);
      assertEquals(vol.shape, shape);
      assertEquals(Array.from(vol.data), Array.from(data), `${datatype} v${version}`);
    }
  }
});

Deno.test("decodeNifti() reads big-endian files", () => {
  const data = randomFloats(60, 3, -5, 5);
  for (const datatype of ["int16", "float32", "float64"] as const) {
    const stored = datatype === "int16" ? Float32Array.from(data, (v) => Math.round(v * 1000)) : data;
    const bytes = encodeNifti({ data: stored, shape, affine: obliqueAffine() }, {
      datatype,
      littleEndian: false,
    });
    const vol = decodeNifti(bytes, "be.nii");
    assertEquals(vol.header.littleEndian, false);
    assertEquals(Array.from(vol.data), Array.from(stored));
    assertClose(vol.affine, obliqueAffine(), { atol: 1e-5 });
  }
});

Deno.test("readNifti() applies scl_slope and scl_inter", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const values = Float32Array.from(randomFloats(60, 4, 0, 1), (v) => 10 + 0.5 * Math.round(v * 200));
    const path = join(dir, "scaled.nii.gz");
    await Deno.writeFile(
      path,
      await gzip(
        encodeNifti({ data: values, shape, affine: obliqueAffine() }, {
          datatype: "int16",
          sclSlope: 0.5,
          sclInter: 10,
        }),
      ),
    );
    const vol = await readNifti(path);
    assertEquals(vol.header.sclSlope, 0.5);
    assertEquals(vol.header.sclInter, 10);
    assertEquals(Array.from(vol.data), Array.from(values));
    // the stored integers really are (value - 10) / 0.5
    const raw = encodeNifti({ data: values, shape, affine: obliqueAffine() }, {
      datatype: "int16",
      sclSlope: 0.5,
      sclInter: 10,
    });
    assertEquals(new DataView(raw.buffer).getInt16(352, true), (values[0] - 10) / 0.5);
  } finally {
    await cleanup();
  }
});

Deno.test("decodeNifti() ignores scl_slope 0 (no scaling)", () => {
  const bytes = encodeNifti({ data: new Float32Array(60).fill(7), shape, affine: obliqueAffine() }, {
    datatype: "int16",
  });
  new DataView(bytes.buffer).setFloat32(112, 0, true);
  new DataView(bytes.buffer).setFloat32(116, 100, true);
  const vol = decodeNifti(bytes, "slope0.nii");
  assertEquals(vol.data[0], 7);
});

Deno.test("parseNiftiHeader() takes the sform, else the qform, else pixdim", () => {
  const affine = obliqueAffine([1.5, 0.8, 2.5]);
  for (const version of [1, 2] as const) {
    const bytes = encodeNifti({ data: new Float32Array(60), shape, affine }, { version });
    const sform = parseNiftiHeader(bytes, "a.nii");
    assertEquals(sform.affineSource, "sform");
    assertClose(sform.affine, affine, { atol: 1e-5 });
    assertClose(sform.spacing, [2.5, 0.8, 1.5], { atol: 1e-6 });
    const view = new DataView(bytes.buffer);
    if (version === 1) view.setInt16(254, 0, true);
    else view.setInt32(348, 0, true);
    const qform = parseNiftiHeader(bytes, "a.nii");
    assertEquals(qform.affineSource, "qform");
    assertClose(qform.affine, affine, { atol: 1e-5, label: `qform v${version}` });
    if (version === 1) view.setInt16(252, 0, true);
    else view.setInt32(344, 0, true);
    const plain = parseNiftiHeader(bytes, "a.nii");
    assertEquals(plain.affineSource, "pixdim");
    assertClose(plain.affine, [1.5, 0, 0, 0, 0, 0.8, 0, 0, 0, 0, 2.5, 0, 0, 0, 0, 1], { atol: 1e-6 });
  }
});

Deno.test("readNifti() refuses a 4D file without a frame; readNiftiFrames() splits it", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const data = randomFloats(60 * 3, 5);
    const path = join(dir, "series.nii.gz");
    await Deno.writeFile(
      path,
      await gzip(encodeNifti({ data, shape, affine: obliqueAffine() }, { frames: 3 })),
    );
    const error = await assertRejects(() => readNifti(path), DataFileError, "4D image with 3 volumes");
    assert(error.message.startsWith(path));
    const second = await readNifti(path, { frame: 1 });
    assertEquals(Array.from(second.data), Array.from(data.subarray(60, 120)));
    await assertRejects(() => readNifti(path, { frame: 3 }), DataFileError, "frame 3 is outside 0..2");
    const frames = await readNiftiFrames(path);
    assertEquals(frames.length, 3);
    frames.forEach((f, i) =>
      assertEquals(Array.from(f.data), Array.from(data.subarray(60 * i, 60 * (i + 1))))
    );
  } finally {
    await cleanup();
  }
});

Deno.test("readNiftiMask() gives 1 where the stored value is non-zero", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const data = Float32Array.from({ length: 60 }, (_, i) => (i % 3 === 0 ? 0 : i % 3));
    const path = join(dir, "mask.nii");
    await Deno.writeFile(path, encodeNifti({ data, shape, affine: obliqueAffine() }, { datatype: "uint8" }));
    const mask = await readNiftiMask(path);
    assertEquals(Array.from(mask.data), Array.from(data, (v) => (v !== 0 ? 1 : 0)));
  } finally {
    await cleanup();
  }
});

Deno.test("readNifti() and readNiftiHeader() name the file and the problem for every bad input", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const cases = await writeBadCorpus(dir);
    for (const c of cases) {
      const error = await assertRejects(() => readNifti(c.path), DataFileError);
      assert(
        error.message.startsWith(c.path + ": "),
        `${c.name}: message must start with the path: ${error.message}`,
      );
      assert(error.message.includes(c.expect), `${c.name}: expected "${c.expect}" in: ${error.message}`);
    }
    // the header check catches everything that lives in the header or the file size; NaN voxels and
    // damage deep inside the compressed body need a full read
    const needFullRead = new Set(["nan_inf.nii.gz", "corrupted_body.nii.gz"]);
    for (const c of cases) {
      if (needFullRead.has(c.name)) {
        await readNiftiHeader(c.path);
        continue;
      }
      const error = await assertRejects(() => readNiftiHeader(c.path), DataFileError);
      assert(error.message.startsWith(c.path + ": "), `${c.name}: ${error.message}`);
    }
  } finally {
    await cleanup();
  }
});

Deno.test("parseNiftiHeader() rejects absurd dims before allocating", () => {
  const header = new Uint8Array(352);
  const view = new DataView(header.buffer);
  view.setInt32(0, 348, true);
  [3, 32000, 32000, 32000].forEach((v, i) => view.setInt16(40 + 2 * i, v, true));
  view.setInt16(70, 16, true);
  view.setInt16(72, 32, true);
  view.setFloat32(76 + 4, 1, true);
  view.setFloat32(80 + 4, 1, true);
  view.setFloat32(84 + 4, 1, true);
  view.setFloat32(108, 352, true);
  header.set([0x6e, 0x2b, 0x31, 0], 344);
  assertThrows(() => parseNiftiHeader(header, "big.nii"), DataFileError, "absurd dims 32000×32000×32000");
  assertThrows(
    () => parseNiftiHeader(header, "big.nii", { maxVoxels: 10 }),
    DataFileError,
    "exceeds the limit 10",
  );
});

const niftiDir = sharedData("nifti");
const haveScans = haveFolder(niftiDir, "real NIfTI scan");

Deno.test({
  name: "readNifti() reads the real scans with the documented shapes, dtypes, spacing and orientation",
  ignore: !haveScans,
  fn: async () => {
    const expected: Record<string, { dims: number[]; datatype: string; spacing: number[] }> = {
      "MNI152_T1_2mm.nii.gz": { dims: [91, 109, 91], datatype: "int16", spacing: [2, 2, 2] },
      "T2w.nii.gz": { dims: [224, 224, 60], datatype: "int16", spacing: [1, 1, 2] },
      "T1_head_ext2.nii.gz": { dims: [104, 150, 133], datatype: "uint8", spacing: [1.6, 1.6, 1.6] },
      "chris_PD.nii.gz": { dims: [191, 256, 54], datatype: "uint8", spacing: [0.86, 0.86, 2.4] },
      "MR_Gd.nii.gz": { dims: [176, 188, 144], datatype: "uint8", spacing: [0.98, 0.98, 1.0] },
      "CT_pitch.nii.gz": { dims: [175, 248, 58], datatype: "uint8", spacing: [0.81, 0.81, 2.4] },
      "mniMask.nii.gz": { dims: [91, 109, 91], datatype: "uint8", spacing: [2, 2, 2] },
    };
    for (const [name, want] of Object.entries(expected)) {
      const path = join(niftiDir, name);
      const header = await readNiftiHeader(path);
      assertEquals(header.dims, want.dims, name);
      assertEquals(header.datatype, want.datatype, name);
      const vol = await readNifti(path);
      assertEquals(vol.shape, [want.dims[2], want.dims[1], want.dims[0]], name);
      assertClose([...vol.spacing].reverse(), want.spacing, { atol: 0.03, label: name });
      let nonzero = 0;
      for (const v of vol.data) if (v !== 0) nonzero++;
      assert(nonzero > vol.data.length * 0.05, `${name}: mostly empty?`);
    }
    const pcasl = join(niftiDir, "pcasl.nii.gz");
    await assertRejects(() => readNifti(pcasl), DataFileError, "4D image with 10 volumes");
    const frames = await readNiftiFrames(pcasl);
    assertEquals(frames.length, 10);
    assertEquals(frames[9].shape, [20, 68, 52]);
  },
});
