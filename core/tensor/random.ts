/**
 * Seeded random tensors on the GPU (Philox4x32-10, counter based). A generator is a seed plus a counter
 * offset: each draw of n values uses ⌈n/4⌉ counters and advances the offset, so a run's random numbers
 * are a pure function of the seed and the order of draws, on every run and every adapter (uniform and
 * bernoulli bit for bit; normal up to the adapter's log/cos rounding).
 */
import { getGpu, type Gpu } from "../gpu/mod.ts";
import { runRandom } from "../../kernels/mod.ts";
import { checkShape, type Shape } from "./shape.ts";
import { Tensor } from "./tensor.ts";

/** Serializable generator state (checkpoints store it to resume the same stream). */
export interface GeneratorState {
  /** The seed (a non-negative integer below 2^53). */
  seed: number;
  /** Philox counters used so far (each draw of n values takes ⌈n/4⌉). */
  offset: number;
}

/** A seeded stream of random tensors. */
export class Generator {
  #seed: number;
  #offset = 0;

  /**
   * A stream at offset 0 of `seed`, drawing on `gpu` (default: the process's device at each draw).
   * @param seed a non-negative integer below 2^53
   */
  constructor(seed: number, readonly gpu?: Gpu) {
    if (!Number.isSafeInteger(seed) || seed < 0) {
      throw new RangeError(`seed must be an integer >= 0, got ${seed}`);
    }
    this.#seed = seed;
  }

  /** Current state. */
  get state(): GeneratorState {
    return { seed: this.#seed, offset: this.#offset };
  }

  /** Restores a state from {@link state}. */
  set state(s: GeneratorState) {
    this.#seed = s.seed;
    this.#offset = s.offset;
  }

  /** Uniform values in [low, high). */
  uniform(shape: Shape, low = 0, high = 1, dtype: "f32" | "f16" = "f32"): Tensor {
    return this.#draw("uniform", shape, dtype, low, high);
  }

  /** Normal values with the given mean and standard deviation. */
  normal(shape: Shape, mean = 0, std = 1, dtype: "f32" | "f16" = "f32"): Tensor {
    return this.#draw("normal", shape, dtype, mean, std);
  }

  /** 1 with probability p, else 0 (f32 values, or a u32 mask). */
  bernoulli(shape: Shape, p: number, dtype: "f32" | "f16" | "u32" = "f32"): Tensor {
    if (!(p >= 0 && p <= 1)) throw new RangeError(`bernoulli probability must be in [0, 1], got ${p}`);
    return this.#draw("bernoulli", shape, dtype, p, 0);
  }

  /**
   * Reserves the counters of `n` values for a kernel that draws them itself (fused dropout): returns
   * the seed and the first counter, and advances exactly like a draw of `n` values, so element i of
   * that kernel sees the same bits as element i of `uniform(shape)` drawn at this point.
   */
  reserve(n: number): GeneratorState {
    if (!Number.isSafeInteger(n) || n < 0) {
      throw new RangeError(`reserve(): n must be an integer >= 0, got ${n}`);
    }
    const state = { seed: this.#seed, offset: this.#offset };
    this.#offset += Math.ceil(n / 4);
    return state;
  }

  #draw(
    kind: "uniform" | "normal" | "bernoulli",
    shape: Shape,
    dtype: "f32" | "f16" | "u32",
    a: number,
    b: number,
  ) {
    checkShape(shape);
    const gpu = this.gpu ?? getGpu();
    const out = Tensor.empty(gpu, shape, dtype);
    runRandom(gpu, kind, dtype, out.binding, out.size, this.#seed, this.#offset, a, b);
    this.#offset += Math.ceil(out.size / 4);
    return out;
  }
}
