/**
 * Activation kernels: any y = f(x) given as a WGSL expression with its derivative (ReLU, LeakyReLU,
 * GELU, SiLU, sigmoid, tanh; the table lives in core/tensor/ops/activation.ts), the SwiGLU gate
 * silu(a)·b on two tensors or on the two halves of the last dim, and fused dropout / drop-path that draw
 * their Philox bits in the kernel (no mask tensor: backward recomputes the same mask from the seed).
 *
 * Layout: contiguous tensors, one element per invocation (dropout: four, one Philox block), 256 per
 * workgroup; split into chunks of sub-range bindings by kernels/chunked.ts. f32 or f16 storage, f32
 * arithmetic.
 *
 * GELU uses the exact erf form, Φ(x) = ½·erfc(−x/√2), and WGSL has no erf: erfc(z) for z ≥ 0 is the
 * Chebyshev fit of Numerical Recipes (`erfcc`, W. H. Press et al., §6.2: t = 1/(1 + z/2),
 * erfc(z) = t·exp(−z² − 1.26551223 + t·P(t)), fractional error < 1.2e-7 everywhere), and
 * erfc(−z) = 2 − erfc(z). Φ is taken from the small side (½·erfc(|x|/√2) for x < 0), so GELU keeps its
 * relative accuracy for negative x instead of cancelling in 1 + erf. Measured against a float64 erf on
 * a grid over [−10, 10] (tests/core/tensor/ops/activation_test.ts): |Φ_gpu − Φ| < 2.5e-7.
 */
import type { BufferRange, Gpu } from "../core/gpu/mod.ts";
import { type OperandSpec, runPointwise } from "./chunked.ts";
import { PHILOX_WGSL } from "./philox.ts";

/** Storage types the activation kernels handle. */
export type ActivationType = "f32" | "f16";

/** WGSL: `erfc_pos(z)` for z ≥ 0, `std_normal_cdf(x)` = Φ(x), `sigmoid_f(x)`, `tanh_f(x)` (stable). */
export const ACTIVATION_HELPERS = /* wgsl */ `
fn erfc_pos(z: f32) -> f32 {
  let t = 1.0 / (1.0 + 0.5 * z);
  let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  return t * exp(-z * z + poly);
}
fn std_normal_cdf(x: f32) -> f32 {
  let half_tail = 0.5 * erfc_pos(abs(x) * 0.70710678118654752);
  return select(1.0 - half_tail, half_tail, x < 0.0);
}
fn sigmoid_f(x: f32) -> f32 {
  let e = exp(-abs(x));
  return select(e / (1.0 + e), 1.0 / (1.0 + e), x >= 0.0);
}
fn tanh_f(x: f32) -> f32 {
  let e = exp(-2.0 * abs(x));
  return select(tanh(x), sign(x) * (1.0 - e) / (1.0 + e), abs(x) > 4.0);
}`;

/** An activation: `fwd` over `x` and the scalar `s`; `grad` = dy/dx over `x` or `y` (see `uses`). */
export interface ActivationKernel {
  name: string;
  fwd: string;
  grad: string;
  /** Which tensor the derivative reads. */
  uses: "x" | "y";
}

/** Records y = f(x) over `n` elements. */
export function runActivation(
  gpu: Gpu,
  type: ActivationType,
  act: ActivationKernel,
  x: BufferRange,
  y: BufferRange,
  n: number,
  s: number,
): void {
  runPointwise(
    gpu,
    {
      key: `act:${act.name}:${type}:${act.fwd}`,
      name: `${act.name}[${type}]`,
      operands: [{ name: "xin", type, index: "same" }, { name: "y", type, write: true, index: "same" }],
      floats: ["s"],
      helpers: ACTIVATION_HELPERS,
      body: `let x = f32(xin[ix_xin(g)]);
  let s = p.f_s;
  y[ix_y(g)] = ${type}(${act.fwd});`,
    },
    n,
    [{ range: x }, { range: y }],
    [],
    [s],
  );
}

/** Records dx = gy·f'(·) over `n` elements; `src` is x or y as `act.uses` says. */
export function runActivationGrad(
  gpu: Gpu,
  type: ActivationType,
  act: ActivationKernel,
  src: BufferRange,
  gy: BufferRange,
  dx: BufferRange,
  n: number,
  s: number,
): void {
  runPointwise(
    gpu,
    {
      key: `actgrad:${act.name}:${type}:${act.grad}`,
      name: `${act.name}_grad[${type}]`,
      operands: [
        { name: "src", type, index: "same" },
        { name: "gy", type, index: "same" },
        { name: "dx", type, write: true, index: "same" },
      ],
      floats: ["s"],
      helpers: ACTIVATION_HELPERS,
      body: `let ${act.uses} = f32(src[ix_src(g)]);
  let s = p.f_s;
  dx[ix_dx(g)] = ${type}(f32(gy[ix_gy(g)]) * (${act.grad}));`,
    },
    n,
    [{ range: src }, { range: gy }, { range: dx }],
    [],
    [s],
  );
}

/**
 * Records the SwiGLU gate over `n` output elements: out = silu(a)·b. With `half` > 0, a and b are the
 * halves of the last dim of one tensor `x` [rows, 2·half] (a first unless `gateLast`); otherwise a
 * and b are two tensors shaped like out.
 */
export function runSwiglu(
  gpu: Gpu,
  type: ActivationType,
  a: BufferRange,
  b: BufferRange | undefined,
  out: BufferRange,
  n: number,
  half = 0,
  gateLast = false,
): void {
  const split = half > 0;
  const [ia, ib] = gateLast ? ["ix_x(g) + p.u_h", "ix_x(g)"] : ["ix_x(g)", "ix_x(g) + p.u_h"];
  const operands: OperandSpec[] = split
    ? [{ name: "x", type, index: "map" }, { name: "o", type, write: true, index: "same" }]
    : [{ name: "x", type, index: "same" }, { name: "b", type, index: "same" }, {
      name: "o",
      type,
      write: true,
      index: "same",
    }];
  runPointwise(
    gpu,
    {
      key: `swiglu:${type}:${split ? (gateLast ? "split-last" : "split") : "pair"}`,
      name: `swiglu[${type}${split ? ",split" : ""}]`,
      operands,
      uints: ["h"],
      helpers: ACTIVATION_HELPERS,
      body: split
        ? `let av = f32(x[${ia}]);
  o[ix_o(g)] = ${type}(av * sigmoid_f(av) * f32(x[${ib}]));`
        : `let av = f32(x[ix_x(g)]);
  o[ix_o(g)] = ${type}(av * sigmoid_f(av) * f32(b[ix_b(g)]));`,
    },
    n,
    split
      ? [{ range: a, map: { div: half, mul: 2 * half, mod: half, extent: half + 1 } }, { range: out }]
      : [{ range: a }, { range: b! }, { range: out }],
    [half],
  );
}

/**
 * Records the SwiGLU gradients for `n` output elements: da = g·b·silu'(a), db = g·silu(a), written to
 * `da`/`db` (two tensors) or to the two halves of `dx` (split form, `half` > 0).
 */
export function runSwigluGrad(
  gpu: Gpu,
  type: ActivationType,
  a: BufferRange,
  b: BufferRange | undefined,
  g: BufferRange,
  da: BufferRange,
  db: BufferRange | undefined,
  n: number,
  half = 0,
  gateLast = false,
): void {
  const split = half > 0;
  const map = { div: half, mul: 2 * half, mod: half, extent: half + 1 };
  const [ia, ib] = gateLast ? ["ix_x(g) + p.u_h", "ix_x(g)"] : ["ix_x(g)", "ix_x(g) + p.u_h"];
  const [oa, ob] = gateLast ? ["ix_dx(g) + p.u_h", "ix_dx(g)"] : ["ix_dx(g)", "ix_dx(g) + p.u_h"];
  const operands: OperandSpec[] = split
    ? [
      { name: "x", type, index: "map" },
      { name: "gy", type, index: "same" },
      { name: "dx", type, write: true, index: "map" },
    ]
    : [
      { name: "x", type, index: "same" },
      { name: "b", type, index: "same" },
      { name: "gy", type, index: "same" },
      { name: "dx", type, write: true, index: "same" },
      { name: "db", type, write: true, index: "same" },
    ];
  const math = `let sg = sigmoid_f(av);
  let gv = f32(gy[ix_gy(g)]);
  let ga = gv * bv * sg * (1.0 + av * (1.0 - sg));
  let gb = gv * av * sg;`;
  runPointwise(
    gpu,
    {
      key: `swiglugrad:${type}:${split ? (gateLast ? "split-last" : "split") : "pair"}`,
      name: `swiglu_grad[${type}${split ? ",split" : ""}]`,
      operands,
      uints: ["h"],
      helpers: ACTIVATION_HELPERS,
      body: split
        ? `let av = f32(x[${ia}]);
  let bv = f32(x[${ib}]);
  ${math}
  dx[${oa}] = ${type}(ga);
  dx[${ob}] = ${type}(gb);`
        : `let av = f32(x[ix_x(g)]);
  let bv = f32(b[ix_b(g)]);
  ${math}
  dx[ix_dx(g)] = ${type}(ga);
  db[ix_db(g)] = ${type}(gb);`,
    },
    n,
    split
      ? [{ range: a, map }, { range: g }, { range: da, map }]
      : [{ range: a }, { range: b! }, { range: g }, { range: da }, { range: db! }],
    [half],
  );
}

/** Philox stream position of a fused random kernel (see Generator.reserve). */
export interface PhiloxState {
  seed: number;
  offset: number;
}

function philoxUints(s: PhiloxState): number[] {
  return [
    s.offset % 2 ** 32,
    Math.floor(s.offset / 2 ** 32) % 2 ** 32,
    s.seed % 2 ** 32,
    Math.floor(s.seed / 2 ** 32) % 2 ** 32,
  ];
}

const PHILOX_AT = /* wgsl */ `
fn philox_block(blk: u32) -> vec4<u32> {
  let lo = p.u_off_lo + blk;
  let hi = p.u_off_hi + select(0u, 1u, lo < blk); // carry
  return philox(vec4<u32>(lo, hi, 0u, 0u), vec2<u32>(p.u_seed_lo, p.u_seed_hi));
}`;

/**
 * Records out = x·keep/(1 − p) over `n` elements, keep_i = (u_i < 1 − p) with u_i the i-th uniform of
 * the Philox stream at `state` (the bits `Generator.uniform` would give). `perSample` > 0: drop-path,
 * one draw per sample of `perSample` elements instead of one per element.
 */
export function runDropout(
  gpu: Gpu,
  type: ActivationType,
  x: BufferRange,
  out: BufferRange,
  n: number,
  state: PhiloxState,
  p: number,
  perSample = 0,
): void {
  const keep = Math.fround(1 - p);
  const scale = p < 1 ? 1 / (1 - p) : 0;
  const perElement = perSample === 0;
  const operands: OperandSpec[] = [
    { name: "x", type, index: "same" },
    { name: "o", type, write: true, index: "same" },
  ];
  runPointwise(
    gpu,
    {
      key: `dropout:${type}:${perElement ? "element" : "sample"}`,
      name: `${perElement ? "dropout" : "drop_path"}[${type}]`,
      operands,
      uints: ["off_lo", "off_hi", "seed_lo", "seed_hi", "per_sample"],
      floats: ["keep", "scale"],
      helpers: PHILOX_WGSL + PHILOX_AT,
      elementsPerInvocation: perElement ? 4 : 1,
      granule: 4,
      body: perElement
        ? `let r = philox_block(g / 4u);
  for (var k = 0u; k < 4u; k++) {
    let e = g + k;
    if (e < g_end) {
      let kept = unit(r[k]) < p.f_keep;
      o[ix_o(e)] = ${type}(select(0.0, f32(x[ix_x(e)]) * p.f_scale, kept));
    }
  }`
        : `let sample = g / p.u_per_sample;
  let r = philox_block(sample / 4u);
  let kept = unit(r[sample % 4u]) < p.f_keep;
  o[ix_o(g)] = ${type}(select(0.0, f32(x[ix_x(g)]) * p.f_scale, kept));`,
    },
    n,
    [{ range: x }, { range: out }],
    [...philoxUints(state), Math.max(perSample, 1)],
    [keep, scale],
  );
}
