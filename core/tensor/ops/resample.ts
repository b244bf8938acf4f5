/**
 * Resampling of NCDHW volumes (and NCHW / NCL) to an arbitrary size, as PyTorch's `F.interpolate(x,
 * size=…)`: nearest, and (tri)linear with `alignCorners` false or true. For masks and for resizing
 * position embeddings. Kernels and the exact index rules: kernels/resample.ts.
 */
import type { Gpu } from "../../gpu/mod.ts";
import {
  type AxisTable,
  linearAxis,
  nearestAxis,
  type PackedTables,
  packTables,
  type ResampleShape,
  runResample,
  runResampleGrad,
} from "../../../kernels/mod.ts";
import { record } from "../autograd.ts";
import { keep } from "../scope.ts";
import type { Tensor } from "../tensor.ts";
import { emptyOn, tensor } from "./create.ts";
import { checkFloatTensor } from "./internal.ts";
import { opFamily } from "../../gpu/op_family.ts";

/** Options of {@link interpolate}. */
export interface InterpolateOptions {
  /** Output spatial sizes, one per spatial dim of the input. */
  size: readonly number[];
  /** "nearest" (default) or linear interpolation along every spatial dim. */
  mode?: "nearest" | "linear" | "bilinear" | "trilinear";
  /** Linear modes only: corners of input and output grids coincide (default false). */
  alignCorners?: boolean;
}

interface CachedTables {
  axes: AxisTable[];
  packed: PackedTables;
  /** u32 words, owned by the cache (graphs that use it hold their own reference). */
  words: Tensor;
}

const cache = new WeakMap<Gpu, Map<string, CachedTables>>();

/** The tables of one resampling, uploaded once per device and sizes (the last 64 are kept). */
function tablesFor(gpu: Gpu, key: string, build: () => AxisTable[]): CachedTables {
  let perGpu = cache.get(gpu);
  if (!perGpu) cache.set(gpu, perGpu = new Map());
  const hit = perGpu.get(key);
  if (hit) return hit;
  if (perGpu.size >= 64) {
    for (const t of perGpu.values()) t.words.dispose();
    perGpu.clear();
  }
  const axes = build();
  const packed = packTables(axes);
  const words = keep(tensor(packed.words, [packed.words.length], { dtype: "u32", gpu }));
  const entry = { axes, packed, words };
  perGpu.set(key, entry);
  return entry;
}

/**
 * Resizes the spatial dims of `x` [N, C, ...spatial] (1 to 3 spatial dims) to `options.size`, like
 * `F.interpolate(x, size, mode, align_corners)` with the scale taken from the sizes.
 * @example
 * const pos = interpolate(embedding, { size: [12, 12, 12], mode: "trilinear" });
 */
export function interpolate(x: Tensor, options: InterpolateOptions): Tensor {
  using _family = opFamily("layout");
  const op = "interpolate";
  checkFloatTensor(op, "the input", x);
  const spatial = x.shape.slice(2);
  if (x.rank < 3 || x.rank > 5) {
    throw new RangeError(`${op}(): input must be [N, C, ...1-3 spatial dims], got [${x.shape}]`);
  }
  const size = [...options.size];
  if (size.length !== spatial.length || size.some((s) => !Number.isInteger(s) || s < 1)) {
    throw new RangeError(
      `${op}(): size [${size}] must give one positive size per spatial dim of [${x.shape}]`,
    );
  }
  const mode = options.mode ?? "nearest";
  const linear = mode !== "nearest";
  if (!linear && options.alignCorners !== undefined) {
    throw new RangeError(`${op}(): alignCorners applies to linear modes only, not "${mode}"`);
  }
  const align = options.alignCorners ?? false;
  const pad = (dims: number[]) =>
    [...new Array(3 - dims.length).fill(1), ...dims] as [number, number, number];
  const s: ResampleShape = { nc: x.shape[0] * x.shape[1], in: pad(spatial), out: pad(size) };
  const key = `${linear ? "linear" : "nearest"}:${align}:${s.in}:${s.out}`;
  const tables = tablesFor(
    x.gpu,
    key,
    () => s.in.map((n, i) => (linear ? linearAxis(n, s.out[i], align) : nearestAxis(n, s.out[i]))),
  );
  const type = x.dtype as "f32" | "f16";
  const kind = linear ? "linear" : "nearest";
  const out = emptyOn(x, [x.shape[0], x.shape[1], ...size]);
  const words = tables.words;
  runResample(x.gpu, type, kind, s, tables.axes, tables.packed, words.binding, x.binding, out.binding);
  return record(op, [x], out, [words], (g) => {
    const dx = emptyOn(x, x.shape);
    runResampleGrad(x.gpu, type, kind, s, tables.axes, tables.packed, words.binding, g.binding, dx.binding);
    return [dx];
  });
}
