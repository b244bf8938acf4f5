/**
 * The report's PNG encoder checked by a decoder written here: chunk CRCs against a bitwise CRC-32,
 * the IDAT inflated by node:zlib (an implementation independent of CompressionStream's caller), the rows
 * unfiltered and compared with the pixels given.
 */
import { inflateSync } from "node:zlib";
import { assertEquals, assertRejects } from "../../assert.ts";
import { base64, crc32, encodePng } from "../../../cli/report/png.ts";
import { seededRandom } from "../../helpers.ts";

function referenceCrc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const b of bytes) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

/** Decodes an 8-bit, non-interlaced gray or RGB PNG whose rows all use filter 0. */
function decodePng(
  file: Uint8Array,
): { width: number; height: number; channels: number; pixels: Uint8Array } {
  assertEquals([...file.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], "signature");
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  let at = 8;
  const chunks: { type: string; data: Uint8Array }[] = [];
  while (at < file.length) {
    const length = view.getUint32(at);
    const type = new TextDecoder().decode(file.subarray(at + 4, at + 8));
    const data = file.subarray(at + 8, at + 8 + length);
    assertEquals(
      view.getUint32(at + 8 + length),
      referenceCrc32(file.subarray(at + 4, at + 8 + length)),
      `${type} CRC`,
    );
    chunks.push({ type, data });
    at += 12 + length;
  }
  assertEquals(chunks.map((c) => c.type), ["IHDR", "IDAT", "IEND"]);
  const h = new DataView(chunks[0].data.buffer, chunks[0].data.byteOffset, 13);
  const width = h.getUint32(0), height = h.getUint32(4);
  assertEquals(chunks[0].data[8], 8, "bit depth");
  const channels = { 0: 1, 2: 3 }[chunks[0].data[9]]!;
  const raw = new Uint8Array(inflateSync(chunks[1].data));
  const stride = width * channels;
  assertEquals(raw.length, (stride + 1) * height);
  const pixels = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    assertEquals(raw[y * (stride + 1)], 0, "filter type 0");
    pixels.set(raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1)), y * stride);
  }
  return { width, height, channels, pixels };
}

Deno.test("crc32: the known vector crc32('123456789') = 0xCBF43926 and a bitwise reference", () => {
  assertEquals(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
  const next = seededRandom(5);
  const bytes = Uint8Array.from({ length: 777 }, () => Math.floor(next() * 256));
  assertEquals(crc32(bytes), referenceCrc32(bytes));
});

Deno.test("encodePng: gray and RGB images decode back to their pixels; bad sizes are refused", async () => {
  const next = seededRandom(11);
  for (const [w, h, c] of [[1, 1, 1], [37, 5, 1], [16, 300, 1], [9, 7, 3]] as [number, number, 1 | 3][]) {
    const pixels = Uint8Array.from({ length: w * h * c }, () => Math.floor(next() * 256));
    const decoded = decodePng(await encodePng(pixels, w, h, c));
    assertEquals([decoded.width, decoded.height, decoded.channels], [w, h, c]);
    assertEquals(decoded.pixels, pixels);
  }
  await assertRejects(() => encodePng(new Uint8Array(5), 2, 2), RangeError, "5 bytes for 2×2×1");
  await assertRejects(() => encodePng(new Uint8Array(0), 0, 3), RangeError, "positive integer size");
  assertEquals(base64(Uint8Array.of(1, 2, 3, 250)), btoa(String.fromCharCode(1, 2, 3, 250)));
});
