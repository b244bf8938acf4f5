/**
 * Writing NIfTI files (`.nii`, `.nii.gz`) with their affine, for predictions, masks, synthetic data and
 * test fixtures. Both qform (the nearest rigid transform, as a quaternion) and sform (the exact affine)
 * are written, so every reader finds the geometry.
 *
 * @module
 */
import { gzip } from "./gzip.ts";
import { NIFTI_DATATYPES, type NiftiDatatype } from "./nifti_read.ts";
import type { Affine, Shape3 } from "./volume.ts";
import { voxelCount } from "./volume.ts";

/** What to write: voxels in array order `[D, H, W]` (several frames back to back for 4D) and the affine. */
export interface NiftiWriteInput {
  /** Voxel values, C-order `[D, H, W]` per frame. */
  data: ArrayLike<number>;
  /** Spatial shape `[D, H, W]`. */
  shape: Shape3;
  /** Voxel-to-world matrix. */
  affine: Affine;
}

/** Options of {@link encodeNifti} / {@link writeNifti}. */
export interface WriteNiftiOptions {
  /** Stored datatype (default float32); integers are rounded (Math.round: halves up) and clamped to the range. */
  datatype?: NiftiDatatype;
  /** Stored = (value − sclInter) / sclSlope; readers get value back (default slope 1, inter 0). */
  sclSlope?: number;
  /** See sclSlope. */
  sclInter?: number;
  /** Number of frames in `data` (default 1); more than one writes a 4D file. */
  frames?: number;
  /** NIfTI-1 (default) or NIfTI-2. */
  version?: 1 | 2;
  /** Byte order (default little-endian). */
  littleEndian?: boolean;
  /** qform/sform codes (default 1 = scanner anatomical for both). */
  qformCode?: number;
  /** See qformCode. */
  sformCode?: number;
  /** Header description (at most 79 characters are kept). */
  description?: string;
}

const RANGES: Partial<Record<NiftiDatatype, [number, number]>> = {
  uint8: [0, 255],
  int8: [-128, 127],
  int16: [-32768, 32767],
  uint16: [0, 65535],
  int32: [-2147483648, 2147483647],
};

/** Quaternion parameters of the rotation part of `affine` (nifti1_io's mat44_to_quatern, without the
 * polar decomposition: for non-orthogonal affines the sform stays exact and the qform is approximate). */
export function affineToQuaternion(
  affine: Affine,
): { b: number; c: number; d: number; qfac: number; pixdim: [number, number, number] } {
  const col = (c: number) => [affine[c], affine[4 + c], affine[8 + c]];
  const cols = [col(0), col(1), col(2)];
  const pixdim = cols.map((v) => Math.hypot(...v)) as [number, number, number];
  const r = cols.map((v, i) => v.map((x) => x / (pixdim[i] || 1)));
  const det = r[0][0] * (r[1][1] * r[2][2] - r[2][1] * r[1][2]) -
    r[1][0] * (r[0][1] * r[2][2] - r[2][1] * r[0][2]) +
    r[2][0] * (r[0][1] * r[1][2] - r[1][1] * r[0][2]);
  const qfac = det < 0 ? -1 : 1;
  if (qfac < 0) r[2] = r[2].map((x) => -x);
  // R[row][col] with columns r[col]
  const R = (i: number, j: number) => r[j - 1][i - 1];
  let a = R(1, 1) + R(2, 2) + R(3, 3) + 1;
  let b: number, c: number, d: number;
  if (a > 0.5) {
    a = 0.5 * Math.sqrt(a);
    b = 0.25 * (R(3, 2) - R(2, 3)) / a;
    c = 0.25 * (R(1, 3) - R(3, 1)) / a;
    d = 0.25 * (R(2, 1) - R(1, 2)) / a;
  } else {
    const xd = 1 + R(1, 1) - (R(2, 2) + R(3, 3));
    const yd = 1 + R(2, 2) - (R(1, 1) + R(3, 3));
    const zd = 1 + R(3, 3) - (R(1, 1) + R(2, 2));
    if (xd > 1) {
      b = 0.5 * Math.sqrt(xd);
      c = 0.25 * (R(1, 2) + R(2, 1)) / b;
      d = 0.25 * (R(1, 3) + R(3, 1)) / b;
      a = 0.25 * (R(3, 2) - R(2, 3)) / b;
    } else if (yd > 1) {
      c = 0.5 * Math.sqrt(yd);
      b = 0.25 * (R(1, 2) + R(2, 1)) / c;
      d = 0.25 * (R(2, 3) + R(3, 2)) / c;
      a = 0.25 * (R(1, 3) - R(3, 1)) / c;
    } else {
      d = 0.5 * Math.sqrt(zd);
      b = 0.25 * (R(1, 3) + R(3, 1)) / d;
      c = 0.25 * (R(2, 3) + R(3, 2)) / d;
      a = 0.25 * (R(2, 1) - R(1, 2)) / d;
    }
    if (a < 0) [b, c, d] = [-b, -c, -d];
  }
  return { b, c, d, qfac, pixdim };
}

function writeString(bytes: Uint8Array, at: number, length: number, text: string): void {
  for (let i = 0; i < Math.min(text.length, length - 1); i++) bytes[at + i] = text.charCodeAt(i) & 0x7f;
}

function storedData(
  input: NiftiWriteInput,
  count: number,
  datatype: NiftiDatatype,
  slope: number,
  inter: number,
): ArrayBufferView {
  const Out = {
    uint8: Uint8Array,
    int8: Int8Array,
    int16: Int16Array,
    uint16: Uint16Array,
    int32: Int32Array,
    float32: Float32Array,
    float64: Float64Array,
  }[datatype];
  const out = new Out(count);
  const range = RANGES[datatype];
  for (let i = 0; i < count; i++) {
    const v = (input.data[i] - inter) / slope;
    if (!range) out[i] = v;
    else out[i] = Number.isFinite(v) ? Math.min(range[1], Math.max(range[0], Math.round(v))) : 0;
  }
  return out;
}

/** The bytes of a single-file NIfTI (uncompressed). */
export function encodeNifti(input: NiftiWriteInput, options: WriteNiftiOptions = {}): Uint8Array {
  const datatype = options.datatype ?? "float32";
  const version = options.version ?? 1;
  const le = options.littleEndian ?? true;
  const frames = options.frames ?? 1;
  const slope = options.sclSlope ?? 1;
  const inter = options.sclInter ?? 0;
  const count = voxelCount(input.shape) * frames;
  if (input.data.length !== count) {
    throw new RangeError(`encodeNifti: data has ${input.data.length} values, shape × frames needs ${count}`);
  }
  const { bits, code } = NIFTI_DATATYPES[datatype];
  const voxOffset = version === 1 ? 352 : 544;
  const bytes = new Uint8Array(voxOffset + count * (bits / 8));
  const view = new DataView(bytes.buffer);
  const [D, H, W] = input.shape;
  const dims = frames > 1 ? [4, W, H, D, frames, 1, 1, 1] : [3, W, H, D, 1, 1, 1, 1];
  const q = affineToQuaternion(input.affine);
  const pixdim = [q.qfac, ...q.pixdim, 1, 1, 1, 1];
  const srow = input.affine.slice(0, 12);
  const qoffset = [input.affine[3], input.affine[7], input.affine[11]];
  const qformCode = options.qformCode ?? 1;
  const sformCode = options.sformCode ?? 1;
  if (version === 1) {
    view.setInt32(0, 348, le);
    bytes[38] = 0x72; // 'r', regular
    dims.forEach((n, i) => view.setInt16(40 + 2 * i, n, le));
    view.setInt16(70, code, le);
    view.setInt16(72, bits, le);
    pixdim.forEach((p, i) => view.setFloat32(76 + 4 * i, p, le));
    view.setFloat32(108, voxOffset, le);
    view.setFloat32(112, slope, le);
    view.setFloat32(116, inter, le);
    bytes[123] = 2 | 8; // mm, seconds
    writeString(bytes, 148, 80, options.description ?? "voxssl");
    view.setInt16(252, qformCode, le);
    view.setInt16(254, sformCode, le);
    [q.b, q.c, q.d, ...qoffset].forEach((v, i) => view.setFloat32(256 + 4 * i, v, le));
    srow.forEach((v, i) => view.setFloat32(280 + 4 * i, v, le));
    writeString(bytes, 344, 4, "n+1");
  } else {
    view.setInt32(0, 540, le);
    bytes.set([0x6e, 0x2b, 0x32, 0, 0x0d, 0x0a, 0x1a, 0x0a], 4); // "n+2\0\r\n\032\n"
    view.setInt16(12, code, le);
    view.setInt16(14, bits, le);
    dims.forEach((n, i) => view.setBigInt64(16 + 8 * i, BigInt(n), le));
    pixdim.forEach((p, i) => view.setFloat64(104 + 8 * i, p, le));
    view.setBigInt64(168, BigInt(voxOffset), le);
    view.setFloat64(176, slope, le);
    view.setFloat64(184, inter, le);
    writeString(bytes, 240, 80, options.description ?? "voxssl");
    view.setInt32(344, qformCode, le);
    view.setInt32(348, sformCode, le);
    [q.b, q.c, q.d, ...qoffset].forEach((v, i) => view.setFloat64(352 + 8 * i, v, le));
    srow.forEach((v, i) => view.setFloat64(400 + 8 * i, v, le));
    view.setInt32(500, 2 | 8, le);
  }
  const stored = storedData(input, count, datatype, slope, inter);
  const data = new Uint8Array(stored.buffer);
  if (!le && bits > 8) {
    const width = bits / 8;
    for (let i = 0; i < data.length; i += width) data.subarray(i, i + width).reverse();
  }
  bytes.set(data, voxOffset);
  return bytes;
}

/**
 * Writes a NIfTI file, gzip-compressed when `path` ends in `.gz`. The file appears atomically (written
 * to a temporary name, then renamed), so a crash never leaves a half-written volume under `path`.
 */
export async function writeNifti(
  path: string,
  input: NiftiWriteInput,
  options: WriteNiftiOptions = {},
): Promise<void> {
  const raw = encodeNifti(input, options);
  const bytes = path.endsWith(".gz") ? await gzip(raw) : raw;
  const tmp = `${path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  await Deno.writeFile(tmp, bytes);
  await Deno.rename(tmp, path);
}
