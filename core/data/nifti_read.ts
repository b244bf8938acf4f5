/**
 * Reading NIfTI-1 and NIfTI-2 files (`.nii`, `.nii.gz`) into float32 volumes.
 *
 * Header fields are parsed by nifti-reader-js; this module adds what a training pipeline needs on top:
 * validation with errors that name the file and the problem (wrong magic, unsupported datatype, zero or
 * negative dims, 2D images, absurd sizes rejected before any allocation, header/file size mismatch,
 * NaN/Inf voxels), the NIfTI affine rules (sform, else qform, else pixdim), `scl_slope`/`scl_inter`,
 * big-endian data, and an explicit choice for 4D files (one frame by index, or all frames split).
 *
 * @module
 */
import { NIFTI1, NIFTI2 } from "nifti-reader-js";
import { asDataFileError, DataFileError } from "./errors.ts";
import { gunzip, gunzipPrefix, gzipTrailerSize, isGzip } from "./gzip.ts";
import {
  type Affine,
  isUsableAffine,
  type Shape3,
  spacingFromAffine,
  type Volume,
  voxelCount,
} from "./volume.ts";

/** Voxel datatypes voxssl reads (NIfTI codes 2, 256, 4, 512, 8, 16, 64). */
export type NiftiDatatype = "uint8" | "int8" | "int16" | "uint16" | "int32" | "float32" | "float64";

/** NIfTI datatype codes and their bits per voxel. */
export const NIFTI_DATATYPES: Record<NiftiDatatype, { code: number; bits: number }> = {
  uint8: { code: 2, bits: 8 },
  int8: { code: 256, bits: 8 },
  int16: { code: 4, bits: 16 },
  uint16: { code: 512, bits: 16 },
  int32: { code: 8, bits: 32 },
  float32: { code: 16, bits: 32 },
  float64: { code: 64, bits: 64 },
};

const UNSUPPORTED_CODES: Record<number, string> = {
  0: "none",
  1: "binary",
  32: "complex64",
  128: "rgb24",
  768: "uint32",
  1024: "int64",
  1280: "uint64",
  1536: "float128",
  1792: "complex128",
  2048: "complex256",
  2304: "rgba32",
};

/** What voxssl keeps of a NIfTI header. */
export interface NiftiHeader {
  /** NIfTI-1 or NIfTI-2. */
  version: 1 | 2;
  /** Byte order of the file. */
  littleEndian: boolean;
  /** Stored voxel type. */
  datatype: NiftiDatatype;
  /** NIfTI `dim[1..dim[0]]`, in NIfTI order (i, j, k, t, ...). */
  dims: number[];
  /** Spatial shape in array order `[D, H, W]` = `[dim3, dim2, dim1]`. */
  shape: Shape3;
  /** Number of 3D volumes (product of dims 4..7); 1 for a 3D file. */
  frames: number;
  /** Voxel size `[sd, sh, sw]` in mm (from the affine's columns). */
  spacing: Shape3;
  /** Voxel-to-world matrix chosen by NIfTI's rules. */
  affine: Affine;
  /** Which header fields gave the affine. */
  affineSource: "sform" | "qform" | "pixdim";
  /** The header's qform_code. */
  qformCode: number;
  /** The header's sform_code. */
  sformCode: number;
  /** Effective scaling: stored · slope + inter (slope 1, inter 0 when the header has slope 0 or NaN). */
  sclSlope: number;
  /** Effective intercept (see sclSlope). */
  sclInter: number;
  /** Byte offset of the voxel data in the (decompressed) file. */
  voxOffset: number;
  /** Bytes of voxel data for all frames. */
  dataBytes: number;
  /** The header's descrip field. */
  description: string;
}

/** Guards applied before any voxel buffer is allocated. */
export interface NiftiLimits {
  /** Largest accepted number of voxels per 3D frame (default 2^28 ≈ 645³). */
  maxVoxels?: number;
  /** Largest accepted voxel data size in bytes, all frames (default 2^31). */
  maxBytes?: number;
}

/** Options of {@link readNifti}. */
export interface ReadNiftiOptions extends NiftiLimits {
  /** For 4D files: which 3D frame to return. A 4D file without it is an error, never silently truncated. */
  frame?: number;
  /** What to do with NaN/Inf voxels: `"error"` (default) rejects the file; `"zero"` replaces them by 0. */
  nonFinite?: "error" | "zero";
}

/** Time spent in each stage of a read, in milliseconds. */
export interface ReadTimings {
  /** Reading the file. */
  readMs: number;
  /** Inflating gzip. */
  decompressMs: number;
  /** Converting the stored values to float32. */
  decodeMs: number;
}

/** A decoded 3D NIfTI volume with its header. */
export interface NiftiVolume extends Volume {
  /** The file read. */
  path: string;
  /** Its parsed header. */
  header: NiftiHeader;
  /** The frame this volume is (0 for 3D files). */
  frame: number;
  /** Time per stage of the read. */
  timings: ReadTimings;
}

const DEFAULT_MAX_VOXELS = 2 ** 28;
const DEFAULT_MAX_BYTES = 2 ** 31;
/** Enough decompressed bytes for either header (NIfTI-2 is 540 bytes). */
const HEADER_PREFIX = 544;
/** Bytes after the voxel data that we tolerate (and ignore). */
const TRAILING_SLACK = 65536;

function headerVersion(bytes: Uint8Array, path: string): { version: 1 | 2; littleEndian: boolean } {
  if (bytes.length < 348) {
    throw new DataFileError(path, `too short for a NIfTI header (${bytes.length} bytes, need at least 348)`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (const littleEndian of [true, false]) {
    const size = view.getInt32(0, littleEndian);
    if (size === 348) return { version: 1, littleEndian };
    if (size === 540) return { version: 2, littleEndian };
  }
  throw new DataFileError(
    path,
    `wrong magic: sizeof_hdr is ${
      view.getInt32(0, true)
    }, not 348 (NIfTI-1) or 540 (NIfTI-2); not a NIfTI file`,
  );
}

function checkMagic(bytes: Uint8Array, version: 1 | 2, path: string): void {
  const at = version === 1 ? 344 : 4;
  const magic = String.fromCharCode(bytes[at], bytes[at + 1], bytes[at + 2]);
  if (magic === `n+${version}`) return;
  if (magic === `ni${version}`) {
    throw new DataFileError(path, "is the header of a .hdr/.img pair; only single-file NIfTI is supported");
  }
  const shown = JSON.stringify(String.fromCharCode(...bytes.subarray(at, at + 4)));
  throw new DataFileError(path, `wrong magic ${shown} (expected "n+${version}")`);
}

function datatypeOf(code: number, bits: number, path: string): NiftiDatatype {
  const entry = Object.entries(NIFTI_DATATYPES).find(([, d]) => d.code === code);
  if (!entry) {
    const name = UNSUPPORTED_CODES[code] ?? "unknown";
    throw new DataFileError(
      path,
      `unsupported datatype code ${code} (${name}); supported: ${Object.keys(NIFTI_DATATYPES).join(", ")}`,
    );
  }
  if (bits !== entry[1].bits) {
    throw new DataFileError(
      path,
      `bitpix ${bits} does not match datatype ${entry[0]} (${entry[1].bits} bits)`,
    );
  }
  return entry[0] as NiftiDatatype;
}

function checkDims(dims: number[], path: string): number[] {
  const ndim = dims[0];
  if (!(ndim >= 1 && ndim <= 7)) throw new DataFileError(path, `dim[0] = ${ndim} is outside 1..7`);
  const sizes = dims.slice(1, ndim + 1);
  if (sizes.some((n) => !Number.isSafeInteger(n) || n <= 0)) {
    throw new DataFileError(path, `zero or negative dimension: dims ${sizes.join("×")}`);
  }
  if (ndim < 3 || sizes[2] === 1) {
    throw new DataFileError(path, `2D image (dims ${sizes.join("×")}); voxssl needs 3D volumes`);
  }
  return sizes;
}

function quaternionAffine(h: NIFTI1 | NIFTI2, pix: number[]): Affine {
  let [b, c, d] = [h.quatern_b, h.quatern_c, h.quatern_d];
  let a = 1 - (b * b + c * c + d * d);
  if (a < 1e-7) { // nifti1_io: a 180° rotation; renormalise (b, c, d)
    const n = Math.hypot(b, c, d);
    [a, b, c, d] = [0, b / n, c / n, d / n];
  } else a = Math.sqrt(a);
  const qfac = h.pixDims[0] < 0 ? -1 : 1;
  const R = [
    [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
    [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
    [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b],
  ];
  const scale = [pix[0], pix[1], pix[2] * qfac];
  const offset = [h.qoffset_x, h.qoffset_y, h.qoffset_z];
  const out: Affine = [];
  for (let r = 0; r < 3; r++) out.push(R[r][0] * scale[0], R[r][1] * scale[1], R[r][2] * scale[2], offset[r]);
  return [...out, 0, 0, 0, 1];
}

function sformAffine(bytes: Uint8Array, version: 1 | 2, littleEndian: boolean): Affine {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Affine = [];
  for (let i = 0; i < 12; i++) {
    out.push(
      version === 1 ? view.getFloat32(280 + 4 * i, littleEndian) : view.getFloat64(400 + 8 * i, littleEndian),
    );
  }
  return [...out, 0, 0, 0, 1];
}

/** NIfTI's rules: sform when sform_code > 0, else qform when qform_code > 0, else pixdim scaling. */
function chooseAffine(
  bytes: Uint8Array,
  h: NIFTI1 | NIFTI2,
  version: 1 | 2,
  path: string,
): { affine: Affine; source: NiftiHeader["affineSource"] } {
  const pix = h.pixDims.slice(1, 4).map(Math.abs);
  const pixOk = pix.every((p) => Number.isFinite(p) && p > 0);
  if (h.sform_code > 0) {
    const affine = sformAffine(bytes, version, h.littleEndian);
    if (isUsableAffine(affine)) return { affine, source: "sform" };
  }
  if (h.qform_code > 0 && pixOk) {
    const affine = quaternionAffine(h, pix);
    if (isUsableAffine(affine)) return { affine, source: "qform" };
  }
  if (!pixOk) {
    throw new DataFileError(path, `invalid voxel size pixdim ${pix.join(", ")} and no usable sform/qform`);
  }
  return { affine: [pix[0], 0, 0, 0, 0, pix[1], 0, 0, 0, 0, pix[2], 0, 0, 0, 0, 1], source: "pixdim" };
}

/**
 * Parses and validates a NIfTI header from the first bytes of an (uncompressed) file. Checks magic,
 * datatype, dims and the size limits; does not look at the voxel data.
 */
export function parseNiftiHeader(bytes: Uint8Array, path: string, limits: NiftiLimits = {}): NiftiHeader {
  const { version, littleEndian } = headerVersion(bytes, path);
  const size = version === 1 ? 348 : 540;
  if (bytes.length < size) {
    throw new DataFileError(path, `truncated NIfTI-2 header (${bytes.length} of 540 bytes)`);
  }
  checkMagic(bytes, version, path);
  const h = version === 1 ? new NIFTI1() : new NIFTI2();
  // Exactly the header bytes: nifti-reader-js then skips extension parsing, which we do not need.
  h.readHeader(bytes.slice(0, size).buffer);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // NIfTI-2 int64 fields are read here: nifti-reader-js's 64-bit helper mangles negative values.
  const dims = version === 1
    ? h.dims
    : Array.from({ length: 8 }, (_, i) => Number(view.getBigInt64(16 + 8 * i, littleEndian)));
  const voxOffset = version === 1 ? h.vox_offset : Number(view.getBigInt64(168, littleEndian));
  const datatype = datatypeOf(h.datatypeCode, h.numBitsPerVoxel, path);
  const sizes = checkDims(dims, path);
  const perFrame = sizes[0] * sizes[1] * sizes[2];
  const frames = voxelCount(sizes.slice(3));
  const maxVoxels = limits.maxVoxels ?? DEFAULT_MAX_VOXELS;
  const maxBytes = limits.maxBytes ?? DEFAULT_MAX_BYTES;
  if (perFrame > maxVoxels) {
    throw new DataFileError(
      path,
      `absurd dims ${sizes.join("×")}: ${perFrame} voxels per volume exceeds the limit ${maxVoxels}`,
    );
  }
  const dataBytes = perFrame * frames * (NIFTI_DATATYPES[datatype].bits / 8);
  if (dataBytes > maxBytes) {
    throw new DataFileError(
      path,
      `absurd dims ${sizes.join("×")}: ${dataBytes} bytes of voxels exceeds the limit ${maxBytes}`,
    );
  }
  if (!Number.isFinite(voxOffset) || voxOffset < size) {
    throw new DataFileError(path, `vox_offset ${voxOffset} lies inside the ${size}-byte header`);
  }
  const { affine, source } = chooseAffine(bytes, h, version, path);
  const slopeOk = Number.isFinite(h.scl_slope) && h.scl_slope !== 0;
  return {
    version,
    littleEndian,
    datatype,
    dims: sizes,
    shape: [sizes[2], sizes[1], sizes[0]],
    frames,
    spacing: spacingFromAffine(affine),
    affine,
    affineSource: source,
    qformCode: h.qform_code,
    sformCode: h.sform_code,
    sclSlope: slopeOk ? h.scl_slope : 1,
    sclInter: slopeOk && Number.isFinite(h.scl_inter) ? h.scl_inter : 0,
    voxOffset: Math.floor(voxOffset),
    dataBytes,
    description: h.description ?? "",
  };
}

function sizeProblem(header: NiftiHeader, available: number, what: string): string {
  const need = header.voxOffset + header.dataBytes;
  return `header needs ${need} bytes (${header.dataBytes} of voxels at offset ${header.voxOffset}) ` +
    `but ${what} ${available}: truncated file or wrong dims`;
}

async function readFile(path: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (error) {
    throw asDataFileError(path, error);
  }
}

/**
 * Reads and validates only the header of a file (a few KiB of it), plus the cheap size checks: file
 * size for `.nii`, the gzip trailer's size for `.nii.gz`. What `voxssl index` checks per file.
 */
export async function readNiftiHeader(path: string, limits: NiftiLimits = {}): Promise<NiftiHeader> {
  let file: Deno.FsFile | undefined;
  try {
    file = await Deno.open(path, { read: true });
    const { size } = await file.stat();
    const prefix = new Uint8Array(Math.min(size, 65536));
    let got = 0;
    while (got < prefix.length) {
      const n = await file.read(prefix.subarray(got));
      if (n === null) break;
      got += n;
    }
    if (!isGzip(prefix)) {
      const header = parseNiftiHeader(prefix.subarray(0, got), path, limits);
      const need = header.voxOffset + header.dataBytes;
      if (size < need) throw new DataFileError(path, sizeProblem(header, size, "the file has"));
      return header;
    }
    const header = parseNiftiHeader(
      await gunzipPrefix(prefix.subarray(0, got), path, HEADER_PREFIX),
      path,
      limits,
    );
    const trailer = new Uint8Array(4);
    await file.seek(size - 4, Deno.SeekMode.Start);
    await file.read(trailer);
    const isize = gzipTrailerSize(new Uint8Array([...new Uint8Array(14), ...trailer]));
    // A valid single-member gzip states exactly the size (we allow 64 KiB of trailing bytes); the garbage
    // trailer of a truncated file almost never lands in that window. Multi-member gzip is not supported.
    const need = (header.voxOffset + header.dataBytes) % 2 ** 32;
    if (isize < need || isize > need + TRAILING_SLACK) {
      throw new DataFileError(path, sizeProblem(header, isize, "the gzip trailer says the data has"));
    }
    return header;
  } catch (error) {
    throw asDataFileError(path, error);
  } finally {
    file?.close();
  }
}

const ARRAY_OF: Record<
  NiftiDatatype,
  new (buffer: ArrayBuffer, offset: number, length: number) => ArrayLike<number>
> = {
  uint8: Uint8Array,
  int8: Int8Array,
  int16: Int16Array,
  uint16: Uint16Array,
  int32: Int32Array,
  float32: Float32Array,
  float64: Float64Array,
};

/** A typed view of one frame's stored values, copied (and byte-swapped) when unaligned or big-endian. */
function storedValues(bytes: Uint8Array, header: NiftiHeader, frame: number): ArrayLike<number> {
  const width = NIFTI_DATATYPES[header.datatype].bits / 8;
  const count = voxelCount(header.shape);
  const start = header.voxOffset + frame * count * width;
  const aligned = (bytes.byteOffset + start) % width === 0;
  if (header.littleEndian && aligned) {
    return new ARRAY_OF[header.datatype](bytes.buffer as ArrayBuffer, bytes.byteOffset + start, count);
  }
  const copy = bytes.slice(start, start + count * width);
  if (!header.littleEndian && width > 1) {
    for (let i = 0; i < copy.length; i += width) copy.subarray(i, i + width).reverse();
  }
  return new ARRAY_OF[header.datatype](copy.buffer, 0, count);
}

/** Applies scl_slope/scl_inter and checks for NaN/Inf: stored values → float32 voxels. */
function toFloat32(
  values: ArrayLike<number>,
  header: NiftiHeader,
  path: string,
  nonFinite: "error" | "zero",
): Float32Array {
  const out = new Float32Array(values.length);
  const { sclSlope: slope, sclInter: inter } = header;
  if (slope === 1 && inter === 0) out.set(values);
  else for (let i = 0; i < out.length; i++) out[i] = values[i] * slope + inter;
  let bad = 0;
  for (let i = 0; i < out.length; i++) {
    if (!Number.isFinite(out[i])) {
      bad++;
      out[i] = 0;
    }
  }
  if (bad > 0 && nonFinite === "error") {
    throw new DataFileError(path, `${bad} non-finite voxels (NaN/Inf) of ${out.length}`);
  }
  return out;
}

/** Frame selection rules for 4D files. */
function checkFrame(header: NiftiHeader, frame: number | undefined, path: string): number {
  if (frame === undefined) {
    if (header.frames === 1) return 0;
    throw new DataFileError(
      path,
      `4D image with ${header.frames} volumes (dims ${header.dims.join("×")}): choose one with ` +
        `frame 0..${header.frames - 1}, or split it with readNiftiFrames()`,
    );
  }
  if (!Number.isInteger(frame) || frame < 0 || frame >= header.frames) {
    throw new DataFileError(path, `frame ${frame} is outside 0..${header.frames - 1}`);
  }
  return frame;
}

/** Decodes decompressed NIfTI bytes into one 3D volume (sync; the file reading is the caller's). */
export function decodeNifti(bytes: Uint8Array, path: string, options: ReadNiftiOptions = {}): NiftiVolume {
  const header = parseNiftiHeader(bytes, path, options);
  if (bytes.length < header.voxOffset + header.dataBytes) {
    throw new DataFileError(path, sizeProblem(header, bytes.length, "the data has"));
  }
  const frame = checkFrame(header, options.frame, path);
  const t0 = performance.now();
  const data = toFloat32(storedValues(bytes, header, frame), header, path, options.nonFinite ?? "error");
  return {
    path,
    header,
    frame,
    data,
    shape: [...header.shape],
    spacing: [...header.spacing],
    affine: [...header.affine],
    timings: { readMs: 0, decompressMs: 0, decodeMs: performance.now() - t0 },
  };
}

/** Reads the file and inflates it if gzip; the header is validated before the voxel data is inflated. */
async function loadBytes(
  path: string,
  limits: NiftiLimits,
): Promise<{ bytes: Uint8Array; readMs: number; decompressMs: number }> {
  const t0 = performance.now();
  const raw = await readFile(path);
  const t1 = performance.now();
  if (!isGzip(raw)) return { bytes: raw, readMs: t1 - t0, decompressMs: 0 };
  const header = parseNiftiHeader(await gunzipPrefix(raw, path, HEADER_PREFIX), path, limits);
  // Inflate no more than the header asks for (plus slack for trailing bytes): a lying header cannot
  // make us allocate beyond what passed the limits above.
  const bytes = await gunzip(raw, path, header.voxOffset + header.dataBytes + TRAILING_SLACK);
  return { bytes, readMs: t1 - t0, decompressMs: performance.now() - t1 };
}

/**
 * Reads a `.nii` or `.nii.gz` file (gzip detected by its magic) into a float32 volume with
 * `scl_slope`/`scl_inter` applied. 4D files need `options.frame`. Every problem throws a
 * {@link DataFileError} naming the file.
 *
 * @example
 * ```ts
 * import { generatePhantom, readNifti, writeNifti } from "@voxssl/core";
 *
 * const path = await Deno.makeTempFile({ suffix: "_T1w.nii.gz" });
 * const phantom = generatePhantom({ shape: [8, 8, 8], spacing: [2, 1, 1] });
 * await writeNifti(path, { data: phantom.image, shape: phantom.shape, affine: phantom.affine });
 * const vol = await readNifti(path);
 * console.log(vol.shape, vol.spacing); // [D, H, W], [sd, sh, sw]: [8, 8, 8] [2, 1, 1]
 * await Deno.remove(path);
 * ```
 */
export async function readNifti(path: string, options: ReadNiftiOptions = {}): Promise<NiftiVolume> {
  const { bytes, readMs, decompressMs } = await loadBytes(path, options);
  const volume = decodeNifti(bytes, path, options);
  volume.timings.readMs = readMs;
  volume.timings.decompressMs = decompressMs;
  return volume;
}

/** Reads every frame of a (3D or 4D) file as separate 3D volumes: the "split" choice for 4D data. */
export async function readNiftiFrames(
  path: string,
  options: Omit<ReadNiftiOptions, "frame"> = {},
): Promise<NiftiVolume[]> {
  const { bytes, readMs, decompressMs } = await loadBytes(path, options);
  const first = decodeNifti(bytes, path, { ...options, frame: 0 });
  first.timings.readMs = readMs;
  first.timings.decompressMs = decompressMs;
  const rest = Array.from(
    { length: first.header.frames - 1 },
    (_, f) => decodeNifti(bytes, path, { ...options, frame: f + 1 }),
  );
  return [first, ...rest];
}

/** Reads a mask file as uint8 (1 where the stored value is non-zero), keeping its geometry. */
export async function readNiftiMask(
  path: string,
  options: ReadNiftiOptions = {},
): Promise<Volume<Uint8Array> & { path: string }> {
  const volume = await readNifti(path, { ...options, nonFinite: "zero" });
  const data = new Uint8Array(volume.data.length);
  for (let i = 0; i < data.length; i++) data[i] = volume.data[i] !== 0 ? 1 : 0;
  return { path, data, shape: volume.shape, spacing: volume.spacing, affine: volume.affine };
}
