/**
 * Reductions over axes: sum, mean, max, min (with gradients), argmax, argmin. Reduced axes that form one
 * contiguous block run in place as [outer, R, inner]; others are permuted to the end first.
 */
import { poolScratch, runArgReduce, runReduce } from "../../../kernels/mod.ts";
import { noGrad, record } from "../autograd.ts";
import { normalizeAxes, normalizeAxis, reducedShape, type Shape } from "../shape.ts";
import type { Tensor } from "../tensor.ts";
import { emptyOn } from "./create.ts";
import { cast, div, eq, mul, mulScalar } from "./elementwise.ts";
import { unpackedDtype } from "./internal.ts";
import { isAutocastEnabled } from "../autocast.ts";
import { expand, permute, reshape } from "./shape.ts";
import { opFamily } from "../../gpu/op_family.ts";

/** Views `x` as [outer, R, inner] for `axes`, permuting (without recording) when they are not adjacent. */
function asBlock(x: Tensor, axes: number[]): { src: Tensor; outer: number; r: number; inner: number } {
  const dims = x.shape;
  const adjacent = axes.every((a, i) => i === 0 || a === axes[i - 1] + 1);
  const prod = (list: readonly number[]) => list.reduce((p, d) => p * d, 1);
  if (adjacent) {
    const first = axes[0];
    const last = axes[axes.length - 1];
    return {
      src: x,
      outer: prod(dims.slice(0, first)),
      r: prod(axes.map((a) => dims[a])),
      inner: prod(dims.slice(last + 1)),
    };
  }
  const kept = dims.map((_, i) => i).filter((i) => !axes.includes(i));
  const src = noGrad(() => permute(x, [...kept, ...axes]));
  return { src, outer: prod(kept.map((i) => dims[i])), r: prod(axes.map((a) => dims[a])), inner: 1 };
}

function reduceValues(
  op: "sum" | "max" | "min",
  x: Tensor,
  axesArg: number | readonly number[] | undefined,
  keepDims: boolean,
  mean: boolean,
): { out: Tensor; axes: number[]; keptShape: Shape } {
  const dtype = unpackedDtype(mean ? "mean" : op, x);
  // autocast: an f16 sum or mean (f32 accumulation in any case) returns f32 (core/tensor/autocast.ts)
  const outType = op === "sum" && dtype === "f16" && isAutocastEnabled() ? "f32" : dtype;
  const axes = normalizeAxes(axesArg, x.rank);
  const keptShape = reducedShape(x.shape, axes, true);
  const out = emptyOn(x, reducedShape(x.shape, axes, keepDims), outType);
  if (axes.length === 0) {
    runReduce(
      x.gpu,
      op,
      dtype,
      outType,
      x.binding,
      out.binding,
      { outer: x.size, r: 1, inner: 1 },
      1,
      poolScratch(x.gpu),
    );
    return { out, axes, keptShape };
  }
  const { src, outer, r, inner } = asBlock(x, axes);
  if ((op === "max" || op === "min") && r === 0) throw new RangeError(`${op}() over an empty axis of ${x}`);
  const scale = mean ? 1 / r : 1;
  runReduce(
    x.gpu,
    op,
    dtype,
    outType,
    src.binding,
    out.binding,
    { outer, r, inner },
    scale,
    poolScratch(x.gpu),
  );
  if (src !== x) src.dispose();
  return { out, axes, keptShape };
}

/** The gradient `g` of a reduction's output in the input's dtype (an autocast sum of f16 returns f32). */
function gradAs(g: Tensor, x: Tensor): Tensor {
  return g.dtype === x.dtype ? g : cast(g, x.dtype);
}

/**
 * Sum over `axes` (default all), with Kahan-compensated, chunked accumulation in f32. The result has
 * x's dtype; under `autocast()` an f16 x gives an f32 result (no cast pass: the kernel reads f16).
 */
export function sum(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  using _family = opFamily("reduce");
  const { out, keptShape } = reduceValues("sum", x, axes, keepDims, false);
  return record("sum", [x], out, [], (g) => [expand(reshape(gradAs(g, x), keptShape), x.shape)]);
}

/** Mean over `axes` (default all); dtypes as {@link sum}. */
export function mean(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  using _family = opFamily("reduce");
  const { out, keptShape } = reduceValues("sum", x, axes, keepDims, true);
  const count = x.size / Math.max(out.size, 1);
  return record(
    "mean",
    [x],
    out,
    [],
    (g) => [expand(reshape(gradAs(mulScalar(g, 1 / count), x), keptShape), x.shape)],
  );
}

function extremum(
  op: "max" | "min",
  x: Tensor,
  axes: number | readonly number[] | undefined,
  keepDims: boolean,
) {
  const { out, keptShape } = reduceValues(op, x, axes, keepDims, false);
  // Gradient as PyTorch's amax/amin: shared evenly among the elements that attain the extremum.
  return record(op, [x], out, [x, out], (g) => {
    const winners = cast(eq(x, expand(reshape(out, keptShape), x.shape)), x.dtype);
    const counts = sum(winners, normalizeAxes(axes, x.rank), true);
    return [mul(winners, expand(div(reshape(g, keptShape), counts), x.shape))];
  });
}

/** Maximum over `axes` (default all); ties share the gradient. */
export function max(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  using _family = opFamily("reduce");
  return extremum("max", x, axes, keepDims);
}

/** Minimum over `axes` (default all); ties share the gradient. */
export function min(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  using _family = opFamily("reduce");
  return extremum("min", x, axes, keepDims);
}

function argReduce(op: "argmax" | "argmin", x: Tensor, axis: number, keepDims: boolean): Tensor {
  const dtype = unpackedDtype(op, x);
  const a = normalizeAxis(axis, x.rank);
  const out = emptyOn(x, reducedShape(x.shape, [a], keepDims), "i32");
  const { src, outer, r, inner } = asBlock(x, [a]);
  runArgReduce(x.gpu, op, dtype, src.binding, out.binding, { outer, r, inner });
  return out;
}

/** Index (i32) of the largest value along `axis`; the first among ties. */
export function argmax(x: Tensor, axis: number, keepDims = false): Tensor {
  using _family = opFamily("reduce");
  return argReduce("argmax", x, axis, keepDims);
}

/** Index (i32) of the smallest value along `axis`; the first among ties. */
export function argmin(x: Tensor, axis: number, keepDims = false): Tensor {
  using _family = opFamily("reduce");
  return argReduce("argmin", x, axis, keepDims);
}
