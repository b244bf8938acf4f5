import { join } from "node:path";
import { openCacheFile } from "../../../core/data/cache_format.ts";
import { cropToBox, nonzeroBox } from "../../../core/data/crop.ts";
import type { ImageRecord } from "../../../core/data/dataset_index.ts";
import { readNifti } from "../../../core/data/nifti_read.ts";
import { meanStd } from "../../../core/data/normalize.ts";
import { orientationOf } from "../../../core/data/orientation.ts";
import {
  cacheKey,
  defaultParameters,
  preprocessImage,
  preprocessToCache,
  sampleLocations,
} from "../../../core/data/preprocess.ts";
import { generatePhantom } from "../../../core/data/synthetic.ts";
import { writeSyntheticDataset } from "../../../core/data/synthetic_dataset.ts";
import { assert, assertEquals, assertRejects } from "../../assert.ts";
import { assertClose } from "../../helpers.ts";
import { encodeNifti } from "../../../core/data/nifti_write.ts";
import { DataFileError } from "../../../core/data/errors.ts";
import { obliqueAffine, tempDir } from "./fixtures.ts";

function record(path: string, extra: Partial<ImageRecord> = {}): ImageRecord {
  return {
    id: `d__s__ses__${path.split("/").pop()}`,
    dataset: "d",
    subject: "s",
    session: "ses",
    name: path.split("/").pop()!,
    modality: "T1w",
    path,
    ...extra,
  };
}

Deno.test("preprocessImage() without resampling equals z-score(crop(image)) for a RAS image", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const ds = await writeSyntheticDataset(dir, {
      count: 1,
      shape: [20, 22, 18],
      seed: 5,
      layout: "flat",
      gzip: false,
    });
    const { arrays, properties } = await preprocessImage(
      record(ds.files[0].image),
      defaultParameters(null, "none"),
    );
    const original = await readNifti(ds.files[0].image);
    const box = nonzeroBox(original.data, original.shape)!;
    const expected = cropToBox(original.data, original.shape, box);
    const { mean, std } = meanStd(expected);
    assertClose(arrays.image, expected.map((v) => (v - mean) / std), { atol: 1e-5 });
    assertEquals(properties.crop, box);
    assertClose([properties.normalization.mean, properties.normalization.std], [mean, std], { rtol: 1e-9 });
    assertEquals(properties.final.shape, [
      box.end[0] - box.start[0],
      box.end[1] - box.start[1],
      box.end[2] - box.start[2],
    ]);
    // the crop moves the affine's origin to the box corner
    const [sd, sh, sw] = box.start;
    assertClose(properties.final.affine.slice(3, 12).filter((_, i) => i % 4 === 0), [
      original.affine[3] + original.affine[0] * sw + original.affine[1] * sh + original.affine[2] * sd,
      original.affine[7] + original.affine[4] * sw + original.affine[5] * sh + original.affine[6] * sd,
      original.affine[11] + original.affine[8] * sw + original.affine[9] * sh + original.affine[10] * sd,
    ], { atol: 1e-9 });
  } finally {
    await cleanup();
  }
});

Deno.test("preprocessImage() reorients, resamples to 1 mm and keeps masks aligned with the image", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const ds = await writeSyntheticDataset(dir, {
      count: 4,
      shape: [16, 18, 14],
      seed: 12,
      varyGeometry: true,
    });
    for (const f of ds.files) {
      const r = record(f.image, { anatomyMask: f.anatomyMask, anonymizationMask: f.defaceMask });
      const { arrays, properties } = await preprocessImage(r, defaultParameters([1, 1, 1], "1"));
      assertEquals(orientationOf(properties.final.affine), "RAS");
      assertClose(properties.final.spacing, [1, 1, 1], { atol: 0.06 });
      const n = properties.final.shape.reduce((a, b) => a * b);
      assertEquals(arrays.image.length, n);
      assertEquals(arrays.anatomy!.length, n);
      const stats = meanStd(arrays.image);
      assert(
        Math.abs(stats.mean) < 0.05 && Math.abs(stats.std - 1) < 0.1,
        `z-score after cubic resampling: ${JSON.stringify(stats)}`,
      );
      // anatomy voxels are where the image has signal, the others are background: the masks went
      // through the same reorientation, crop and resampling as the image
      let inside = 0, insideSignal = 0, outside = 0, outsideDark = 0;
      const { mean, std } = properties.normalization;
      for (let i = 0; i < n; i++) {
        const raw = arrays.image[i] * std + mean; // back to stored units (tissue ≥ ~80, skull included)
        if (arrays.anatomy![i]) {
          inside++;
          if (raw > 30) insideSignal++;
        } else {
          outside++;
          if (raw < 30) outsideDark++;
        }
      }
      assert(insideSignal > 0.9 * inside, `${insideSignal}/${inside} anatomy voxels carry signal`);
      assert(outsideDark > 0.85 * outside, `${outsideDark}/${outside} voxels outside the anatomy are dark`);
      // locations lie inside the anatomy mask
      const loc = arrays.anatomyLocations!;
      assertEquals(loc.length, properties.anatomyVoxels! * 3 > 30000 ? 30000 : properties.anatomyVoxels! * 3);
      const [, H, W] = properties.final.shape;
      for (let i = 0; i < loc.length; i += 3) {
        assertEquals(arrays.anatomy![(loc[i] * H + loc[i + 1]) * W + loc[i + 2]], 1);
      }
      assertEquals(properties.warnings, []);
    }
  } finally {
    await cleanup();
  }
});

Deno.test("preprocessImage() of a reoriented, scrambled phantom matches the canonical phantom", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    // scrambled axes, no resampling: reorientation alone must give back the phantom (cropped, z-scored)
    const ds = await writeSyntheticDataset(dir, {
      count: 3,
      shape: [14, 16, 12],
      seed: 21,
      layout: "flat",
      varyGeometry: true,
    });
    for (let i = 0; i < 3; i++) {
      const { arrays, properties } = await preprocessImage(
        record(ds.files[i].image),
        defaultParameters(null, "none"),
      );
      assert(properties.original.orientation !== "RAS" || i > 0, "the first one is stored scrambled");
      const phantom = generatePhantom({ shape: [14, 16, 12], seed: 21, index: i });
      const stored = phantom.image.map((v) => Math.round(v * 1000));
      const box = nonzeroBox(stored, [14, 16, 12])!;
      assertEquals(properties.crop, box);
      const crop = cropToBox(stored, [14, 16, 12], box);
      const { mean, std } = meanStd(crop);
      assertClose(arrays.image, crop.map((v) => (v - mean) / std), { atol: 1e-5 });
    }
  } finally {
    await cleanup();
  }
});

Deno.test("preprocessImage() names the file of an all-zero image and ignores a mismatched mask with a warning", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const zero = join(dir, "zero.nii");
    await Deno.writeFile(
      zero,
      encodeNifti({ data: new Float32Array(27), shape: [3, 3, 3], affine: obliqueAffine() }),
    );
    await assertRejects(
      () => preprocessImage(record(zero), defaultParameters(null, "none")),
      DataFileError,
      "all zeros",
    );
    const one = join(dir, "one.nii");
    const mask = join(dir, "mask.nii");
    await Deno.writeFile(
      one,
      encodeNifti({ data: new Float32Array(27).fill(2), shape: [3, 3, 3], affine: obliqueAffine() }),
    );
    await Deno.writeFile(
      mask,
      encodeNifti({ data: new Float32Array(8).fill(1), shape: [2, 2, 2], affine: obliqueAffine() }),
    );
    const { arrays, properties } = await preprocessImage(
      record(one, { anatomyMask: mask }),
      defaultParameters(null, "none"),
    );
    assertEquals(arrays.anatomy, undefined);
    assert(properties.warnings[0].startsWith(`anatomy mask ignored: ${mask}: shape 2×2×2`));
  } finally {
    await cleanup();
  }
});

Deno.test("preprocessToCache() writes a .vxc whose arrays read back equal to preprocessImage()", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const ds = await writeSyntheticDataset(join(dir, "raw"), { count: 1, shape: [16, 16, 16], seed: 2 });
    const f = ds.files[0];
    const r = record(f.image, {
      anatomyMask: f.anatomyMask,
      anonymizationMask: f.defaceMask,
      dataset: "ds1",
      subject: "sub-1",
      session: "ses-a",
    });
    const params = {
      ...defaultParameters([1.3, 1.3, 1.3] as [number, number, number], "1.3"),
      chunk: [8, 8, 8] as [number, number, number],
    };
    const properties = await preprocessToCache(r, join(dir, "cache"), params);
    const { arrays } = await preprocessImage(r, params);
    assertEquals(cacheKey(r), `ds1/sub-1/ses-a/${r.name.replace(".nii.gz", "")}`);
    const file = openCacheFile(join(dir, "cache", cacheKey(r) + ".vxc"));
    try {
      assertEquals(file.readArray("image"), arrays.image);
      assertEquals(file.readArray("anatomy"), arrays.anatomy);
      assertEquals(file.readArray("anonymization"), arrays.anonymization);
      assertEquals(file.readArray("anatomy_locations"), arrays.anatomyLocations);
    } finally {
      file.close();
    }
    assertEquals(properties.arrays, ["image", "anatomy", "anonymization", "anatomy_locations"]);
    assertEquals(properties.producer.name, "voxssl");
    assertEquals(properties.parameters.targetSpacing, [1.3, 1.3, 1.3]);
    assertEquals(properties.sources.image.path, f.image);
    const json = JSON.parse(await Deno.readTextFile(join(dir, "cache", cacheKey(r) + ".json")));
    assertEquals(json.bytes, (await Deno.stat(join(dir, "cache", cacheKey(r) + ".vxc"))).size);
  } finally {
    await cleanup();
  }
});

Deno.test("sampleLocations() picks distinct voxels inside the mask, all of them when few", () => {
  const mask = Uint8Array.from({ length: 1000 }, (_, i) => (i % 7 === 0 ? 1 : 0));
  const all = sampleLocations(mask, [10, 10, 10], 10000, "k");
  assertEquals(all.length, 143 * 3);
  const some = sampleLocations(mask, [10, 10, 10], 50, "k");
  assertEquals(some.length, 150);
  const seen = new Set<number>();
  for (let i = 0; i < some.length; i += 3) {
    const flat = (some[i] * 10 + some[i + 1]) * 10 + some[i + 2];
    assertEquals(mask[flat], 1);
    seen.add(flat);
  }
  assertEquals(seen.size, 50);
  assertEquals(sampleLocations(mask, [10, 10, 10], 50, "k"), some);
});
