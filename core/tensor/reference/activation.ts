/**
 * Float64 CPU reference of the activation ops (core/tensor/ops/activation.ts), SwiGLU, and the masks
 * of dropout / drop-path computed from the CPU Philox stream.
 */
import { type ActivationName, ACTIVATIONS } from "../ops/activation.ts";
import type { RefTensor } from "./ops.ts";
import { philoxUniform } from "./philox.ts";

/** Reference of a table activation with scalar `s`. */
export function activationRef(name: ActivationName, x: RefTensor, s = 0): RefTensor {
  const f = ACTIVATIONS[name].ref;
  return { shape: [...x.shape], data: x.data.map((v) => f(v, s)) };
}

function siluRef(v: number): number {
  return v / (1 + Math.exp(-v));
}

/** Reference silu(a)·b. */
export function swigluRef(a: RefTensor, b: RefTensor): RefTensor {
  return { shape: [...a.shape], data: a.data.map((v, i) => siluRef(v) * b.data[i]) };
}

/** Reference SwiGLU on the halves of the last dim (silu(first)·second, or first·silu(second)). */
export function swigluSplitRef(x: RefTensor, gateLast = false): RefTensor {
  const last = x.shape[x.shape.length - 1];
  const h = last / 2;
  const rows = x.data.length / last;
  const data = new Float64Array(rows * h);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < h; j++) {
      const first = x.data[r * last + j];
      const second = x.data[r * last + h + j];
      data[r * h + j] = gateLast ? first * siluRef(second) : siluRef(first) * second;
    }
  }
  return { shape: [...x.shape.slice(0, -1), h], data };
}

/** The keep mask (1/0) of `n` draws at Philox position (seed, offset) with drop probability p. */
export function dropMaskRef(seed: number, offset: number, n: number, p: number): Float64Array {
  const keep = Math.fround(1 - p);
  return philoxUniform(seed, offset, n).map((u) => (u < keep ? 1 : 0));
}

/** Reference dropout with the generator at (seed, offset). */
export function dropoutRef(x: RefTensor, p: number, seed: number, offset: number): RefTensor {
  const mask = dropMaskRef(seed, offset, x.data.length, p);
  const scale = p < 1 ? 1 / (1 - p) : 0;
  return { shape: [...x.shape], data: x.data.map((v, i) => v * mask[i] * scale) };
}

/** Reference drop-path (per sample of dim 0) with the generator at (seed, offset). */
export function dropPathRef(x: RefTensor, p: number, seed: number, offset: number): RefTensor {
  const n = x.shape[0];
  const per = x.data.length / n;
  const mask = dropMaskRef(seed, offset, n, p);
  const scale = p < 1 ? 1 / (1 - p) : 0;
  return { shape: [...x.shape], data: x.data.map((v, i) => v * mask[Math.floor(i / per)] * scale) };
}
