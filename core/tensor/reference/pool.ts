/**
 * Float64 CPU reference of pooling and resampling (core/tensor/ops/pool.ts, resample.ts). Source
 * indices follow PyTorch's float32 index arithmetic exactly; interpolation weights are float64.
 */
import { numel } from "../shape.ts";
import type { RefTensor } from "./ops.ts";

function kernel3(k: number | readonly number[]): number[] {
  return typeof k === "number" ? [k, k, k] : [...k];
}

function pool3dRef(
  x: RefTensor,
  k: number | readonly number[],
  pick: (window: number[]) => number,
): RefTensor {
  const [n, c, d, h, w] = x.shape;
  const [kd, kh, kw] = kernel3(k);
  const [od, oh, ow] = [Math.floor(d / kd), Math.floor(h / kh), Math.floor(w / kw)];
  const data = new Float64Array(n * c * od * oh * ow);
  let o = 0;
  for (let p = 0; p < n * c; p++) {
    for (let z = 0; z < od; z++) {
      for (let y = 0; y < oh; y++) {
        for (let v = 0; v < ow; v++) {
          const window: number[] = [];
          for (let a = 0; a < kd; a++) {
            for (let b = 0; b < kh; b++) {
              for (let e = 0; e < kw; e++) {
                window.push(x.data[((p * d + z * kd + a) * h + y * kh + b) * w + v * kw + e]);
              }
            }
          }
          data[o++] = pick(window);
        }
      }
    }
  }
  return { shape: [n, c, od, oh, ow], data };
}

/** Reference average pooling with kernel = stride. */
export function avgPool3dRef(x: RefTensor, k: number | readonly number[]): RefTensor {
  return pool3dRef(x, k, (win) => win.reduce((s, v) => s + v, 0) / win.length);
}

/** Reference max pooling with kernel = stride. */
export function maxPool3dRef(x: RefTensor, k: number | readonly number[]): RefTensor {
  return pool3dRef(x, k, (win) => Math.max(...win));
}

/** Reference mean over the spatial dims of [N, C, ...spatial]. */
export function globalAvgPoolRef(x: RefTensor, keepDims = false): RefTensor {
  const [n, c] = x.shape;
  const s = numel(x.shape.slice(2));
  const data = new Float64Array(n * c);
  for (let r = 0; r < n * c; r++) {
    let sum = 0;
    for (let i = 0; i < s; i++) sum += x.data[r * s + i];
    data[r] = sum / s;
  }
  return { shape: keepDims ? [n, c, ...x.shape.slice(2).map(() => 1)] : [n, c], data };
}

/** Source taps (index, weight) of output index `o` along one axis, as PyTorch's interpolate. */
export function interpolationTaps(
  o: number,
  inSize: number,
  outSize: number,
  linear: boolean,
  alignCorners: boolean,
): [number, number][] {
  if (!linear) {
    if (outSize === inSize) return [[o, 1]];
    if (outSize === 2 * inSize) return [[Math.floor(o / 2), 1]];
    const scale = Math.fround(inSize / outSize);
    return [[Math.min(Math.floor(Math.fround(o * scale)), inSize - 1), 1]];
  }
  let src: number;
  if (alignCorners) {
    src = outSize > 1 ? Math.fround(Math.fround((inSize - 1) / (outSize - 1)) * o) : 0;
  } else {
    src = Math.max(Math.fround(Math.fround(inSize / outSize) * (o + 0.5) - 0.5), 0);
  }
  const i0 = Math.min(Math.floor(src), inSize - 1);
  const lambda = Math.min(Math.max(src - i0, 0), 1);
  return [[i0, 1 - lambda], [Math.min(i0 + 1, inSize - 1), lambda]];
}

/** Reference `F.interpolate(x, size, mode, align_corners)` for 1 to 3 spatial dims. */
export function interpolateRef(
  x: RefTensor,
  size: readonly number[],
  mode: "nearest" | "linear",
  alignCorners = false,
): RefTensor {
  const [n, c] = x.shape;
  const pad = (dims: readonly number[]) => [...new Array(3 - dims.length).fill(1), ...dims];
  const [d, h, w] = pad(x.shape.slice(2));
  const [od, oh, ow] = pad(size);
  const linear = mode === "linear";
  const data = new Float64Array(n * c * od * oh * ow);
  let at = 0;
  for (let p = 0; p < n * c; p++) {
    for (let z = 0; z < od; z++) {
      for (let y = 0; y < oh; y++) {
        for (let v = 0; v < ow; v++) {
          let sum = 0;
          for (const [iz, wz] of interpolationTaps(z, d, od, linear, alignCorners)) {
            for (const [iy, wy] of interpolationTaps(y, h, oh, linear, alignCorners)) {
              for (const [ix, wx] of interpolationTaps(v, w, ow, linear, alignCorners)) {
                sum += wz * wy * wx * x.data[((p * d + iz) * h + iy) * w + ix];
              }
            }
          }
          data[at++] = sum;
        }
      }
    }
  }
  return { shape: [n, c, ...size], data };
}
