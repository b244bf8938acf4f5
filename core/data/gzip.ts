/**
 * gzip through the runtime's native `DecompressionStream` / `CompressionStream`, with the guards a data
 * pipeline needs: a cap on the decompressed size (a corrupted or hostile file cannot make us allocate
 * without bound), a prefix mode that inflates only the first bytes (headers), and errors that name the file.
 *
 * @module
 */
import { DataFileError } from "./errors.ts";

/** True when `bytes` start with the gzip magic `1f 8b`. */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/** The gzip trailer's ISIZE: the uncompressed size modulo 2^32 (of the last member). */
export function gzipTrailerSize(bytes: Uint8Array): number {
  if (bytes.length < 18) return -1;
  const n = bytes.length;
  return (bytes[n - 4] | (bytes[n - 3] << 8) | (bytes[n - 2] << 16) | (bytes[n - 1] << 24)) >>> 0;
}

function inflater(bytes: Uint8Array): ReadableStreamDefaultReader<Uint8Array> {
  return ReadableStream.from([bytes as Uint8Array<ArrayBuffer>]).pipeThrough(new DecompressionStream("gzip"))
    .getReader();
}

function gzipProblem(error: unknown): string {
  const detail = error instanceof Error ? error.message : String(error);
  return `corrupted or truncated gzip data (${detail})`;
}

/**
 * Inflates a whole gzip file. Throws a {@link DataFileError} for `path` on corrupt or truncated data, or
 * when the output would exceed `maxBytes` (checked while streaming, before the bytes are kept).
 */
export async function gunzip(bytes: Uint8Array, path: string, maxBytes: number): Promise<Uint8Array> {
  if (!isGzip(bytes)) throw new DataFileError(path, "not gzip data (no 1f 8b magic)");
  const reader = inflater(bytes);
  // The trailer usually states the exact size: write straight into one buffer then (no second copy).
  const isize = gzipTrailerSize(bytes);
  let out = isize > 0 && isize <= maxBytes ? new Uint8Array(isize) : new Uint8Array(0);
  let chunks: Uint8Array[] | undefined = out.length === 0 ? [] : undefined;
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (total + value.length > maxBytes) {
        await reader.cancel().catch(() => {});
        throw new DataFileError(path, `decompresses to more than ${maxBytes} bytes (limit)`);
      }
      if (!chunks && total + value.length > out.length) chunks = [out.subarray(0, total)]; // trailer lied
      if (chunks) chunks.push(value);
      else out.set(value, total);
      total += value.length;
    }
  } catch (error) {
    if (error instanceof DataFileError) throw error;
    throw new DataFileError(path, gzipProblem(error), { cause: error });
  }
  if (!chunks) return total === out.length ? out : out.subarray(0, total);
  out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/**
 * Inflates only the first `minBytes` (or fewer if the data ends first) and stops: enough to read a header
 * without decompressing a whole volume. Corruption within the prefix throws a {@link DataFileError}.
 */
export async function gunzipPrefix(bytes: Uint8Array, path: string, minBytes: number): Promise<Uint8Array> {
  if (!isGzip(bytes)) throw new DataFileError(path, "not gzip data (no 1f 8b magic)");
  const reader = inflater(bytes);
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    while (total < minBytes) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      total += value.length;
    }
  } catch (error) {
    throw new DataFileError(path, gzipProblem(error), { cause: error });
  } finally {
    await reader.cancel().catch(() => {});
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** gzip-compresses `bytes` (native CompressionStream, default level). */
export async function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = ReadableStream.from([bytes as Uint8Array<ArrayBuffer>]).pipeThrough(
    new CompressionStream("gzip"),
  );
  return new Uint8Array(await new Response(stream).arrayBuffer());
}
