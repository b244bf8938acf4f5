/**
 * Mirroring: flips a patch along any of its three axes (cheap; applied to masks as well).
 *
 * @module
 */
import type { Shape3 } from "../volume.ts";

/** Flips `data` (shape `[D, H, W]`) in place along the axes marked true. */
export function mirrorInPlace(
  data: Float32Array | Uint8Array,
  shape: Shape3,
  axes: readonly boolean[],
): void {
  const [D, H, W] = shape;
  if (axes[2]) {
    for (let row = 0; row < D * H; row++) data.subarray(row * W, (row + 1) * W).reverse();
  }
  if (axes[1]) {
    const tmp = new (data.constructor as new (n: number) => Float32Array | Uint8Array)(W);
    for (let d = 0; d < D; d++) {
      for (let h = 0; h < H >> 1; h++) {
        const a = (d * H + h) * W, b = (d * H + (H - 1 - h)) * W;
        tmp.set(data.subarray(a, a + W));
        data.copyWithin(a, b, b + W);
        data.set(tmp, b);
      }
    }
  }
  if (axes[0]) {
    const plane = H * W;
    const tmp = new (data.constructor as new (n: number) => Float32Array | Uint8Array)(plane);
    for (let d = 0; d < D >> 1; d++) {
      const a = d * plane, b = (D - 1 - d) * plane;
      tmp.set(data.subarray(a, a + plane));
      data.copyWithin(a, b, b + plane);
      data.set(tmp, b);
    }
  }
}
