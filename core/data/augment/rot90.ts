/**
 * Quarter-turn rotation in one plane of a `[D, H, W]` array, with NumPy's `np.rot90(m, k, axes=(a, b))`
 * convention (k = 1 turns axis b towards axis a). Odd turns need the two axes to have the same size, so
 * the shape never changes. Masks get the same rotation.
 *
 * @module
 */
import type { Shape3 } from "../volume.ts";

/** Rotates `data` by `k` quarter turns in the plane of `axes` (a new array; the input is not changed). */
export function rot90<T extends Float32Array | Uint8Array>(
  data: T,
  shape: Shape3,
  axes: readonly [number, number],
  k: number,
): T {
  const [a, b] = axes;
  if (a === b || ![a, b].every((x) => x === 0 || x === 1 || x === 2)) {
    throw new RangeError(`rot90(): axes must be two different axes of 0, 1, 2, got [${axes}]`);
  }
  const turns = ((Math.trunc(k) % 4) + 4) % 4;
  if (turns % 2 === 1 && shape[a] !== shape[b]) {
    throw new RangeError(
      `rot90(): an odd number of quarter turns needs equal sizes on axes ${a} and ${b}, got [${shape}]`,
    );
  }
  const out = new (data.constructor as new (n: number) => T)(data.length);
  if (turns === 0) {
    out.set(data);
    return out;
  }
  const strides = [shape[1] * shape[2], shape[2], 1];
  const na = shape[a], nb = shape[b];
  const o = [0, 0, 0];
  let i = 0;
  for (o[0] = 0; o[0] < shape[0]; o[0]++) {
    for (o[1] = 0; o[1] < shape[1]; o[1]++) {
      for (o[2] = 0; o[2] < shape[2]; o[2]++, i++) {
        const s = [o[0], o[1], o[2]];
        if (turns === 1) {
          s[a] = o[b];
          s[b] = nb - 1 - o[a];
        } else if (turns === 2) {
          s[a] = na - 1 - o[a];
          s[b] = nb - 1 - o[b];
        } else {
          s[a] = na - 1 - o[b];
          s[b] = o[a];
        }
        out[i] = data[s[0] * strides[0] + s[1] * strides[1] + s[2] * strides[2]];
      }
    }
  }
  return out;
}
