import { join } from "node:path";
import {
  encodeCacheFile,
  openCacheFile,
  type RegionTimings,
  shuffleBytes,
  writeCacheFile,
} from "../../../core/data/cache_format.ts";
import { DataFileError } from "../../../core/data/errors.ts";
import { extractBox, type Shape3 } from "../../../core/data/volume.ts";
import { assert, assertEquals, assertThrows } from "../../assert.ts";
import { seededRandom } from "../../helpers.ts";
import { randomFloats, tempDir } from "./fixtures.ts";

Deno.test("shuffleBytes() is inverted by its inverse", () => {
  const bytes = Uint8Array.from({ length: 40 }, (_, i) => (i * 37) % 256);
  const shuffled = shuffleBytes(bytes, 4);
  assertEquals(Array.from(shuffled.subarray(0, 3)), [bytes[0], bytes[4], bytes[8]]);
  assertEquals(shuffleBytes(shuffled, 4, true), bytes);
});

Deno.test("openCacheFile().readRegion() equals a zero-padded crop for random boxes, inside and outside", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const shape: Shape3 = [19, 23, 17];
    const image = randomFloats(19 * 23 * 17, 4);
    const mask = Uint8Array.from(image, (v) => (v > 0 ? 1 : 0));
    const locations = Int32Array.from({ length: 30 }, (_, i) => i * 3);
    const path = join(dir, "x.vxc");
    await writeCacheFile(path, {
      image: { data: image, shape, chunk: [8, 8, 8] },
      anatomy: { data: mask, shape, chunk: [8, 8, 8] },
      locations: { data: locations, shape: [10, 3] },
    });
    const file = openCacheFile(path);
    try {
      assertEquals(file.header.arrays.image.chunks.length, 3 * 3 * 3);
      const next = seededRandom(5);
      for (let t = 0; t < 40; t++) {
        const size = [
          1 + Math.floor(next() * 30),
          1 + Math.floor(next() * 30),
          1 + Math.floor(next() * 30),
        ] as Shape3;
        const start = size.map((s, i) => Math.floor(next() * (shape[i] + s + 10)) - s - 5);
        const timings: RegionTimings = { readMs: 0, decompressMs: 0, copyMs: 0 };
        assertEquals(
          file.readRegion("image", start, size, timings),
          extractBox(image, shape, start, size),
          `box ${start} ${size}`,
        );
        assertEquals(file.readRegion("anatomy", start, size), extractBox(mask, shape, start, size));
      }
      assertEquals(file.readArray("image"), image);
      assertEquals(file.readArray("locations"), locations);
      assertThrows(() => file.readArray("nope"), DataFileError, 'no array "nope"');
    } finally {
      file.close();
    }
  } finally {
    await cleanup();
  }
});

Deno.test("encodeCacheFile() compresses smooth float data and openCacheFile() rejects other files", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const n = 32 * 32 * 32;
    const smooth = Float32Array.from({ length: n }, (_, i) => (i % 5 === 0 ? 0 : Math.sin(i / 500)));
    const bytes = encodeCacheFile({ image: { data: smooth, shape: [32, 32, 32] } });
    assert(bytes.length < n * 4 * 0.8, `compressed to ${bytes.length} of ${n * 4}`);
    const path = join(dir, "bad.vxc");
    await Deno.writeTextFile(path, "not a cache file at all");
    assertThrows(() => openCacheFile(path), DataFileError, "bad magic");
    // a corrupted chunk is named
    const corrupt = bytes.slice();
    corrupt.fill(7, corrupt.length - 200, corrupt.length - 100);
    await Deno.writeFile(path, corrupt);
    const file = openCacheFile(path);
    try {
      assertThrows(() => file.readArray("image"), DataFileError, "corrupt chunk");
    } finally {
      file.close();
    }
  } finally {
    await cleanup();
  }
});

Deno.test("shuffleBytes() word path and byte path agree", () => {
  const bytes = Uint8Array.from({ length: 4 * 999 }, (_, i) => (i * 91 + 7) % 256);
  const unaligned = new Uint8Array(bytes.length + 1).subarray(1);
  unaligned.set(bytes);
  const fast = shuffleBytes(bytes, 4);
  assertEquals(fast, shuffleBytes(unaligned, 4)); // unaligned input takes the byte loop
  assertEquals(shuffleBytes(fast, 4, true), bytes);
  for (let i = 0; i < 999; i++) for (let k = 0; k < 4; k++) assertEquals(fast[k * 999 + i], bytes[i * 4 + k]);
});
