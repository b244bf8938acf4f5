/** Softmax and log-softmax along one axis (numerically stable: the row maximum is subtracted). */
import { runSoftmax } from "../../../kernels/mod.ts";
import { noGrad, record } from "../autograd.ts";
import { isFloat } from "../dtype.ts";
import { normalizeAxis } from "../shape.ts";
import type { Tensor } from "../tensor.ts";
import { autocastF32 } from "./autocast_op.ts";
import { emptyOn } from "./create.ts";
import { exp, mul, sub } from "./elementwise.ts";
import { sum } from "./reduce.ts";
import { permute } from "./shape.ts";
import { opFamily } from "../../gpu/op_family.ts";

function rowwise(kind: "softmax" | "logSoftmax", x: Tensor, axis: number): Tensor {
  if (!isFloat(x.dtype)) throw new TypeError(`${kind}() needs a float tensor, got ${x}`);
  const a = normalizeAxis(axis, x.rank);
  const last = x.rank - 1;
  if (x.rank > 0 && a !== last) {
    // Move the axis last, run the row kernel, move it back (without recording the moves).
    const perm = x.shape.map((_, i) => i).filter((i) => i !== a).concat(a);
    const inverse = perm.map((_, i) => perm.indexOf(i));
    return noGrad(() => {
      const moved = permute(x, perm);
      const y = rowwise(kind, moved, -1);
      const back = permute(y, inverse);
      moved.dispose();
      y.dispose();
      return back;
    });
  }
  const r = x.rank === 0 ? 1 : x.shape[last];
  const out = emptyOn(x, x.shape);
  runSoftmax(x.gpu, kind, x.dtype as "f32" | "f16", x.binding, out.binding, x.size / Math.max(r, 1), r);
  return out;
}

/** softmax(x) along `axis` (default last). */
export function softmax(input: Tensor, axis = -1): Tensor {
  using _family = opFamily("reduce");
  const [x] = autocastF32([input]); // autocast: in f32
  const y = rowwise("softmax", x, axis);
  // dx = y · (g − Σ g·y)
  return record("softmax", [x], y, [y], (g) => [mul(y, sub(g, sum(mul(g, y), axis, true)))]);
}

/** log(softmax(x)) along `axis` (default last), computed as x − max − log Σ exp(x − max). */
export function logSoftmax(input: Tensor, axis = -1): Tensor {
  using _family = opFamily("reduce");
  const [x] = autocastF32([input]);
  const y = rowwise("logSoftmax", x, axis);
  // dx = g − softmax · Σ g
  return record("logSoftmax", [x], y, [y], (g) => [sub(g, mul(exp(y), sum(g, axis, true)))]);
}
