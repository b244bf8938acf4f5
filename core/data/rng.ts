/**
 * A small keyed (splittable) pseudo-random generator for the data side. Every random choice of the
 * pipeline comes from `createRng(seed, ...keys)`, e.g. `createRng(seed, step, sampleIndex)`, so the same
 * (seed, step, sample) gives the same patch whichever worker computes it and whenever: resume reproduces
 * the batches exactly. Keys are hashed into a 128-bit state (murmur3's finaliser on four lanes); the stream
 * is sfc32, which passes PractRand to 2^40+ bytes and is fast in 32-bit JS arithmetic.
 *
 * @module
 */

/** A seeded stream of random numbers. `fork` derives an independent stream without consuming this one. */
export interface Rng {
  /** Uniform in [0, 1), 32 bits of randomness. */
  next(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  /** Uniform integer in [lo, hi] (both inclusive). */
  intRange(lo: number, hi: number): number;
  /** Uniform in [lo, hi). */
  uniform(lo: number, hi: number): number;
  /** Standard normal (Marsaglia's polar method). */
  normal(): number;
  /** True with probability p. */
  chance(p: number): boolean;
  /** An independent generator keyed by this one's key plus `keys`. */
  fork(...keys: RngKey[]): Rng;
}

/** A key: an integer (any safe integer, negative allowed) or a string. */
export type RngKey = number | string;

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Splits a key into 32-bit words: integers as (low, high, sign) words, strings as their UTF-16 codes. */
function keyWords(key: RngKey): number[] {
  if (typeof key === "string") {
    const words = [0x5bd1e995, key.length];
    for (let i = 0; i < key.length; i++) words.push(key.charCodeAt(i));
    return words;
  }
  if (!Number.isSafeInteger(key)) {
    throw new RangeError(`rng key must be a safe integer or a string, got ${key}`);
  }
  const abs = Math.abs(key);
  return [abs >>> 0, Math.floor(abs / 4294967296) >>> 0, key < 0 ? 1 : 0];
}

const LANE_SEEDS = [0x9e3779b9, 0x7f4a7c15, 0xf39cc060, 0x1b873593];

function absorb(state: readonly number[], key: RngKey): number[] {
  const words = keyWords(key);
  return state.map((lane, l) => {
    let h = lane ^ LANE_SEEDS[l];
    for (const w of words) h = fmix32((h ^ Math.imul(w, 0xcc9e2d51)) + Math.imul(l + 1, 0x27d4eb2d));
    return fmix32(h ^ words.length);
  });
}

function fromState(state: readonly number[]): Rng {
  // sfc32 on a typed array: V8 keeps it in unboxed 32-bit slots (3–4× faster than closure variables)
  const s = new Uint32Array(state);
  const next32 = (): number => {
    const a = s[0], b = s[1], c = s[2], d = s[3];
    const t = (a + b + d) >>> 0;
    s[3] = d + 1;
    s[0] = b ^ (b >>> 9);
    s[1] = c + (c << 3);
    s[2] = ((c << 21) | (c >>> 11)) + t;
    return t;
  };
  for (let i = 0; i < 12; i++) next32(); // mix the hashed key into the stream
  let spare: number | undefined;
  const rng: Rng = {
    next: () => next32() / 4294967296,
    int: (n) => {
      if (!(n >= 1)) throw new RangeError(`rng.int(n) needs n >= 1, got ${n}`);
      return Math.floor(rng.next() * n);
    },
    intRange: (lo, hi) => lo + rng.int(hi - lo + 1),
    uniform: (lo, hi) => lo + (hi - lo) * rng.next(),
    normal: () => {
      if (spare !== undefined) {
        const z = spare;
        spare = undefined;
        return z;
      }
      // Marsaglia's polar method: one log and one sqrt per pair, no trigonometry
      let u: number, v: number, q: number;
      do {
        u = 2 * rng.next() - 1;
        v = 2 * rng.next() - 1;
        q = u * u + v * v;
      } while (q >= 1 || q === 0);
      const k = Math.sqrt((-2 * Math.log(q)) / q);
      spare = v * k;
      return u * k;
    },
    chance: (p) => p > 0 && rng.next() < p,
    fork: (...keys) => fromState(keys.reduce<number[]>(absorb, state.slice())),
  };
  return rng;
}

/**
 * A generator determined by `seed` and `keys` only. Different keys give independent streams:
 * `createRng(seed, step, b)` for a sample, `.fork("augment")` for its augmentation.
 */
export function createRng(seed: RngKey, ...keys: RngKey[]): Rng {
  return fromState([seed, ...keys].reduce<number[]>(absorb, [0, 0, 0, 0]));
}
