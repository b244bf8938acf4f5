/**
 * Matrix multiply with batching and broadcasting of batch dimensions; optional transposed operands
 * (stored transposed, as PyTorch's Linear weight [out, in]) are read in place without a copy.
 */
import { runMatmul } from "../../../kernels/mod.ts";
import { noGrad, record } from "../autograd.ts";
import { broadcastShapes, numel, sameShape, type Shape } from "../shape.ts";
import type { Tensor } from "../tensor.ts";
import { autocastOp } from "./autocast_op.ts";
import { emptyOn } from "./create.ts";
import { cast, sumTo } from "./elementwise.ts";
import { expand } from "./shape.ts";
import { opFamily } from "../../gpu/op_family.ts";

/** Options of {@link matmul}. */
export interface MatmulOptions {
  /** `a` is given transposed: its last two dimensions are [K, M]. */
  transposeA?: boolean;
  /** `b` is given transposed: its last two dimensions are [N, K] (e.g. a Linear weight). */
  transposeB?: boolean;
}

/** Batch stride of one operand against the output batch, materialising unusual broadcasts. */
function batchOperand(t: Tensor, batch: Shape): { src: Tensor; stride: number } {
  const own = t.shape.slice(0, -2);
  const matrix = t.shape.slice(-2);
  const padded = [...new Array(batch.length - own.length).fill(1), ...own];
  if (numel(own) === 1) return { src: t, stride: 0 };
  if (sameShape(padded, batch)) return { src: t, stride: matrix[0] * matrix[1] };
  return { src: noGrad(() => expand(t, [...batch, ...matrix])), stride: matrix[0] * matrix[1] };
}

/**
 * a · b over the last two dimensions; leading (batch) dimensions broadcast. Both operands need rank ≥ 2
 * and the same float dtype (f32, or f16 storage with f32 accumulation); the result and the gradients have
 * that dtype. Under `autocast()` f32 operands compute in f16 and the result is f16.
 */
export function matmul(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  using _family = opFamily("matmul");
  return autocastOp([a, b], ([a16, b16]) => matmul(a16!, b16!, options)) ?? matmulAsCalled(a, b, options);
}

function matmulAsCalled(a: Tensor, b: Tensor, options: MatmulOptions): Tensor {
  const ta = options.transposeA ?? false;
  const tb = options.transposeB ?? false;
  if (a.rank < 2 || b.rank < 2) throw new RangeError(`matmul(): operands need rank >= 2, got ${a} and ${b}`);
  if (a.dtype !== b.dtype || (a.dtype !== "f32" && a.dtype !== "f16")) {
    throw new TypeError(`matmul(): needs two f32 or two f16 tensors, got ${a} and ${b}`);
  }
  const [m, k] = ta ? [a.shape[a.rank - 1], a.shape[a.rank - 2]] : [a.shape[a.rank - 2], a.shape[a.rank - 1]];
  const [kb, n] = tb
    ? [b.shape[b.rank - 1], b.shape[b.rank - 2]]
    : [b.shape[b.rank - 2], b.shape[b.rank - 1]];
  if (k !== kb) {
    throw new RangeError(`matmul(): inner dimensions differ (${a}${ta ? "ᵀ" : ""} · ${b}${tb ? "ᵀ" : ""})`);
  }
  const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2));
  const A = batchOperand(a, batch);
  const B = batchOperand(b, batch);
  const out = emptyOn(a, [...batch, m, n]);
  runMatmul(a.gpu, a.dtype, A.src.binding, B.src.binding, out.binding, {
    batch: numel(batch),
    m,
    n,
    k,
    transA: ta,
    transB: tb,
    aBatchStride: A.stride,
    bBatchStride: B.stride,
  });
  if (A.src !== a) A.src.dispose();
  if (B.src !== b) B.src.dispose();
  return record("matmul", [a, b], out, [a, b], (grad) => {
    const g = grad.dtype === a.dtype ? grad : cast(grad, a.dtype);
    // Rules for C = op(A)·op(B), written so each gradient comes out in its operand's stored layout.
    const ga = ta ? matmul(b, g, { transposeA: tb, transposeB: true }) : matmul(g, b, { transposeB: !tb });
    const gb = tb ? matmul(g, a, { transposeA: true, transposeB: ta }) : matmul(a, g, { transposeA: !ta });
    return [sumTo(ga, a.shape), sumTo(gb, b.shape)];
  });
}
