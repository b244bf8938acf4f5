/**
 * Models Genesis' flip, as nnssl (and the original Models Genesis code) run it: while U < p and at most 3
 * times, flip along an axis drawn uniformly from {0, 1, 2} of the per-sample (C, X, Y, Z) array. Axis 0 is
 * the channel axis, a no-op for one channel, so only X or Y are ever flipped — never Z — and a draw of
 * axis 0 still uses up one of the three tries. voxssl's `[D, H, W]` arrays are nnssl's (X, Y, Z), so X is
 * D (axis 0 here) and Y is H (axis 1); W is never flipped.
 *
 * @module
 */
import { mirrorInPlace, type Rng } from "@voxssl/core";

/** Options of {@link drawFlips}. */
export interface FlipOptions {
  /** Probability of each further flip (nnssl: 0.4). */
  p?: number;
  /** Most flips (nnssl: 3). */
  max?: number;
}

/**
 * Draws the flips of one sample: the axes of nnssl's (C, X, Y, Z) array, in order, each from {0, 1, 2}
 * (0 = the channel axis, a no-op).
 */
export function drawFlips(rng: Rng, options: FlipOptions = {}): number[] {
  const p = options.p ?? 0.4;
  const max = options.max ?? 3;
  const axes: number[] = [];
  while (axes.length < max && rng.next() < p) axes.push(rng.int(3));
  return axes;
}

/**
 * The net effect of nnssl flips on a `[D, H, W]` array: per axis, whether it ends up flipped (an even
 * number of flips along an axis cancels). Axis 0 of nnssl (channels) flips nothing; 1 (X) is D, 2 (Y) is H.
 */
export function flipParity(flips: readonly number[]): [boolean, boolean, boolean] {
  const odd = (axis: number) => flips.filter((a) => a === axis).length % 2 === 1;
  return [odd(1), odd(2), false];
}

/** Applies drawn flips to `data` (shape `[D, H, W]`, f32 or a u8 mask) in place. */
export function applyFlips(
  data: Float32Array | Uint8Array,
  shape: readonly [number, number, number],
  flips: readonly number[],
): void {
  const axes = flipParity(flips);
  if (axes.some(Boolean)) mirrorInPlace(data, [shape[0], shape[1], shape[2]], axes);
}
