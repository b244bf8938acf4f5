/**
 * Parameter initialisers as the reference implementations use them, drawn from a seeded Philox
 * generator on the GPU so a seed fixes the initial model on every adapter.
 *
 * - `kaimingNormal`: PyTorch's `kaiming_normal_(w, a)` with mode fan_in and leaky_relu gain
 *   √(2/(1+a²)) (nnU-Net's InitWeights_He(1e-2) for convolutions). fan_in = shape[1]·∏shape[2:], as
 *   PyTorch computes it (so for ConvTranspose weights [in, out, k…] it is out·k³).
 * - `truncNormal`: `trunc_normal_(w, std, a, b)` (timm/PyTorch: absolute bounds). When the bounds lie
 *   beyond 6 standard deviations (e.g. std 0.02 with ±2) truncation changes nothing measurable and a
 *   plain normal is drawn; otherwise values are drawn by the inverse CDF on the host.
 */
import {
  type CreateOptions,
  type Generator,
  mulScalar,
  noGrad,
  type Shape,
  type Tensor,
  tensor,
} from "../tensor/mod.ts";
import { philoxUniform } from "../tensor/reference/philox.ts";

/** fan_in as PyTorch's `_calculate_fan_in_and_fan_out` computes it. */
export function fanIn(shape: Shape): number {
  if (shape.length < 2) throw new RangeError(`fan_in needs rank >= 2, got [${shape}]`);
  return shape.slice(1).reduce((a, b) => a * b, 1);
}

/** Normal(0, std) values. */
export function normal(shape: Shape, std: number, rng: Generator): Tensor {
  return noGrad(() => {
    const z = rng.normal(shape, 0, 1);
    const out = mulScalar(z, std);
    z.dispose();
    return out;
  });
}

/** He/Kaiming normal initialisation for a leaky ReLU with negative slope `a`. */
export function kaimingNormal(shape: Shape, rng: Generator, a = 0): Tensor {
  const gain = Math.sqrt(2 / (1 + a * a));
  return normal(shape, gain / Math.sqrt(fanIn(shape)), rng);
}

function erfinv(x: number): number {
  // Giles' single-precision approximation refined by two Newton steps on erf (float64 accurate).
  let w = -Math.log((1 - x) * (1 + x));
  let p: number;
  if (w < 5) {
    w -= 2.5;
    p = 2.81022636e-08;
    for (
      const c of [
        3.43273939e-07,
        -3.5233877e-06,
        -4.39150654e-06,
        0.00021858087,
        -0.00125372503,
        -0.00417768164,
        0.246640727,
        1.50140941,
      ]
    ) p = c + p * w;
  } else {
    w = Math.sqrt(w) - 3;
    p = -0.000200214257;
    for (
      const c of [
        0.000100950558,
        0.00134934322,
        -0.00367342844,
        0.00573950773,
        -0.0076224613,
        0.00943887047,
        1.00167406,
        2.83297682,
      ]
    ) p = c + p * w;
  }
  let y = p * x;
  for (let i = 0; i < 2; i++) y -= (erf(y) - x) / ((2 / Math.sqrt(Math.PI)) * Math.exp(-y * y));
  return y;
}

function erf(x: number): number {
  // Abramowitz–Stegun 7.1.26 is too coarse for Newton refinement; use a series / continued fraction.
  const t = Math.abs(x);
  if (t < 2.5) {
    let sum = t, term = t;
    for (let n = 1; n < 60; n++) {
      term *= (-t * t) / n;
      sum += term / (2 * n + 1);
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  let f = 0;
  for (let n = 60; n >= 1; n--) f = (n / 2) / (t + f);
  return Math.sign(x) * (1 - Math.exp(-t * t) / Math.sqrt(Math.PI) / (t + f));
}

/** Truncated normal N(mean 0, std) restricted to [a, b] (absolute bounds, as in PyTorch). */
export function truncNormal(
  shape: Shape,
  rng: Generator,
  std: number,
  a = -2,
  b = 2,
  options: CreateOptions = {},
): Tensor {
  if (-a / std >= 6 && b / std >= 6) return normal(shape, std, rng);
  // inverse CDF on the host, from the generator's stream (advancing it like a GPU draw would)
  const n = shape.reduce((x, y) => x * y, 1);
  const { seed, offset } = rng.state;
  const u = philoxUniform(seed, offset, n);
  rng.state = { seed, offset: offset + Math.ceil(n / 4) };
  const cdf = (x: number) => 0.5 * (1 + erf(x / Math.SQRT2));
  const lo = cdf(a / std);
  const hi = cdf(b / std);
  const values = Float32Array.from(u, (ui) => std * Math.SQRT2 * erfinv(2 * (lo + (hi - lo) * ui) - 1));
  return tensor(values, shape, options);
}
