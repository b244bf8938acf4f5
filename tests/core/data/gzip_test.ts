import { gunzip, gunzipPrefix, gzip, gzipTrailerSize, isGzip } from "../../../core/data/gzip.ts";
import { DataFileError } from "../../../core/data/errors.ts";
import { assertEquals, assertRejects } from "../../assert.ts";

const data = Uint8Array.from({ length: 200000 }, (_, i) => (i * 31) % 251);

Deno.test("gzip() → gunzip() round-trips and the trailer states the size", async () => {
  const packed = await gzip(data);
  assertEquals(isGzip(packed), true);
  assertEquals(isGzip(data), false);
  assertEquals(gzipTrailerSize(packed), data.length);
  assertEquals(await gunzip(packed, "x.gz", 1 << 20), data);
});

Deno.test("gunzip() refuses to inflate past its limit and names corrupt data", async () => {
  const packed = await gzip(data);
  await assertRejects(
    () => gunzip(packed, "big.gz", 1000),
    DataFileError,
    "big.gz: decompresses to more than 1000 bytes",
  );
  await assertRejects(
    () => gunzip(packed.slice(0, packed.length >> 1), "cut.gz", 1 << 20),
    DataFileError,
    "cut.gz: corrupted or truncated gzip data",
  );
  await assertRejects(() => gunzip(data, "plain.gz", 1 << 20), DataFileError, "not gzip data");
});

Deno.test("gunzip() rejects a stream whose trailer states a wrong size", async () => {
  const packed = await gzip(data);
  // the small ISIZE first sends the reader off its preallocated path; the inflater then checks it
  packed.set([1, 0, 0, 0], packed.length - 4);
  await assertRejects(() => gunzip(packed, "lie.gz", 1 << 20), DataFileError, "corrupted or truncated");
});

Deno.test("gunzipPrefix() inflates just enough of the start", async () => {
  const packed = await gzip(data);
  const prefix = await gunzipPrefix(packed, "p.gz", 600);
  assertEquals(prefix.length >= 600, true);
  assertEquals(prefix.subarray(0, 600), data.subarray(0, 600));
  // a truncated stream still yields its beginning
  assertEquals(
    (await gunzipPrefix(packed.slice(0, 2000), "p.gz", 100)).subarray(0, 100),
    data.subarray(0, 100),
  );
});
