/**
 * Table-driven op checks: an op runs on the GPU and in the float64 CPU reference on the same random
 * inputs; values are compared, and every input's gradient from GPU autograd is compared with central
 * finite differences of the reference (L = Σ op(x)·R with a random R).
 *
 * @module
 */
import type { RefTensor } from "../tensor/reference/ops.ts";
import { backward, mul, scope, sum, type Tensor, tensor, zerosLike } from "../tensor/mod.ts";
import { numel, type Shape } from "../tensor/shape.ts";
import { assertClose, randomArray } from "./numeric.ts";

/** One random input: a shape and a value range (keep away from kinks and singularities). */
export interface InputSpec {
  /** Shape of the input tensor. */
  shape: Shape;
  /** Smallest value drawn (default −1). */
  lo?: number;
  /** Largest value drawn (default 1). */
  hi?: number;
}

/** A row of an op table. */
export interface OpCase {
  /** Names the case in failures; also seeds its inputs. */
  name: string;
  /** The op's inputs, in order. */
  inputs: InputSpec[];
  /** The op under test, on GPU tensors made from the inputs (f32). */
  gpu: (xs: Tensor[]) => Tensor;
  /** The float64 reference of the same op. */
  ref: (xs: RefTensor[]) => RefTensor;
  /** Check gradients too (default true). */
  grad?: boolean;
  /** Relative tolerance of the forward check (default 1e-5). */
  rtol?: number;
  /** Absolute tolerance of the forward check (default 1e-5). */
  atol?: number;
  /** Tolerances of the gradient check (f32 autograd against float64 differences). */
  gradRtol?: number;
  /** Absolute tolerance of the gradient check (default 1e-4; `gradRtol` default 1e-3). */
  gradAtol?: number;
}

/** Random float64 inputs for a case, deterministic per case name. */
export function makeInputs(c: OpCase, seed: number): RefTensor[] {
  return c.inputs.map((spec, i) => ({
    shape: [...spec.shape],
    // rounded to f32 first, so the reference sees exactly what the GPU sees
    data: Float64Array.from(
      Float32Array.from(randomArray(numel(spec.shape), seed + 7919 * i, spec.lo ?? -1, spec.hi ?? 1)),
    ),
  }));
}

function nameSeed(name: string): number {
  let h = 2166136261;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619) >>> 0;
  return h % 100000;
}

/** Runs one case: forward comparison, then the gradient check. */
export async function checkOp(c: OpCase): Promise<void> {
  const seed = nameSeed(c.name);
  const xs = makeInputs(c, seed);
  const expected = c.ref(xs);
  const { out, grads, weights } = scope(() => {
    const inputs = xs.map((x) =>
      tensor(Float32Array.from(x.data), x.shape, { requiresGrad: c.grad !== false })
    );
    const y = c.gpu(inputs);
    if (c.grad === false) return { out: y, grads: [] as Tensor[], weights: undefined };
    const w = randomArray(y.size, seed + 1, -1, 1);
    const loss = sum(mul(y, tensor(Float32Array.from(w), y.shape)));
    backward(loss);
    // an input the op does not differentiate through (a mask) has gradient zero
    const gs = inputs.map((t) => t.grad ?? zerosLike(t));
    inputs.forEach((t) => (t.grad = undefined)); // hand the gradients to the scope's result
    return { out: y, grads: gs, weights: w };
  });
  try {
    if (out.shape.join() !== expected.shape.join()) {
      throw new Error(`${c.name}: shape [${out.shape}] != reference [${expected.shape}]`);
    }
    assertClose(await out.toFloat64(), expected.data, {
      rtol: c.rtol ?? 1e-5,
      atol: c.atol ?? 1e-5,
      label: c.name,
    });
    if (!weights) return;
    for (let i = 0; i < xs.length; i++) {
      const numeric = finiteDifference(c, xs, i, weights);
      assertClose(await grads[i].toFloat64(), numeric, {
        rtol: c.gradRtol ?? 1e-3,
        atol: c.gradAtol ?? 1e-4,
        label: `${c.name}: d/dx${i}`,
      });
    }
  } finally {
    out.dispose();
    grads.forEach((g) => g.dispose());
  }
}

/** Central differences of L = Σ ref(xs)·w with respect to input `i`, in float64. */
export function finiteDifference(c: OpCase, xs: RefTensor[], i: number, w: ArrayLike<number>): Float64Array {
  const loss = (inputs: RefTensor[]) => {
    const y = c.ref(inputs).data;
    let s = 0;
    for (let j = 0; j < y.length; j++) s += y[j] * w[j];
    return s;
  };
  const x = xs[i];
  const out = new Float64Array(x.data.length);
  for (let j = 0; j < x.data.length; j++) {
    const h = 1e-6 * Math.max(1, Math.abs(x.data[j]));
    const plus = { shape: x.shape, data: Float64Array.from(x.data) };
    const minus = { shape: x.shape, data: Float64Array.from(x.data) };
    plus.data[j] += h;
    minus.data[j] -= h;
    const args = (t: RefTensor) => xs.map((v, k) => (k === i ? t : v));
    out[j] = (loss(args(plus)) - loss(args(minus))) / (2 * h);
  }
  return out;
}
