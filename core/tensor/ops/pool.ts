/**
 * Pooling ops on NCDHW volumes: average and max pooling with kernel = stride (floor of odd sizes, like
 * PyTorch), and global average pooling over all spatial dims. Kernels: kernels/pool.ts.
 */
import {
  type Pool3dShape,
  poolOutput,
  runGlobalAvgPool,
  runGlobalAvgPoolGrad,
  runPool3d,
  runPool3dGrad,
} from "../../../kernels/mod.ts";
import { record } from "../autograd.ts";
import { numel } from "../shape.ts";
import type { Tensor } from "../tensor.ts";
import { emptyOn } from "./create.ts";
import { checkFloatTensor, poolScratch } from "./internal.ts";
import { opFamily } from "../../gpu/op_family.ts";

function poolShape(op: string, x: Tensor, kernel: number | readonly number[]): Pool3dShape {
  checkFloatTensor(op, "the input", x);
  if (x.rank !== 5) throw new RangeError(`${op}(): input must be [N, C, D, H, W], got [${x.shape}]`);
  const k = typeof kernel === "number" ? [kernel, kernel, kernel] : [...kernel];
  if (k.length !== 3 || k.some((v) => !Number.isInteger(v) || v < 1)) {
    throw new RangeError(
      `${op}(): kernel must be a positive integer or three of them, got ${JSON.stringify(kernel)}`,
    );
  }
  const [n, c, d, h, w] = x.shape;
  return { nc: n * c, d, h, w, kd: k[0], kh: k[1], kw: k[2] };
}

function pool3d(op: string, kind: "avg" | "max", x: Tensor, kernel: number | readonly number[]): Tensor {
  const s = poolShape(op, x, kernel);
  const type = x.dtype as "f32" | "f16";
  const out = emptyOn(x, [x.shape[0], x.shape[1], ...poolOutput(s)]);
  const argmax = kind === "max" ? emptyOn(x, out.shape, "i32") : undefined;
  runPool3d(x.gpu, type, kind, s, x.binding, out.binding, argmax?.binding);
  const result = record(op, [x], out, argmax ? [argmax] : [], (g) => {
    const dx = emptyOn(x, x.shape);
    runPool3dGrad(x.gpu, type, kind, s, g.binding, dx.binding, argmax?.binding);
    return [dx];
  });
  argmax?.dispose(); // the graph holds its own reference
  return result;
}

/**
 * Average pooling of `x` [N, C, D, H, W] with kernel = stride (a size or [kd, kh, kw]); the output is
 * ⌊D/kd⌋ × ⌊H/kh⌋ × ⌊W/kw⌋ and trailing voxels are dropped, like PyTorch's AvgPool3d(k, k).
 */
export function avgPool3d(x: Tensor, kernel: number | readonly number[]): Tensor {
  using _family = opFamily("reduce");
  return pool3d("avgPool3d", "avg", x, kernel);
}

/**
 * Max pooling of `x` [N, C, D, H, W] with kernel = stride; the gradient goes to the first maximum of
 * each window (in D, H, W scan order), like PyTorch's MaxPool3d(k, k).
 */
export function maxPool3d(x: Tensor, kernel: number | readonly number[]): Tensor {
  using _family = opFamily("reduce");
  return pool3d("maxPool3d", "max", x, kernel);
}

/**
 * Mean over all spatial dims of `x` [N, C, ...spatial] → [N, C] (or [N, C, 1, …] with `keepDims`).
 */
export function globalAvgPool(x: Tensor, keepDims = false): Tensor {
  using _family = opFamily("reduce");
  const op = "globalAvgPool";
  checkFloatTensor(op, "the input", x);
  if (x.rank < 2) throw new RangeError(`${op}(): input must be [N, C, ...spatial], got [${x.shape}]`);
  const rows = x.shape[0] * x.shape[1];
  const len = numel(x.shape.slice(2));
  const type = x.dtype as "f32" | "f16";
  const shape = keepDims ? [x.shape[0], x.shape[1], ...x.shape.slice(2).map(() => 1)] : x.shape.slice(0, 2);
  const out = emptyOn(x, shape);
  runGlobalAvgPool(x.gpu, type, rows, len, x.binding, out.binding, poolScratch(x.gpu));
  return record(op, [x], out, [], (g) => {
    const dx = emptyOn(x, x.shape);
    runGlobalAvgPoolGrad(x.gpu, type, rows, len, g.binding, dx.binding);
    return [dx];
  });
}
