/**
 * The preprocessing cache's file format (`.vxc`, documented in docs/data.md): one file per image holding
 * named arrays (image, masks, anatomy locations), each cut into chunks that are compressed separately, so
 * a random patch reads and inflates only the chunks it touches.
 *
 * ```
 * "VXCACHE1"  8 bytes magic
 * L           uint32 little-endian: byte length of the JSON header
 * header      L bytes of UTF-8 JSON: { format: 1, arrays: { name: { dtype, shape, chunk, codec, chunks } } }
 * data        the compressed chunks; chunks[i] = [offset, length] relative to the end of the header,
 *             chunks in C order of the chunk grid
 * ```
 *
 * Codecs: `zstd` (zstd via node:zlib) and `shuffle-zstd` (byte shuffle first, as blosc does: the bytes
 * of each significance are grouped, which makes float32 data compress better).
 *
 * @module
 */
import zlib from "node:zlib";
import { DataFileError } from "./errors.ts";
import type { Shape3 } from "./volume.ts";

/** Element types stored in the cache. */
export type CacheDtype = "float32" | "uint8" | "int32";
/** Chunk codecs. */
export type CacheCodec = "zstd" | "shuffle-zstd";

type CacheTypedArray = Float32Array | Uint8Array | Int32Array;

/** One stored array. Shapes of rank < 3 are padded with leading 1s for chunking. */
export interface CacheArrayInfo {
  dtype: CacheDtype;
  shape: number[];
  chunk: Shape3;
  codec: CacheCodec;
  /** `[offset, length]` of each chunk, relative to the end of the header. */
  chunks: [number, number][];
}

/** The parsed header of a cache file. */
export interface CacheHeader {
  format: 1;
  arrays: Record<string, CacheArrayInfo>;
}

/** An array to store. */
export interface CacheArrayInput {
  data: CacheTypedArray;
  shape: number[];
  /** Chunk shape (default: {@link DEFAULT_CHUNK}, clipped to the shape). */
  chunk?: Shape3;
}

/** Chunk shape for volumes: a random 160³ crop touches at most 6³ chunks and reads ≤ 1.73× its bytes. */
export const DEFAULT_CHUNK: Shape3 = [32, 32, 32];
/**
 * zstd level. nnssl uses 8 (through blosc2); on z-scored, resampled float32 (MNI152 at 1 mm, shuffled)
 * level 3 compresses 1.41× against 1.45× at level 8, four times faster, and inflates as fast.
 */
export const DEFAULT_LEVEL = 3;

const MAGIC = "VXCACHE1";
const BYTES: Record<CacheDtype, number> = { float32: 4, uint8: 1, int32: 4 };
const ARRAYS: Record<CacheDtype, new (n: number) => CacheTypedArray> = {
  float32: Float32Array,
  uint8: Uint8Array,
  int32: Int32Array,
};

function viewOf(dtype: CacheDtype, buffer: ArrayBufferLike, offset: number, length: number): CacheTypedArray {
  if (dtype === "float32") return new Float32Array(buffer, offset, length);
  if (dtype === "uint8") return new Uint8Array(buffer, offset, length);
  return new Int32Array(buffer, offset, length);
}

function dtypeOf(data: CacheTypedArray): CacheDtype {
  if (data instanceof Float32Array) return "float32";
  if (data instanceof Uint8Array) return "uint8";
  return "int32";
}

function shape3(shape: number[]): Shape3 {
  if (shape.length > 3 || shape.length === 0) {
    throw new RangeError(`cache arrays have rank 1..3, got ${shape.length}`);
  }
  return [...new Array(3 - shape.length).fill(1), ...shape] as Shape3;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Byte shuffle: all first bytes of the elements, then all second bytes, … (and its inverse). */
export function shuffleBytes(bytes: Uint8Array, width: number, inverse = false): Uint8Array {
  const n = bytes.length / width;
  const out = new Uint8Array(bytes.length);
  if (width === 4 && LITTLE_ENDIAN && (inverse || bytes.byteOffset % 4 === 0)) {
    // 32-bit words: a quarter of the memory operations of the byte loop
    if (inverse) {
      const words = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) {
        words[i] = bytes[i] | (bytes[n + i] << 8) | (bytes[2 * n + i] << 16) | (bytes[3 * n + i] << 24);
      }
    } else {
      const words = new Uint32Array(bytes.buffer, bytes.byteOffset, n);
      for (let i = 0; i < n; i++) {
        const w = words[i];
        out[i] = w;
        out[n + i] = w >>> 8;
        out[2 * n + i] = w >>> 16;
        out[3 * n + i] = w >>> 24;
      }
    }
    return out;
  }
  for (let k = 0; k < width; k++) {
    const plane = k * n;
    if (inverse) { for (let i = 0; i < n; i++) out[i * width + k] = bytes[plane + i]; }
    else for (let i = 0; i < n; i++) out[plane + i] = bytes[i * width + k];
  }
  return out;
}

function compress(bytes: Uint8Array, codec: CacheCodec, width: number, level: number): Uint8Array {
  const input = codec === "shuffle-zstd" ? shuffleBytes(bytes, width) : bytes;
  return zlib.zstdCompressSync(input, { params: { [zlib.constants.ZSTD_c_compressionLevel]: level } });
}

function decompress(bytes: Uint8Array, codec: CacheCodec, width: number): Uint8Array {
  const raw = zlib.zstdDecompressSync(bytes);
  return codec === "shuffle-zstd" ? shuffleBytes(raw, width, true) : raw;
}

function grid(shape: Shape3, chunk: Shape3): Shape3 {
  return shape.map((n, i) => Math.ceil(n / chunk[i])) as Shape3;
}

/** Copies box `lo..hi` (absolute coordinates) from `src` (origin `srcOrigin`, shape `srcShape`) to `dst`. */
function copyBox(
  src: CacheTypedArray,
  srcOrigin: readonly number[],
  srcShape: Shape3,
  dst: CacheTypedArray,
  dstOrigin: readonly number[],
  dstShape: Shape3,
  lo: readonly number[],
  hi: readonly number[],
): void {
  const width = hi[2] - lo[2];
  for (let d = lo[0]; d < hi[0]; d++) {
    for (let h = lo[1]; h < hi[1]; h++) {
      const s = ((d - srcOrigin[0]) * srcShape[1] + (h - srcOrigin[1])) * srcShape[2] +
        (lo[2] - srcOrigin[2]);
      const t = ((d - dstOrigin[0]) * dstShape[1] + (h - dstOrigin[1])) * dstShape[2] +
        (lo[2] - dstOrigin[2]);
      dst.set(src.subarray(s, s + width), t);
    }
  }
}

/** Encodes arrays into the bytes of one cache file. */
export function encodeCacheFile(
  arrays: Record<string, CacheArrayInput>,
  options: { level?: number } = {},
): Uint8Array {
  const level = options.level ?? DEFAULT_LEVEL;
  const header: CacheHeader = { format: 1, arrays: {} };
  const blobs: Uint8Array[] = [];
  let offset = 0;
  for (const [name, input] of Object.entries(arrays)) {
    const dtype = dtypeOf(input.data);
    const shape = shape3(input.shape);
    if (input.data.length !== shape[0] * shape[1] * shape[2]) {
      throw new RangeError(
        `cache array ${name}: ${input.data.length} values for shape ${input.shape.join("×")}`,
      );
    }
    const chunk = (input.shape.length === 3 ? input.chunk ?? DEFAULT_CHUNK : shape).map((c, i) =>
      Math.max(1, Math.min(c, shape[i]))
    ) as Shape3;
    const codec: CacheCodec = BYTES[dtype] > 1 ? "shuffle-zstd" : "zstd";
    const g = grid(shape, chunk);
    const info: CacheArrayInfo = { dtype, shape: input.shape, chunk, codec, chunks: [] };
    for (let cd = 0; cd < g[0]; cd++) {
      for (let ch = 0; ch < g[1]; ch++) {
        for (let cw = 0; cw < g[2]; cw++) {
          const lo = [cd * chunk[0], ch * chunk[1], cw * chunk[2]];
          const hi = lo.map((l, i) => Math.min(shape[i], l + chunk[i]));
          const size = hi.map((h, i) => h - lo[i]) as Shape3;
          const part = new ARRAYS[dtype](size[0] * size[1] * size[2]);
          copyBox(input.data, [0, 0, 0], shape, part, lo, size, lo, hi);
          const blob = compress(new Uint8Array(part.buffer), codec, BYTES[dtype], level);
          info.chunks.push([offset, blob.length]);
          blobs.push(blob);
          offset += blob.length;
        }
      }
    }
    header.arrays[name] = info;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(12 + json.length + offset);
  out.set(new TextEncoder().encode(MAGIC), 0);
  new DataView(out.buffer).setUint32(8, json.length, true);
  out.set(json, 12);
  let at = 12 + json.length;
  for (const blob of blobs) {
    out.set(blob, at);
    at += blob.length;
  }
  return out;
}

/** Writes a cache file atomically (temporary name, then rename). */
export async function writeCacheFile(
  path: string,
  arrays: Record<string, CacheArrayInput>,
  options: { level?: number } = {},
): Promise<number> {
  const bytes = encodeCacheFile(arrays, options);
  const tmp = `${path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  await Deno.writeFile(tmp, bytes);
  await Deno.rename(tmp, path);
  return bytes.length;
}

/** Time spent reading a region, in milliseconds. */
export interface RegionTimings {
  readMs: number;
  decompressMs: number;
  copyMs: number;
}

/** An open cache file. Reads are synchronous (they run in loader workers) and positional. */
export interface CacheFile {
  path: string;
  header: CacheHeader;
  /** Reads `start .. start+size` of a 3D array; parts outside the array are zero. */
  readRegion<T extends CacheTypedArray>(
    name: string,
    start: readonly number[],
    size: Shape3,
    timings?: RegionTimings,
  ): T;
  /** Reads a whole array. */
  readArray<T extends CacheTypedArray>(name: string, timings?: RegionTimings): T;
  close(): void;
}

function readExactly(file: Deno.FsFile, position: number, length: number, path: string): Uint8Array {
  const out = new Uint8Array(length);
  file.seekSync(position, Deno.SeekMode.Start);
  let got = 0;
  while (got < length) {
    const n = file.readSync(out.subarray(got));
    if (n === null) {
      throw new DataFileError(path, `cache file truncated (wanted ${length} bytes at ${position})`);
    }
    got += n;
  }
  return out;
}

/** Opens a cache file and parses its header. */
export function openCacheFile(path: string): CacheFile {
  const file = Deno.openSync(path, { read: true });
  let header: CacheHeader;
  let dataStart: number;
  try {
    const head = readExactly(file, 0, 12, path);
    if (new TextDecoder().decode(head.subarray(0, 8)) !== MAGIC) {
      throw new DataFileError(path, "not a voxssl cache file (bad magic)");
    }
    const length = new DataView(head.buffer).getUint32(8, true);
    header = JSON.parse(new TextDecoder().decode(readExactly(file, 12, length, path)));
    if (header.format !== 1) throw new DataFileError(path, `unsupported cache format ${header.format}`);
    dataStart = 12 + length;
  } catch (error) {
    file.close();
    throw error instanceof DataFileError
      ? error
      : new DataFileError(path, `unreadable cache header (${(error as Error).message})`);
  }
  const info = (name: string) => {
    const a = header.arrays[name];
    if (!a) throw new DataFileError(path, `cache file has no array "${name}"`);
    return a;
  };
  const readRegion = <T extends CacheTypedArray>(
    name: string,
    start: readonly number[],
    size: Shape3,
    timings?: RegionTimings,
  ): T => {
    const a = info(name);
    const shape = shape3(a.shape);
    const chunk = a.chunk;
    const g = grid(shape, chunk);
    const width = BYTES[a.dtype];
    const out = new ARRAYS[a.dtype](size[0] * size[1] * size[2]) as T;
    const lo = start.map((s) => Math.max(0, s));
    const hi = start.map((s, i) => Math.min(shape[i], s + size[i]));
    if (hi.some((h, i) => h <= lo[i])) return out;
    const c0 = lo.map((l, i) => Math.floor(l / chunk[i]));
    const c1 = hi.map((h, i) => Math.ceil(h / chunk[i]));
    for (let cd = c0[0]; cd < c1[0]; cd++) {
      for (let ch = c0[1]; ch < c1[1]; ch++) {
        // chunks along W are contiguous in the file: one read for the row
        const first = (cd * g[1] + ch) * g[2] + c0[2];
        const last = (cd * g[1] + ch) * g[2] + c1[2] - 1;
        const from = a.chunks[first][0];
        const to = a.chunks[last][0] + a.chunks[last][1];
        let t = performance.now();
        const row = readExactly(file, dataStart + from, to - from, path);
        if (timings) timings.readMs += performance.now() - t;
        for (let cw = c0[2]; cw < c1[2]; cw++) {
          const [off, len] = a.chunks[first + cw - c0[2]];
          t = performance.now();
          let raw: Uint8Array;
          try {
            raw = decompress(row.subarray(off - from, off - from + len), a.codec, width);
          } catch (error) {
            throw new DataFileError(
              path,
              `corrupt chunk ${cd},${ch},${cw} of ${name} (${(error as Error).message})`,
            );
          }
          const t2 = performance.now();
          const chunkLo = [cd * chunk[0], ch * chunk[1], cw * chunk[2]];
          const chunkShape = chunkLo.map((l, i) => Math.min(shape[i], l + chunk[i]) - l) as Shape3;
          const buffer = raw.byteOffset % width === 0 ? raw.buffer : raw.slice().buffer;
          const offset = raw.byteOffset % width === 0 ? raw.byteOffset : 0;
          const src = viewOf(a.dtype, buffer, offset, raw.length / width);
          const boxLo = lo.map((l, i) => Math.max(l, chunkLo[i]));
          const boxHi = hi.map((h, i) => Math.min(h, chunkLo[i] + chunkShape[i]));
          copyBox(src, chunkLo, chunkShape, out, start, size, boxLo, boxHi);
          if (timings) {
            timings.decompressMs += t2 - t;
            timings.copyMs += performance.now() - t2;
          }
        }
      }
    }
    return out;
  };
  return {
    path,
    header,
    readRegion,
    readArray: <T extends CacheTypedArray>(name: string, timings?: RegionTimings) => {
      const shape = shape3(info(name).shape);
      return readRegion<T>(name, [0, 0, 0], shape, timings);
    },
    close: () => file.close(),
  };
}
