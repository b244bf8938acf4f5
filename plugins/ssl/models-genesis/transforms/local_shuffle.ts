/**
 * Models Genesis' local pixel shuffle, as nnssl runs it: 10 000 windows, each side uniform in
 * {1 … ⌊dim/10⌋} per axis (1–16 at 160), its start uniform over the positions where it fits; the voxels of
 * each window are read from the unmodified image, permuted (Fisher–Yates) and written into the output.
 * Windows overlap freely and a later window overwrites an earlier one's output with a permutation of the
 * original voxels, as in nnssl (so the output's multiset of values can differ from the input's where
 * windows overlap).
 *
 * A window plan ({@link drawShuffleWindows}) is drawn first; the permutations come from a second stream.
 *
 * @module
 */
import type { Rng } from "@voxssl/core";

/** Options of {@link drawShuffleWindows}. */
export interface ShuffleOptions {
  /** Number of windows (nnssl: 10 000). */
  windows?: number;
}

/** Windows packed six integers each: start d, h, w, then size d, h, w. */
export type ShuffleWindows = Int32Array;

/**
 * The largest window side along an axis of `dim` voxels: ⌊dim/10⌋, at least 1 (nnssl fails for dim < 10,
 * where Python's `randint(1, 0)` has no value).
 */
export function maxWindowSide(dim: number): number {
  return Math.max(1, Math.floor(dim / 10));
}

/**
 * Draws the windows of one shuffle, in nnssl's order per window: the three sides, then the three starts
 * (each start uniform in [0, dim − side]).
 */
export function drawShuffleWindows(
  shape: readonly [number, number, number],
  rng: Rng,
  options: ShuffleOptions = {},
): ShuffleWindows {
  const count = options.windows ?? 10_000;
  const out = new Int32Array(6 * count);
  const top = shape.map(maxWindowSide);
  for (let k = 0; k < count; k++) {
    const o = 6 * k;
    for (let a = 0; a < 3; a++) out[o + 3 + a] = 1 + Math.floor(rng.next() * top[a]);
    for (let a = 0; a < 3; a++) out[o + a] = Math.floor(rng.next() * (shape[a] - out[o + 3 + a] + 1));
  }
  return out;
}

/**
 * Applies a window plan: returns a new array equal to `data` except inside the windows, where each
 * window (in order) receives a random permutation of `data`'s voxels of that window. `data` is not changed.
 */
export function applyShuffleWindows(
  data: Float32Array,
  shape: readonly [number, number, number],
  windows: ShuffleWindows,
  rng: Rng,
): Float32Array {
  const [D, H, W] = shape;
  if (data.length !== D * H * W) {
    throw new RangeError(
      `local shuffle: data has ${data.length} voxels, shape [${shape}] needs ${D * H * W}`,
    );
  }
  const out = data.slice();
  let scratch = new Float32Array(4096);
  for (let o = 0; o < windows.length; o += 6) {
    const d0 = windows[o], h0 = windows[o + 1], w0 = windows[o + 2];
    const sd = windows[o + 3], sh = windows[o + 4], sw = windows[o + 5];
    const n = sd * sh * sw;
    if (n > scratch.length) scratch = new Float32Array(n);
    let k = 0;
    for (let d = d0; d < d0 + sd; d++) {
      for (let h = h0; h < h0 + sh; h++) {
        const row = (d * H + h) * W + w0;
        for (let w = 0; w < sw; w++) scratch[k++] = data[row + w];
      }
    }
    // Fisher–Yates, as numpy's shuffle
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(rng.next() * (i + 1));
      const t = scratch[i];
      scratch[i] = scratch[j];
      scratch[j] = t;
    }
    k = 0;
    for (let d = d0; d < d0 + sd; d++) {
      for (let h = h0; h < h0 + sh; h++) {
        const row = (d * H + h) * W + w0;
        for (let w = 0; w < sw; w++) out[row + w] = scratch[k++];
      }
    }
  }
  return out;
}

/**
 * The local pixel shuffle of one sample: windows from `rng.fork("windows")`, permutations from
 * `rng.fork("permute")`. Returns a new array; `data` is not changed.
 */
export function localPixelShuffle(
  data: Float32Array,
  shape: readonly [number, number, number],
  rng: Rng,
  options: ShuffleOptions = {},
): Float32Array {
  const windows = drawShuffleWindows(shape, rng.fork("windows"), options);
  return applyShuffleWindows(data, shape, windows, rng.fork("permute"));
}
