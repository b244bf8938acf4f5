/**
 * Test fixtures for the data pipeline: temp folders, small random volumes, the bad-input corpus, and the
 * real-scan folders (tests using those skip with a message when they are absent).
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { encodeNifti } from "../../../core/data/nifti_write.ts";
import { gzip } from "../../../core/data/gzip.ts";
import type { Affine, Shape3 } from "../../../core/data/volume.ts";
import { seededRandom } from "../../helpers.ts";

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

/** `../shared/data/<name>` relative to the repository root. */
export function sharedData(name: string): string {
  return join(repoRoot, "..", "shared", "data", name);
}

/** True when the folder exists; otherwise prints why the tests that need it are skipped. */
export function haveFolder(path: string, what: string): boolean {
  try {
    if (Deno.statSync(path).isDirectory) return true;
  } catch {
    // absent
  }
  console.log(`skipping ${what} tests: ${path} is absent`);
  return false;
}

/** A fresh temp folder removed by the returned `cleanup`. */
export async function tempDir(
  prefix = "voxssl-data-",
): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await Deno.makeTempDir({ prefix });
  return { dir, cleanup: () => Deno.remove(dir, { recursive: true }).catch(() => {}) };
}

/** `n` float32 values uniform in [lo, hi). */
export function randomFloats(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const next = seededRandom(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * next();
  return out;
}

/** An oblique but orthogonal affine with flips and an offset (rotation about z by 20°, x flipped). */
export function obliqueAffine(spacing: [number, number, number] = [1.5, 0.8, 2.5]): Affine {
  const [sw, sh, sd] = spacing;
  const c = Math.cos(0.35), s = Math.sin(0.35);
  return [-c * sw, -s * sh, 0, 12.5, -s * sw, c * sh, 0, -40.25, 0, 0, sd, 7, 0, 0, 0, 1];
}

/** A small NIfTI-1 volume with values 1..n (no zeros, so every voxel is "foreground"). */
export function smallNifti(shape: Shape3 = [4, 5, 6]): Uint8Array {
  const n = shape[0] * shape[1] * shape[2];
  return encodeNifti({
    data: Float32Array.from({ length: n }, (_, i) => i + 1),
    shape,
    affine: obliqueAffine(),
  });
}

/** One bad input: its path and a phrase its error must contain. */
export interface BadCase {
  name: string;
  path: string;
  expect: string;
}

function setInt16(bytes: Uint8Array, at: number, value: number): Uint8Array {
  new DataView(bytes.buffer).setInt16(at, value, true);
  return bytes;
}

/**
 * Writes the bad-input corpus of issue 4 into `dir` and returns each case with the phrase its error must
 * contain: truncated and corrupted gzip (in the header and deep in the body), wrong magic, header/file size mismatch, zero and negative dims,
 * NaN/Inf voxels, a 2D image, absurd dims, an unsupported datatype, an empty file, unreadable paths.
 */
export async function writeBadCorpus(dir: string): Promise<BadCase[]> {
  const cases: BadCase[] = [];
  const add = async (name: string, bytes: Uint8Array | null, expect: string) => {
    const path = join(dir, name);
    if (bytes) await Deno.writeFile(path, bytes);
    cases.push({ name, path, expect });
  };
  const good = smallNifti([8, 8, 8]);
  const goodGz = await gzip(good);
  await add("truncated.nii.gz", goodGz.slice(0, Math.floor(goodGz.length / 2)), "gzip");
  const corrupted = goodGz.slice();
  for (let i = 20; i < corrupted.length - 20; i += 7) corrupted[i] ^= 0x5a;
  await add("corrupted.nii.gz", corrupted, "gzip");
  const wrongSize = good.slice();
  new DataView(wrongSize.buffer).setInt32(0, 123, true);
  // damage past the first 64 KiB: the header and the gzip trailer look fine, only a full read sees it
  const big = encodeNifti({
    data: randomFloats(48 * 48 * 48, 77),
    shape: [48, 48, 48],
    affine: obliqueAffine(),
  });
  const bigGz = await gzip(big);
  for (let i = bigGz.length - 5000; i < bigGz.length - 4000; i += 3) bigGz[i] ^= 0xa5;
  await add("corrupted_body.nii.gz", bigGz, "gzip");
  await add("wrong_magic.nii", wrongSize, "magic");
  const badMagic = good.slice();
  badMagic.set([0x78, 0x79, 0x7a], 344);
  await add("wrong_magic_string.nii", badMagic, "magic");
  await add("size_mismatch.nii", good.slice(0, 352 + 100), "truncated file or wrong dims");
  await add("size_mismatch.nii.gz", await gzip(good.slice(0, 352 + 100)), "truncated file or wrong dims");
  await add("zero_dim.nii", setInt16(good.slice(), 42, 0), "zero or negative dimension");
  await add("negative_dim.nii", setInt16(good.slice(), 44, -5), "zero or negative dimension");
  const nan = encodeNifti({
    data: Float32Array.from({ length: 64 }, (_, i) => i === 3 ? NaN : i === 9 ? Infinity : i),
    shape: [4, 4, 4],
    affine: obliqueAffine(),
  });
  await add("nan_inf.nii.gz", await gzip(nan), "non-finite");
  const flat = setInt16(smallNifti([1, 8, 8]), 40, 2);
  await add("flat_2d.nii.gz", await gzip(flat), "2D image");
  const absurd = good.slice(0, 352);
  [3, 30000, 30000, 30000].forEach((v, i) => setInt16(absurd, 40 + 2 * i, v));
  await add("absurd_dims.nii", absurd, "absurd dims");
  await add("absurd_dims.nii.gz", await gzip(absurd), "absurd dims");
  await add("complex.nii", setInt16(setInt16(good.slice(), 70, 32), 72, 64), "unsupported datatype");
  await add("empty.nii.gz", new Uint8Array(0), "too short");
  await Deno.mkdir(join(dir, "directory.nii.gz"));
  await add("directory.nii.gz", null, "directory");
  await Deno.symlink(join(dir, "no-such-target.nii.gz"), join(dir, "dangling.nii.gz"));
  await add("dangling.nii.gz", null, "not found");
  if (Deno.uid() !== 0) { // root reads anything: the permission case only exists for other users
    await add("unreadable.nii.gz", goodGz, "permission denied");
    await Deno.chmod(join(dir, "unreadable.nii.gz"), 0o000);
  }
  return cases;
}
