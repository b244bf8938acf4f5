/**
 * Shape ops. `reshape` is a view (shared storage); `permute`, `slice`, `pad`, `expand` are copies through
 * one strided-gather kernel, `concat` writes each input into its region with the strided scatter. Those
 * kernels index whole elements, so they refuse u8 tensors (packed 4 per word): cast them first.
 */
import { runGather, runScatter } from "../../../kernels/mod.ts";
import { record } from "../autograd.ts";
import {
  broadcastShapes,
  broadcastStrides,
  contiguousStrides,
  normalizeAxis,
  numel,
  type Shape,
} from "../shape.ts";
import type { Tensor } from "../tensor.ts";
import { autocastCommon } from "./autocast_op.ts";
import { emptyOn } from "./create.ts";
import { sumTo } from "./elementwise.ts";
import { unpackedDtype } from "./internal.ts";
import { opFamily } from "../../gpu/op_family.ts";

/** Resolves one −1 in a target shape. */
function resolveShape(shape: Shape, size: number, what: string): number[] {
  const out = [...shape];
  const unknown = out.indexOf(-1);
  if (unknown >= 0) {
    const known = out.reduce((p, d, i) => (i === unknown ? p : p * d), 1);
    if (known === 0 || size % known !== 0) throw new RangeError(`${what}: cannot infer -1 in [${shape}]`);
    out[unknown] = size / known;
  }
  if (numel(out) !== size || out.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new RangeError(`${what}: shape [${shape}] does not hold ${size} elements`);
  }
  return out;
}

/** The same data with another shape (one dimension may be −1). No copy. */
export function reshape(x: Tensor, shape: Shape): Tensor {
  const target = resolveShape(shape, x.size, `reshape of ${x}`);
  const out = x.view(target);
  return record("reshape", [x], out, [], (g) => [reshape(g, x.shape)]);
}

/** Reorders dimensions: output dimension d is input dimension `perm[d]`. */
export function permute(x: Tensor, perm: readonly number[]): Tensor {
  using _family = opFamily("layout");
  const p = perm.map((d) => normalizeAxis(d, x.rank));
  if (p.length !== x.rank || new Set(p).size !== p.length) {
    throw new RangeError(`permute(): [${perm}] is not a permutation of ${x.rank} dimensions`);
  }
  const dtype = unpackedDtype("permute", x);
  const strides = contiguousStrides(x.shape);
  const shape = p.map((d) => x.shape[d]);
  const out = emptyOn(x, shape);
  runGather(x.gpu, dtype, x.binding, out.binding, {
    outShape: shape,
    inShape: shape,
    inStrides: p.map((d) => strides[d]),
    label: "permute",
  });
  const inverse = new Array<number>(p.length);
  p.forEach((d, i) => (inverse[d] = i));
  return record("permute", [x], out, [], (g) => [permute(g, inverse)]);
}

/** Swaps two dimensions. */
export function transpose(x: Tensor, dim0: number, dim1: number): Tensor {
  using _family = opFamily("layout");
  const perm = Array.from({ length: x.rank }, (_, i) => i);
  const a = normalizeAxis(dim0, x.rank);
  const b = normalizeAxis(dim1, x.rank);
  [perm[a], perm[b]] = [perm[b], perm[a]];
  return permute(x, perm);
}

/**
 * The sub-block `[starts[d], ends[d])` of every dimension (negative indices count from the end; missing
 * trailing dimensions are taken whole).
 */
export function slice(x: Tensor, starts: readonly number[], ends: readonly number[]): Tensor {
  using _family = opFamily("layout");
  const dtype = unpackedDtype("slice", x);
  const begin = x.shape.map((n, d) => clampIndex(starts[d] ?? 0, n));
  const end = x.shape.map((n, d) => clampIndex(ends[d] ?? n, n));
  const shape = begin.map((b, d) => Math.max(0, end[d] - b));
  const strides = contiguousStrides(x.shape);
  const out = emptyOn(x, shape);
  runGather(x.gpu, dtype, x.binding, out.binding, {
    outShape: shape,
    inShape: shape,
    inStrides: strides,
    offset: begin.reduce((o, b, d) => o + b * strides[d], 0),
    label: "slice",
  });
  return record("slice", [x], out, [], (g) => [pad(g, begin.map((b, d) => [b, x.shape[d] - b - shape[d]]))]);
}

function clampIndex(i: number, n: number): number {
  const j = i < 0 ? i + n : i;
  return Math.min(Math.max(j, 0), n);
}

/**
 * Pads with a constant: `padding[d] = [before, after]` for the leading dimensions listed (others
 * unpadded). Non-negative amounts.
 */
export function pad(x: Tensor, padding: readonly (readonly [number, number])[], value = 0): Tensor {
  using _family = opFamily("layout");
  const dtype = unpackedDtype("pad", x);
  if (padding.length > x.rank) throw new RangeError(`pad(): ${padding.length} pairs for rank ${x.rank}`);
  const before = x.shape.map((_, d) => padding[d]?.[0] ?? 0);
  const after = x.shape.map((_, d) => padding[d]?.[1] ?? 0);
  if ([...before, ...after].some((p) => !Number.isInteger(p) || p < 0)) {
    throw new RangeError(`pad(): amounts must be integers >= 0, got ${JSON.stringify(padding)}`);
  }
  const shape = x.shape.map((n, d) => n + before[d] + after[d]);
  const out = emptyOn(x, shape);
  runGather(x.gpu, dtype, x.binding, out.binding, {
    outShape: shape,
    inShape: x.shape,
    inStrides: contiguousStrides(x.shape),
    padBefore: before,
    value,
    label: "pad",
  });
  return record("pad", [x], out, [], (g) => [slice(g, before, before.map((b, d) => b + x.shape[d]))]);
}

/** Materialises broadcasting to `shape` (a copy; the gradient sums back). */
export function expand(x: Tensor, shape: Shape): Tensor {
  using _family = opFamily("layout");
  const dtype = unpackedDtype("expand", x);
  const target = broadcastShapes(x.shape, shape);
  if (target.length !== shape.length || target.some((d, i) => d !== shape[i])) {
    throw new RangeError(`expand(): [${x.shape}] does not broadcast to [${shape}]`);
  }
  const out = emptyOn(x, target);
  runGather(x.gpu, dtype, x.binding, out.binding, {
    outShape: target,
    inShape: target,
    inStrides: broadcastStrides(x.shape, target),
    label: "expand",
  });
  return record("expand", [x], out, [], (g) => [sumTo(g, x.shape)]);
}

/**
 * Joins tensors of equal shape and dtype except along `axis` (under `autocast()` f16 and f32 inputs are
 * brought to one dtype: core/tensor/autocast.ts, rule 3).
 */
export function concat(inputs: readonly Tensor[], axis: number): Tensor {
  using _family = opFamily("layout");
  if (inputs.length === 0) throw new RangeError("concat(): no tensors");
  const xs = autocastCommon(inputs);
  const first = xs[0];
  const dtype = unpackedDtype("concat", first);
  const a = normalizeAxis(axis, first.rank);
  for (const x of xs) {
    if (
      x.rank !== first.rank || x.dtype !== first.dtype ||
      x.shape.some((d, i) => i !== a && d !== first.shape[i])
    ) {
      throw new RangeError(`concat(): ${x} does not match ${first} outside axis ${a}`);
    }
  }
  const shape = [...first.shape];
  shape[a] = xs.reduce((s, x) => s + x.shape[a], 0);
  const out = emptyOn(first, shape);
  const strides = contiguousStrides(shape);
  const starts: number[] = [];
  let start = 0;
  for (const x of xs) {
    starts.push(start);
    runScatter(x.gpu, dtype, x.binding, out.binding, x.shape, strides, start * strides[a], "concat");
    start += x.shape[a];
  }
  return record("concat", xs, out, [], (g) =>
    xs.map((x, i) => {
      const begin = shape.map((_, d) => (d === a ? starts[i] : 0));
      const end = shape.map((n, d) => (d === a ? starts[i] + x.shape[a] : n));
      return slice(g, begin, end);
    }));
}
