import { join } from "node:path";
import { readCacheManifest, writeCacheManifest } from "../../../core/data/cache_dataset.ts";
import { DataFileError } from "../../../core/data/errors.ts";
import { PRODUCER } from "../../../core/data/version.ts";
import { assertEquals, assertRejects } from "../../assert.ts";
import { tempDir } from "./fixtures.ts";
import denoJson from "../../../deno.json" with { type: "json" };

Deno.test("readCacheManifest() refuses other formats and folders that are not caches", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    await assertRejects(() => readCacheManifest(dir), DataFileError, "is not a voxssl cache");
    await writeCacheManifest(dir, {
      producer: { ...PRODUCER, cacheFormat: 99 },
      parameters: null,
      created: "",
      images: [],
      skipped: [],
    });
    await assertRejects(() => readCacheManifest(dir), DataFileError, "unsupported cache manifest (format 99");
    await assertRejects(() => readCacheManifest(join(dir, "absent")), DataFileError, "file not found");
  } finally {
    await cleanup();
  }
});

Deno.test("PRODUCER records voxssl's version from deno.json", () => {
  assertEquals(PRODUCER.name, "voxssl");
  assertEquals(PRODUCER.version, denoJson.version);
});
