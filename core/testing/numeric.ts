/**
 * Numerical test helpers: seeded random inputs and tolerance checks that report the worst element
 * (absolute/relative, and in f16 ulps).
 *
 * @module
 */

/** A small seeded PRNG (mulberry32) for test inputs: the same seed gives the same inputs everywhere. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` values uniform in [lo, hi) from a seeded generator. */
export function randomArray(n: number, seed: number, lo = -1, hi = 1): Float64Array {
  const next = seededRandom(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * next();
  return out;
}

/**
 * Asserts |actual − expected| ≤ atol + rtol·|expected| elementwise, reporting the worst element.
 */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  { rtol = 1e-5, atol = 1e-6, label = "" }: { rtol?: number; atol?: number; label?: string } = {},
): void {
  if (actual.length !== expected.length) {
    throw new Error(`${label}: length ${actual.length} != expected ${expected.length}`);
  }
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i];
    const e = expected[i];
    const excess = Math.abs(a - e) - (atol + rtol * Math.abs(e));
    if (!(excess <= 0) && (worst < 0 || !(excess <= worstExcess))) {
      worst = i;
      worstExcess = excess;
      if (Number.isNaN(excess)) break;
    }
  }
  if (worst >= 0) {
    throw new Error(
      `${label}: element ${worst} is ${actual[worst]}, expected ${expected[worst]} ` +
        `(rtol ${rtol}, atol ${atol}; ${actual.length} elements)`,
    );
  }
}

/**
 * One f16 ulp at |v|: the spacing of f16 values in v's binade (2⁻²⁴, the subnormal spacing, below 2⁻¹⁴).
 * Converting an f32 value to f16 moves it by less than this (WGSL allows either neighbour; round to
 * nearest, as lavapipe does, moves it by at most half).
 */
export function ulp16(v: number): number {
  const a = Math.abs(v);
  if (a < 2 ** -14) return 2 ** -24;
  return 2 ** (Math.floor(Math.log2(a)) - 10);
}

/** The values rounded to f16 (exactly representable in f16, f32 and float64). */
export function halfValues(values: ArrayLike<number>): Float64Array {
  return Float64Array.from(Float16Array.from(values));
}

/**
 * Asserts |actual − expected| ≤ ulps · ulp16(max(|actual|, |expected|)) + extra(i) elementwise (f16
 * results: `ulps` roundings to f16, plus `extra` for errors made before the rounding), reporting the
 * worst element.
 */
export function assertUlp16(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  { ulps = 1, extra = () => 0, label = "" }: {
    ulps?: number;
    extra?: (i: number) => number;
    label?: string;
  } = {},
): void {
  if (actual.length !== expected.length) {
    throw new Error(`${label}: length ${actual.length} != expected ${expected.length}`);
  }
  let worst = -1;
  let worstRatio = 1;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i];
    const e = expected[i];
    const bound = ulps * ulp16(Math.max(Math.abs(a), Math.abs(e))) + extra(i);
    const ratio = Math.abs(a - e) / bound;
    if (!(ratio <= worstRatio)) {
      worst = i;
      worstRatio = ratio;
      if (Number.isNaN(ratio)) break;
    }
  }
  if (worst >= 0) {
    throw new Error(
      `${label}: element ${worst} is ${actual[worst]}, expected ${expected[worst]}: error ` +
        `${Math.abs(actual[worst] - expected[worst])} is ${worstRatio.toFixed(2)}× the bound ` +
        `(${ulps} f16 ulp + extra; ${actual.length} elements)`,
    );
  }
}
