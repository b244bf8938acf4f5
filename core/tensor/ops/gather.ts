/**
 * Row gather and scatter by per-sample index, for ViT token dropping (MAE: the encoder sees the kept
 * tokens of each sample, the decoder puts them back among mask tokens). Kernels, their cost and binding
 * limits: kernels/gather.ts; float64 references: reference/gather.ts.
 *
 * Indices are i32 or u32 tensors [B, K]. They are not checked on the host (that would need a readback):
 * an index outside [0, N) (negative i32 included) is never dereferenced. `gatherRows` yields a zero row
 * for it (which receives no gradient), `scatterRows` drops that source row (base keeps the row; the
 * source row's gradient is zero).
 */
import { runGatherRows, runGatherRowsGrad, runScatterRows } from "../../../kernels/mod.ts";
import type { RowsShape } from "../../../kernels/mod.ts";
import { noGrad, record } from "../autograd.ts";
import type { Tensor } from "../tensor.ts";
import { autocastCommon } from "./autocast_op.ts";
import { emptyOn } from "./create.ts";
import { clone } from "./elementwise.ts";
import { checkDevice, checkFloatTensor, checkSameDtype } from "./internal.ts";
import { opFamily } from "../../gpu/op_family.ts";

function checkIndex(op: string, index: Tensor): void {
  if (index.dtype !== "i32" && index.dtype !== "u32") {
    throw new TypeError(`${op}(): index must be i32 or u32, got ${index}`);
  }
  if (index.rank !== 2) throw new RangeError(`${op}(): index must be [B, K], got [${index.shape}]`);
}

/** A plain copy (not recorded: the op records itself). */
function copyOf(x: Tensor): Tensor {
  return noGrad(() => clone(x));
}

function gatherRaw(x: Tensor, index: Tensor, s: RowsShape): Tensor {
  const out = emptyOn(x, [s.b, s.k, s.c]);
  runGatherRows(x.gpu, x.dtype as "f32" | "f16", s, x.binding, index.binding, out.binding);
  return out;
}

/**
 * Rows of `x` [Bx, N, C] picked per sample: out[b, k, :] = x[bx, index[b, k], :] with `index` [B, K]
 * (i32 or u32) and bx = b, or bx = 0 when Bx = 1 (one table shared by every sample, e.g. a position
 * embedding [1, N, C] or a rotary table [1, N, 2R]). f32 or f16; differentiable in x: the gradient
 * scatter-adds the output gradient into x's rows (summed over samples when Bx = 1; repeated indices
 * add up). An out-of-range index gives a zero row.
 * @example
 * const kept = gatherRows(tokens, keep); // tokens [B, 8000, 864], keep [B, 2000] i32 → [B, 2000, 864]
 * const pos = gatherRows(posEmbed, keep); // posEmbed [1, 8000, 864] → [B, 2000, 864]
 */
export function gatherRows(x: Tensor, index: Tensor): Tensor {
  using _family = opFamily("layout");
  const op = "gatherRows";
  checkFloatTensor(op, "x", x);
  checkIndex(op, index);
  checkDevice(op, x, [index]);
  const [b, k] = index.shape;
  if (x.rank !== 3 || (x.shape[0] !== b && x.shape[0] !== 1)) {
    throw new RangeError(
      `${op}(): x must be [Bx, N, C] with Bx = ${b} (the index's B) or 1; got x [${x.shape}], ` +
        `index [${index.shape}]`,
    );
  }
  const s: RowsShape = { b, n: x.shape[1], k, c: x.shape[2], shared: x.shape[0] !== b };
  const out = gatherRaw(x, index, s);
  return record(op, [x], out, [index], (g) => {
    const dx = emptyOn(x, x.shape);
    runGatherRowsGrad(x.gpu, x.dtype as "f32" | "f16", s, index.binding, g.binding, dx.binding);
    return [dx];
  });
}

/**
 * `base` [B, N, C] with the rows `index[b, k]` of every sample replaced by `src[b, k, :]` (src
 * [B, K, C], index [B, K] i32 or u32). The indices of one sample must be distinct: with repeats one of
 * the writes wins, which one is undefined. Out-of-range indices are skipped. f32 or f16 (base and src
 * alike); differentiable in both: d base = g with the indexed rows zeroed, d src = gatherRows(g, index).
 * @example
 * const full = scatterRows(expand(maskToken, [B, N, C]), keep, encoded); // MAE decoder input
 */
export function scatterRows(inputBase: Tensor, index: Tensor, inputSrc: Tensor): Tensor {
  using _family = opFamily("layout");
  const op = "scatterRows";
  const [base, src] = autocastCommon([inputBase, inputSrc]); // autocast: one dtype (rule 3)
  checkFloatTensor(op, "base", base);
  checkFloatTensor(op, "src", src);
  checkSameDtype(op, "src", base, src);
  checkIndex(op, index);
  checkDevice(op, base, [index, src]);
  const [b, k] = index.shape;
  if (base.rank !== 3 || base.shape[0] !== b) {
    throw new RangeError(
      `${op}(): base must be [B, N, C] with B = ${b} (the index's B); got base [${base.shape}], ` +
        `index [${index.shape}]`,
    );
  }
  const c = base.shape[2];
  if (src.rank !== 3 || src.shape[0] !== b || src.shape[1] !== k || src.shape[2] !== c) {
    throw new RangeError(
      `${op}(): src must be [${b}, ${k}, ${c}] (index [B, K], base's C); got src [${src.shape}], ` +
        `base [${base.shape}], index [${index.shape}]`,
    );
  }
  const s: RowsShape = { b, n: base.shape[1], k, c, shared: false };
  const type = base.dtype as "f32" | "f16";
  const out = copyOf(base);
  runScatterRows(base.gpu, type, s, index.binding, src.binding, out.binding);
  return record(op, [base, src], out, [index], (g) => {
    let dBase: Tensor | undefined;
    if (base.requiresGrad) {
      dBase = copyOf(g);
      runScatterRows(g.gpu, type, s, index.binding, undefined, dBase.binding);
    }
    return [dBase, src.requiresGrad ? gatherRaw(g, index, s) : undefined];
  });
}
