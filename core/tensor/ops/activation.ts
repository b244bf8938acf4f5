/**
 * Activations (ReLU, LeakyReLU, GELU with the exact erf, SiLU, sigmoid, tanh), the SwiGLU gate, and
 * dropout / drop-path with the seeded Philox generator. One table holds each activation's WGSL, its
 * derivative and its float64 reference side by side; the kernels are in kernels/activation.ts.
 */
import {
  type ActivationKernel,
  runActivation,
  runActivationGrad,
  runDropout,
  runSwiglu,
  runSwigluGrad,
} from "../../../kernels/mod.ts";
import { record } from "../autograd.ts";
import type { Generator } from "../random.ts";
import { sameShape } from "../shape.ts";
import { normalCdf } from "../special.ts";
import type { Tensor } from "../tensor.ts";
import { autocastCommon } from "./autocast_op.ts";
import { emptyOn } from "./create.ts";
import { checkDevice, checkFloatTensor, checkSameDtype } from "./internal.ts";
import { opFamily } from "../../gpu/op_family.ts";

/** Names of the table's activations. */
export type ActivationName = "relu" | "leakyRelu" | "gelu" | "silu" | "sigmoid" | "tanh";

/** An activation: WGSL of y = f(x; s) and of dy/dx (over `x` or `y`), and the float64 reference. */
export interface ActivationDef {
  /** WGSL expression of y over `x` (f32) and the scalar parameter `s`. */
  fwd: string;
  /** WGSL expression of dy/dx over `x` or `y` (as `uses` says) and `s`. */
  grad: string;
  /** The tensor the derivative reads, saved for backward. */
  uses: "x" | "y";
  /** Float64 reference of y = f(x; s). */
  ref: (x: number, s: number) => number;
}

/** The activation table. */
export const ACTIVATIONS: Record<ActivationName, ActivationDef> = {
  relu: { fwd: "max(x, 0.0)", grad: "select(0.0, 1.0, y > 0.0)", uses: "y", ref: (x) => Math.max(x, 0) },
  leakyRelu: {
    fwd: "select(x * s, x, x > 0.0)",
    grad: "select(s, 1.0, x > 0.0)",
    uses: "x",
    ref: (x, s) => (x > 0 ? x : x * s),
  },
  gelu: {
    fwd: "x * std_normal_cdf(x)",
    grad: "std_normal_cdf(x) + x * 0.3989422804014327 * exp(-0.5 * x * x)",
    uses: "x",
    ref: (x) => x * normalCdf(x),
  },
  silu: {
    fwd: "x * sigmoid_f(x)",
    grad: "sigmoid_f(x) * (1.0 + x * (1.0 - sigmoid_f(x)))",
    uses: "x",
    ref: (x) => x / (1 + Math.exp(-x)),
  },
  sigmoid: { fwd: "sigmoid_f(x)", grad: "y * (1.0 - y)", uses: "y", ref: (x) => 1 / (1 + Math.exp(-x)) },
  tanh: { fwd: "tanh_f(x)", grad: "1.0 - y * y", uses: "y", ref: Math.tanh },
};

/** Applies a table activation with scalar parameter `s`. */
export function activation(name: ActivationName, x: Tensor, s = 0): Tensor {
  using _family = opFamily("activation");
  checkFloatTensor(name, "the input", x);
  const def = ACTIVATIONS[name];
  const kernel: ActivationKernel = { name, fwd: def.fwd, grad: def.grad, uses: def.uses };
  const type = x.dtype as "f32" | "f16";
  const out = emptyOn(x, x.shape);
  runActivation(x.gpu, type, kernel, x.binding, out.binding, x.size, s);
  const src = def.uses === "x" ? x : out;
  return record(name, [x], out, [src], (g) => {
    const dx = emptyOn(x, x.shape);
    runActivationGrad(x.gpu, type, kernel, src.binding, g.binding, dx.binding, x.size, s);
    return [dx];
  });
}

/** max(x, 0); gradient 0 at 0, as PyTorch. */
export const relu = (x: Tensor): Tensor => activation("relu", x);

/** x for x > 0, slope·x otherwise (default slope 0.01, as ResEnc and PyTorch). */
export const leakyRelu = (x: Tensor, slope = 0.01): Tensor => activation("leakyRelu", x, slope);

/** GELU with the exact erf form x·Φ(x) (PyTorch's default `approximate="none"`). */
export const gelu = (x: Tensor): Tensor => activation("gelu", x);

/** SiLU (swish): x·sigmoid(x). */
export const silu = (x: Tensor): Tensor => activation("silu", x);

/** 1 / (1 + e⁻ˣ), evaluated without overflow for large |x|. */
export const sigmoid = (x: Tensor): Tensor => activation("sigmoid", x);

/** Hyperbolic tangent. */
export const tanh = (x: Tensor): Tensor => activation("tanh", x);

/** The SwiGLU gate silu(a)·b of two tensors of one shape. */
export function swiglu(inputA: Tensor, inputB: Tensor): Tensor {
  using _family = opFamily("activation");
  const op = "swiglu";
  const [a, b] = autocastCommon([inputA, inputB]); // autocast: one dtype (rule 3)
  checkFloatTensor(op, "a", a);
  checkDevice(op, a, [b]);
  checkSameDtype(op, "b", a, b);
  if (!sameShape(a.shape, b.shape)) {
    throw new RangeError(`${op}(): shapes [${a.shape}] and [${b.shape}] differ`);
  }
  const type = a.dtype as "f32" | "f16";
  const out = emptyOn(a, a.shape);
  runSwiglu(a.gpu, type, a.binding, b.binding, out.binding, a.size);
  return record(op, [a, b], out, [a, b], (g) => {
    const da = emptyOn(a, a.shape);
    const db = emptyOn(b, b.shape);
    runSwigluGrad(a.gpu, type, a.binding, b.binding, g.binding, da.binding, db.binding, a.size);
    return [da, db];
  });
}

/**
 * SwiGLU on the two halves of the last dim of `x` [..., 2H] → [..., H]: silu(first)·second, as the
 * packed SwiGLU of timm's Eva (GluMlp with gate_last=False); `gateLast: true` gives first·silu(second).
 */
export function swigluSplit(x: Tensor, options: { gateLast?: boolean } = {}): Tensor {
  using _family = opFamily("activation");
  const op = "swigluSplit";
  checkFloatTensor(op, "the input", x);
  const last = x.shape[x.rank - 1];
  if (x.rank < 1 || last % 2 !== 0) {
    throw new RangeError(`${op}(): the last dim must be even, got [${x.shape}]`);
  }
  const half = last / 2;
  const type = x.dtype as "f32" | "f16";
  const out = emptyOn(x, [...x.shape.slice(0, -1), half]);
  const gateLast = options.gateLast ?? false;
  if (out.size > 0) runSwiglu(x.gpu, type, x.binding, undefined, out.binding, out.size, half, gateLast);
  return record(op, [x], out, [x], (g) => {
    const dx = emptyOn(x, x.shape);
    if (out.size > 0) {
      runSwigluGrad(
        x.gpu,
        type,
        x.binding,
        undefined,
        g.binding,
        dx.binding,
        undefined,
        out.size,
        half,
        gateLast,
      );
    }
    return [dx];
  });
}

function checkProbability(op: string, p: number): void {
  if (!(p >= 0 && p <= 1)) throw new RangeError(`${op}(): p must be in [0, 1], got ${p}`);
}

/**
 * Dropout: zeroes each element with probability `p` and scales the rest by 1/(1 − p) (p = 1 gives
 * zeros). The mask is drawn in the kernel from `generator` (element i kept iff the i-th uniform of the
 * generator's stream at this point is < 1 − p, the bits `generator.uniform` would give) and recomputed
 * from the same counters in backward, so it is identical in both passes and reproducible from the seed.
 */
export function dropout(x: Tensor, p: number, generator: Generator): Tensor {
  using _family = opFamily("activation");
  checkFloatTensor("dropout", "the input", x);
  checkProbability("dropout", p);
  const state = generator.reserve(x.size);
  const type = x.dtype as "f32" | "f16";
  const out = emptyOn(x, x.shape);
  runDropout(x.gpu, type, x.binding, out.binding, x.size, state, p);
  return record("dropout", [x], out, [], (g) => {
    const dx = emptyOn(x, x.shape);
    runDropout(x.gpu, type, g.binding, dx.binding, x.size, state, p);
    return [dx];
  });
}

/**
 * Drop-path (stochastic depth) over dim 0: each sample is zeroed with probability `p`, kept samples are
 * scaled by 1/(1 − p) (timm's `drop_path` with scale_by_keep). Sample n is kept iff the n-th uniform of
 * the generator's stream at this point is < 1 − p; backward reuses the same draws.
 */
export function dropPath(x: Tensor, p: number, generator: Generator): Tensor {
  using _family = opFamily("activation");
  checkFloatTensor("dropPath", "the input", x);
  checkProbability("dropPath", p);
  if (x.rank < 1) throw new RangeError(`dropPath(): needs a batch dimension, got a scalar`);
  const n = x.shape[0];
  const perSample = n === 0 ? 1 : Math.max(1, x.size / n);
  const state = generator.reserve(n);
  const type = x.dtype as "f32" | "f16";
  const out = emptyOn(x, x.shape);
  runDropout(x.gpu, type, x.binding, out.binding, x.size, state, p, perSample);
  return record("dropPath", [x], out, [], (g) => {
    const dx = emptyOn(x, x.shape);
    runDropout(x.gpu, type, g.binding, dx.binding, x.size, state, p, perSample);
    return [dx];
  });
}
