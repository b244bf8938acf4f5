/**
 * The zip container of PyTorch checkpoints (PKWARE APPNOTE 6.3): read any archive of STORED entries
 * (zip64 end records and extra fields included; the central directory is the authority, as torch writes
 * sizes and CRCs into data descriptors), write one the way torch does (entries STORED, each entry's data
 * aligned to 64 bytes by an "FB" padding extra field, zip64 records when an offset or size needs them).
 * Every entry's CRC-32 is checked the first time it is read.
 */
import { crc32 } from "./crc32.ts";
import { PthError } from "./errors.ts";

/** One entry of an archive's central directory. */
export interface ZipEntry {
  /** The entry's path inside the archive. */
  name: string;
  /** Offset of the data in the file. */
  dataOffset: number;
  /** Size of the data in bytes. */
  size: number;
  /** The CRC-32 the central directory records. */
  crc: number;
}

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_EOCD64 = 0x06064b50;
const SIG_LOCATOR64 = 0x07064b50;
const MAX32 = 0xffffffff;
const NAMES = new TextDecoder("utf-8", { fatal: false });

/** A read-only view of a zip archive in memory. */
export class ZipReader {
  /** Entries by name, in central-directory order. */
  readonly entries: Map<string, ZipEntry> = new Map();
  private readonly view: DataView;
  private readonly checked = new Set<string>();

  /** Parses the central directory of `bytes`; `source` names the file in errors. */
  constructor(readonly bytes: Uint8Array, readonly source: string) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.parse();
  }

  private fail(what: string): never {
    throw new PthError(`${this.source}: ${what}`);
  }

  private u16(at: number): number {
    if (at < 0 || at + 2 > this.bytes.length) {
      this.fail(`truncated zip (a record at byte ${at} runs past the end)`);
    }
    return this.view.getUint16(at, true);
  }

  private u32(at: number): number {
    if (at < 0 || at + 4 > this.bytes.length) {
      this.fail(`truncated zip (a record at byte ${at} runs past the end)`);
    }
    return this.view.getUint32(at, true);
  }

  private u64(at: number): number {
    const lo = this.u32(at), hi = this.u32(at + 4);
    if (hi >= 0x200000) this.fail(`zip64 value at byte ${at} is beyond 2^53`);
    return hi * 2 ** 32 + lo;
  }

  private parse(): void {
    const n = this.bytes.length;
    let eocd = -1;
    for (let at = n - 22; at >= Math.max(0, n - 22 - 0xffff); at--) {
      if (this.view.getUint32(at, true) === SIG_EOCD) {
        eocd = at;
        break;
      }
    }
    if (eocd < 0) {
      this.fail(`not a zip archive or truncated (no end-of-central-directory record in its ${n} bytes)`);
    }
    let count = this.u16(eocd + 10);
    let cdSize = this.u32(eocd + 12);
    let cdOffset = this.u32(eocd + 16);
    if (count === 0xffff || cdSize === MAX32 || cdOffset === MAX32) {
      const locator = eocd - 20;
      if (locator < 0 || this.u32(locator) !== SIG_LOCATOR64) {
        this.fail("zip64 end record locator is missing");
      }
      const at = this.u64(locator + 8);
      if (this.u32(at) !== SIG_EOCD64) this.fail(`no zip64 end record at byte ${at}`);
      count = this.u64(at + 32);
      cdSize = this.u64(at + 40);
      cdOffset = this.u64(at + 48);
    }
    if (cdOffset + cdSize > n) {
      this.fail(`truncated zip (central directory at ${cdOffset}+${cdSize} lies past the end, ${n} bytes)`);
    }
    let at = cdOffset;
    for (let i = 0; i < count; i++) {
      if (this.u32(at) !== SIG_CENTRAL) this.fail(`central directory entry ${i} at byte ${at} is corrupt`);
      const flags = this.u16(at + 8);
      const method = this.u16(at + 10);
      const crc = this.u32(at + 16);
      let compressed = this.u32(at + 20);
      let size = this.u32(at + 24);
      const nameLength = this.u16(at + 28),
        extraLength = this.u16(at + 30),
        commentLength = this.u16(at + 32);
      let localOffset = this.u32(at + 42);
      const nameBytes = this.slice(at + 46, nameLength, "an entry name");
      const name = NAMES.decode(nameBytes);
      // zip64 extra field: the 64-bit values of the fields that hold 0xFFFFFFFF, in this order
      let x = at + 46 + nameLength;
      const extraEnd = x + extraLength;
      while (x + 4 <= extraEnd) {
        const id = this.u16(x), len = this.u16(x + 2);
        if (id === 0x0001) {
          let y = x + 4;
          if (size === MAX32) (size = this.u64(y)), (y += 8);
          if (compressed === MAX32) (compressed = this.u64(y)), (y += 8);
          if (localOffset === MAX32) localOffset = this.u64(y);
        }
        x += 4 + len;
      }
      if (flags & 1) this.fail(`entry "${name}" is encrypted`);
      if (method !== 0) {
        this.fail(`entry "${name}" is compressed (method ${method}); torch writes STORED entries only`);
      }
      if (compressed !== size) this.fail(`entry "${name}": stored size ${compressed} ≠ size ${size}`);
      if (this.u32(localOffset) !== SIG_LOCAL) {
        this.fail(`entry "${name}": no local header at byte ${localOffset}`);
      }
      const dataOffset = localOffset + 30 + this.u16(localOffset + 26) + this.u16(localOffset + 28);
      if (dataOffset + size > n) {
        this.fail(
          `truncated zip: entry "${name}" needs bytes ${dataOffset}–${dataOffset + size}, the file has ${n}`,
        );
      }
      this.entries.set(name, { name, dataOffset, size, crc });
      at += 46 + nameLength + extraLength + commentLength;
    }
  }

  private slice(at: number, length: number, what: string): Uint8Array {
    if (at < 0 || at + length > this.bytes.length) this.fail(`truncated zip (${what} at byte ${at})`);
    return this.bytes.subarray(at, at + length);
  }

  /** The data of entry `name` (a view, not a copy), its CRC checked once. */
  read(name: string): Uint8Array {
    const e = this.entries.get(name);
    if (!e) this.fail(`the archive has no entry "${name}"`);
    const data = this.bytes.subarray(e.dataOffset, e.dataOffset + e.size);
    if (!this.checked.has(name)) {
      const actual = crc32(data);
      if (actual !== e.crc) {
        this.fail(
          `entry "${name}" is corrupt: CRC-32 ${hex(actual)}, the archive records ${hex(e.crc)}`,
        );
      }
      this.checked.add(name);
    }
    return data;
  }
}

const hex = (x: number) => "0x" + x.toString(16).padStart(8, "0");

/** Options of {@link writeZip}. */
export interface ZipWriteOptions {
  /** Data alignment of each entry (torch: 64). */
  align?: number;
  /** Sizes and offsets at or above this use zip64 records (default 0xFFFFFFFF; lower only to test). */
  zip64Threshold?: number;
  /** Write the zip64 end records even when nothing needs them (as torch always does). */
  zip64End?: boolean;
}

/** Writes STORED entries into one zip archive, torch's layout: data aligned, no data descriptors. */
export function writeZip(
  entries: { name: string; data: Uint8Array }[],
  { align = 64, zip64Threshold = MAX32, zip64End = false }: ZipWriteOptions = {},
): Uint8Array {
  const enc = new TextEncoder();
  const chunks: Uint8Array[] = [];
  let offset = 0;
  const push = (b: Uint8Array) => {
    chunks.push(b);
    offset += b.length;
  };
  const central: Uint8Array[] = [];
  let needs64 = zip64End || entries.length >= 0xffff;
  for (const { name, data } of entries) {
    const nameBytes = enc.encode(name);
    const crc = crc32(data);
    const localOffset = offset;
    const big = data.length >= zip64Threshold || localOffset >= zip64Threshold;
    needs64 ||= big;
    // local header: zip64 sizes live in a zip64 extra (then the 32-bit fields hold 0xFFFFFFFF)
    const local64 = data.length >= zip64Threshold;
    const base = 30 + nameBytes.length + (local64 ? 20 : 0);
    const pad = (align - ((localOffset + base + 4) % align)) % align;
    const header = new Uint8Array(base + 4 + pad);
    const h = new DataView(header.buffer);
    h.setUint32(0, SIG_LOCAL, true);
    h.setUint16(4, local64 ? 45 : 20, true);
    h.setUint16(6, 0x0800, true); // UTF-8 names
    h.setUint32(14, crc, true);
    h.setUint32(18, local64 ? MAX32 : data.length, true);
    h.setUint32(22, local64 ? MAX32 : data.length, true);
    h.setUint16(26, nameBytes.length, true);
    h.setUint16(28, header.length - 30 - nameBytes.length, true);
    header.set(nameBytes, 30);
    let x = 30 + nameBytes.length;
    if (local64) {
      h.setUint16(x, 0x0001, true);
      h.setUint16(x + 2, 16, true);
      h.setBigUint64(x + 4, BigInt(data.length), true);
      h.setBigUint64(x + 12, BigInt(data.length), true);
      x += 20;
    }
    header[x] = 0x46, header[x + 1] = 0x42; // "FB": torch's alignment padding field
    h.setUint16(x + 2, pad, true);
    header.fill(0x5a, x + 4); // "Z"
    push(header);
    push(data);
    // central directory entry
    const ext: number[] = [];
    if (data.length >= zip64Threshold) ext.push(data.length, data.length);
    if (localOffset >= zip64Threshold) ext.push(localOffset);
    const c = new Uint8Array(46 + nameBytes.length + (ext.length ? 4 + 8 * ext.length : 0));
    const v = new DataView(c.buffer);
    v.setUint32(0, SIG_CENTRAL, true);
    v.setUint16(4, 45, true);
    v.setUint16(6, ext.length ? 45 : 20, true);
    v.setUint16(8, 0x0800, true);
    v.setUint32(16, crc, true);
    v.setUint32(20, data.length >= zip64Threshold ? MAX32 : data.length, true);
    v.setUint32(24, data.length >= zip64Threshold ? MAX32 : data.length, true);
    v.setUint16(28, nameBytes.length, true);
    v.setUint16(30, ext.length ? 4 + 8 * ext.length : 0, true);
    v.setUint32(42, localOffset >= zip64Threshold ? MAX32 : localOffset, true);
    c.set(nameBytes, 46);
    if (ext.length) {
      let y = 46 + nameBytes.length;
      v.setUint16(y, 0x0001, true);
      v.setUint16(y + 2, 8 * ext.length, true);
      y += 4;
      for (const value of ext) (v.setBigUint64(y, BigInt(value), true)), (y += 8);
    }
    central.push(c);
  }
  const cdOffset = offset;
  for (const c of central) push(c);
  const cdSize = offset - cdOffset;
  needs64 ||= cdOffset >= zip64Threshold || cdSize >= zip64Threshold;
  if (needs64) {
    const eocd64At = offset;
    const r = new Uint8Array(56 + 20);
    const v = new DataView(r.buffer);
    v.setUint32(0, SIG_EOCD64, true);
    v.setBigUint64(4, 44n, true);
    v.setUint16(12, 45, true);
    v.setUint16(14, 45, true);
    v.setBigUint64(24, BigInt(entries.length), true);
    v.setBigUint64(32, BigInt(entries.length), true);
    v.setBigUint64(40, BigInt(cdSize), true);
    v.setBigUint64(48, BigInt(cdOffset), true);
    v.setUint32(56, SIG_LOCATOR64, true);
    v.setBigUint64(64, BigInt(eocd64At), true);
    v.setUint32(72, 1, true);
    push(r);
  }
  const end = new Uint8Array(22);
  const e = new DataView(end.buffer);
  e.setUint32(0, SIG_EOCD, true);
  e.setUint16(8, needs64 ? 0xffff : entries.length, true);
  e.setUint16(10, needs64 ? 0xffff : entries.length, true);
  e.setUint32(12, needs64 ? MAX32 : cdSize, true);
  e.setUint32(16, needs64 ? MAX32 : cdOffset, true);
  push(end);
  const out = new Uint8Array(offset);
  let at = 0;
  for (const b of chunks) (out.set(b, at)), (at += b.length);
  return out;
}
