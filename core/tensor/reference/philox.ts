/**
 * CPU reference of Philox4x32-10 and of the conversions in kernels/philox.wgsl, for tests that check
 * the GPU stream bit for bit.
 */

function mulhilo(a: number, b: number): [number, number] {
  const product = BigInt(a >>> 0) * BigInt(b >>> 0);
  return [Number(product >> 32n) >>> 0, Number(product & 0xffffffffn) >>> 0];
}

/** One Philox4x32-10 block for a 128-bit counter and a 64-bit key, as four u32. */
export function philox4x32(counter: readonly number[], key: readonly [number, number]): number[] {
  let [c0, c1, c2, c3] = counter.map((c) => c >>> 0);
  let [k0, k1] = key.map((k) => k >>> 0);
  for (let r = 0; r < 10; r++) {
    const [hi0, lo0] = mulhilo(0xd2511f53, c0);
    const [hi1, lo1] = mulhilo(0xcd9e8d57, c2);
    [c0, c1, c2, c3] = [(hi1 ^ c1 ^ k0) >>> 0, lo1, (hi0 ^ c3 ^ k1) >>> 0, lo0];
    k0 = (k0 + 0x9e3779b9) >>> 0;
    k1 = (k1 + 0xbb67ae85) >>> 0;
  }
  return [c0, c1, c2, c3];
}

/** The first `n` raw u32 of the stream (seed, offset) in the GPU kernel's element order. */
export function philoxStream(seed: number, offset: number, n: number): Uint32Array {
  const out = new Uint32Array(n);
  const key: [number, number] = [seed % 2 ** 32, Math.floor(seed / 2 ** 32) % 2 ** 32];
  for (let t = 0; 4 * t < n; t++) {
    const c = offset + t;
    const block = philox4x32([c % 2 ** 32, Math.floor(c / 2 ** 32), 0, 0], key);
    for (let j = 0; j < 4 && 4 * t + j < n; j++) out[4 * t + j] = block[j];
  }
  return out;
}

/** Uniform [low, high) values exactly as the kernel converts them (24-bit mantissa). */
export function philoxUniform(seed: number, offset: number, n: number, low = 0, high = 1): Float64Array {
  const raw = philoxStream(seed, offset, n);
  const span = Math.fround(high - low);
  return Float64Array.from(raw, (x) => Math.fround(low + Math.fround(span * ((x >>> 8) / 16777216))));
}

/** Normal values as the kernel computes them (Box–Muller on consecutive pairs), in float64. */
export function philoxNormal(seed: number, offset: number, n: number, mean = 0, std = 1): Float64Array {
  const raw = philoxStream(seed, offset, Math.ceil(n / 4) * 4);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i += 2) {
    const base = i - (i % 4);
    const pair = (i % 4) / 2;
    const u1 = ((raw[base + 2 * pair] >>> 8) + 1) / 16777216;
    const u2 = (raw[base + 2 * pair + 1] >>> 8) / 16777216;
    const r = Math.sqrt(-2 * Math.log(u1));
    out[i] = mean + std * r * Math.cos(2 * Math.PI * u2);
    if (i + 1 < n) out[i + 1] = mean + std * r * Math.sin(2 * Math.PI * u2);
  }
  return out;
}
