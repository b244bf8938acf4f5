/**
 * Elementwise ops with broadcasting. One table of math per arity: each entry holds the WGSL expression
 * (run by kernels/elementwise.ts), the float64 CPU reference, and the backward rule written with other
 * ops, side by side. Adding an op is one table entry plus one exported function.
 */
import { runAccumulate, runElementwise } from "../../../kernels/mod.ts";
import { isGradEnabled, record } from "../autograd.ts";
import { type DType, isFloat } from "../dtype.ts";
import { broadcastShapes, broadcastStrides, contiguousStrides, sameShape, type Shape } from "../shape.ts";
import type { Tensor } from "../tensor.ts";
import { autocastCommon, autocastF32 } from "./autocast_op.ts";
import { emptyOn, full } from "./create.ts";
import { unpackedDtype } from "./internal.ts";
import { sum } from "./reduce.ts";
import { reshape } from "./shape.ts";
import { forceOpFamily, opFamily } from "../../gpu/op_family.ts";

/** An entry of the unary table: y = f(x; s0, s1). */
export interface UnaryDef {
  wgsl: string;
  /** float64 reference of the same function. */
  ref: (x: number, s0: number, s1: number) => number;
  /** dL/dx from x, y = f(x), dL/dy; absent for non-differentiable ops. */
  grad?: (x: Tensor, y: Tensor, g: Tensor, s0: number, s1: number) => Tensor;
  helpers?: string;
}

const POW_HELPER = /* wgsl */ `
fn pow_signed(x: f32, y: f32) -> f32 {
  // PyTorch semantics: negative bases with integer exponents keep their sign rule; 0^0 = 1
  if (y == 0.0) { return 1.0; }
  if (x == 0.0) { return select(bitcast<f32>(0x7f800000u), 0.0, y > 0.0); }
  if (x > 0.0) { return pow(x, y); }
  if (y != round(y)) { return bitcast<f32>(0x7fc00000u); }
  let m = pow(-x, y);
  return select(m, -m, fract(y * 0.5) != 0.0);
}`;

function refPow(x: number, y: number): number {
  return x ** y;
}

/** Names of unary ops. */
export type UnaryName =
  | "neg"
  | "exp"
  | "log"
  | "sqrt"
  | "rsqrt"
  | "abs"
  | "sign"
  | "clamp"
  | "clampMask"
  | "powScalar"
  | "addScalar"
  | "mulScalar";

/** The unary table. Scalars s0, s1 parameterise some entries (clamp bounds, exponent, scale). */
export const UNARY: Record<UnaryName, UnaryDef> = {
  neg: { wgsl: "-a", ref: (x) => -x, grad: (_x, _y, g) => neg(g) },
  exp: { wgsl: "exp(a)", ref: Math.exp, grad: (_x, y, g) => mul(g, y) },
  log: { wgsl: "log(a)", ref: Math.log, grad: (x, _y, g) => div(g, x) },
  sqrt: { wgsl: "sqrt(a)", ref: Math.sqrt, grad: (_x, y, g) => div(g, mulScalar(y, 2)) },
  rsqrt: {
    wgsl: "inverseSqrt(a)",
    ref: (x) => 1 / Math.sqrt(x),
    grad: (_x, y, g) => mul(g, mulScalar(powScalar(y, 3), -0.5)),
  },
  abs: { wgsl: "abs(a)", ref: Math.abs, grad: (x, _y, g) => mul(g, sign(x)) },
  sign: { wgsl: "sign(a)", ref: Math.sign },
  clamp: {
    wgsl: "min(max(a, s0), s1)",
    ref: (x, lo, hi) => Math.min(Math.max(x, lo), hi),
    grad: (x, _y, g, lo, hi) => mul(g, unary("clampMask", x, lo, hi)),
  },
  clampMask: {
    wgsl: "select(0.0, 1.0, a >= s0 && a <= s1)",
    ref: (x, lo, hi) => (x >= lo && x <= hi ? 1 : 0),
  },
  powScalar: {
    wgsl: "pow_signed(a, s0)",
    ref: refPow,
    helpers: POW_HELPER,
    grad: (x, _y, g, p) => mul(g, mulScalar(powScalar(x, p - 1), p)),
  },
  addScalar: { wgsl: "a + s0", ref: (x, s) => x + s, grad: (_x, _y, g) => g },
  mulScalar: { wgsl: "a * s0", ref: (x, s) => x * s, grad: (_x, _y, g, s) => mulScalar(g, s) },
};

function checkFloat(op: string, t: Tensor): void {
  if (!isFloat(unpackedDtype(op, t))) throw new TypeError(`${op}() needs a float tensor, got ${t}`);
}

/** Unary ops that autocast computes in f32 (range and precision: core/tensor/autocast.ts, rule 4). */
const F32_UNARY: ReadonlySet<UnaryName> = new Set(["exp", "log", "sqrt", "rsqrt", "powScalar"]);

/** Applies a unary table entry. */
export function unary(name: UnaryName, input: Tensor, s0 = 0, s1 = 0): Tensor {
  using _family = opFamily("elementwise");
  const def = UNARY[name];
  checkFloat(name, input);
  const [x] = F32_UNARY.has(name) ? autocastF32([input]) : [input];
  const out = emptyOn(x, x.shape);
  runElementwise(
    x.gpu,
    { name, expr: def.wgsl, inputs: [x.dtype], output: x.dtype, helpers: def.helpers },
    [{ binding: x.binding, strides: contiguousStrides(x.shape) }],
    out.binding,
    x.shape,
    [s0, s1],
  );
  const grad = def.grad;
  if (!grad) return out;
  return record(name, [x], out, [x, out], (g) => [grad(x, out, g, s0, s1)]);
}

/** −x */
export const neg = (x: Tensor): Tensor => unary("neg", x);
/** eˣ */
export const exp = (x: Tensor): Tensor => unary("exp", x);
/** Natural logarithm. */
export const log = (x: Tensor): Tensor => unary("log", x);
/** √x */
export const sqrt = (x: Tensor): Tensor => unary("sqrt", x);
/** 1/√x */
export const rsqrt = (x: Tensor): Tensor => unary("rsqrt", x);
/** |x| */
export const abs = (x: Tensor): Tensor => unary("abs", x);
/** −1, 0 or 1 (no gradient). */
export const sign = (x: Tensor): Tensor => unary("sign", x);
/** Clamps into [min, max]; the gradient passes where min ≤ x ≤ max (PyTorch's rule). */
export const clamp = (x: Tensor, min: number, max: number): Tensor => unary("clamp", x, min, max);
/** xᵖ for a scalar exponent (negative bases allowed for integer p, as in PyTorch). */
export const powScalar = (x: Tensor, p: number): Tensor => unary("powScalar", x, p);
/** x + s */
export const addScalar = (x: Tensor, s: number): Tensor => unary("addScalar", x, s);
/** x · s */
export const mulScalar = (x: Tensor, s: number): Tensor => unary("mulScalar", x, s);

/** An entry of the binary table: out = f(a, b) with broadcasting. */
export interface BinaryDef {
  wgsl: string;
  ref: (a: number, b: number) => number;
  /** dL/da and dL/db at the broadcast shape (autograd reduces them to the input shapes). */
  grad?: (a: Tensor, b: Tensor, out: Tensor, g: Tensor) => [Tensor | undefined, Tensor | undefined];
  helpers?: string;
  /** Output dtype when it is not the inputs' (comparisons give u32 masks). */
  output?: DType;
}

/** Names of binary ops. */
export type BinaryName =
  | "add"
  | "sub"
  | "mul"
  | "div"
  | "pow"
  | "maximum"
  | "minimum"
  | "maxMask"
  | "eq"
  | "ne"
  | "lt"
  | "le"
  | "gt"
  | "ge";

/** The binary table. */
export const BINARY: Record<BinaryName, BinaryDef> = {
  add: { wgsl: "a + b", ref: (a, b) => a + b, grad: (_a, _b, _o, g) => [g, g] },
  sub: { wgsl: "a - b", ref: (a, b) => a - b, grad: (_a, _b, _o, g) => [g, neg(g)] },
  mul: { wgsl: "a * b", ref: (a, b) => a * b, grad: (a, b, _o, g) => [mul(g, b), mul(g, a)] },
  div: {
    wgsl: "a / b",
    ref: (a, b) => a / b,
    grad: (_a, b, out, g) => [div(g, b), neg(div(mul(g, out), b))],
  },
  pow: {
    wgsl: "pow_signed(a, b)",
    ref: refPow,
    helpers: POW_HELPER,
    grad: (a, b, out, g) => [mul(g, mul(b, pow(a, addScalar(b, -1)))), mul(g, mul(out, log(a)))],
  },
  maximum: {
    wgsl: "max(a, b)",
    ref: Math.max,
    grad: (a, b, _o, g) => {
      const m = binary("maxMask", a, b); // 1 where a wins, ½ on ties (PyTorch splits ties)
      return [mul(g, m), mul(g, addScalar(neg(m), 1))];
    },
  },
  minimum: {
    wgsl: "min(a, b)",
    ref: Math.min,
    grad: (a, b, _o, g) => {
      const m = binary("maxMask", b, a);
      return [mul(g, m), mul(g, addScalar(neg(m), 1))];
    },
  },
  maxMask: {
    wgsl: "select(select(0.0, 0.5, a == b), 1.0, a > b)",
    ref: (a, b) => (a > b ? 1 : a === b ? 0.5 : 0),
  },
  eq: { wgsl: "select(0u, 1u, a == b)", ref: (a, b) => +(a === b), output: "u32" },
  ne: { wgsl: "select(0u, 1u, a != b)", ref: (a, b) => +(a !== b), output: "u32" },
  lt: { wgsl: "select(0u, 1u, a < b)", ref: (a, b) => +(a < b), output: "u32" },
  le: { wgsl: "select(0u, 1u, a <= b)", ref: (a, b) => +(a <= b), output: "u32" },
  gt: { wgsl: "select(0u, 1u, a > b)", ref: (a, b) => +(a > b), output: "u32" },
  ge: { wgsl: "select(0u, 1u, a >= b)", ref: (a, b) => +(a >= b), output: "u32" },
};

/** Reduces a broadcast gradient back to `shape` (sums over broadcast dimensions). */
export function sumTo(g: Tensor, shape: Shape): Tensor {
  using _family = opFamily("elementwise");
  if (sameShape(g.shape, shape)) return g;
  const lead = g.rank - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.rank; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) axes.push(i);
  }
  return reshape(sum(g, axes, true), shape);
}

/**
 * Applies a binary table entry with broadcasting. u8 operands are read (comparisons of u8 masks give u32
 * masks) but an op whose result would be u8 refuses them: cast to another dtype first.
 */
export function binary(name: BinaryName, left: Tensor, right: Tensor): Tensor {
  using _family = opFamily("elementwise");
  const def = BINARY[name];
  const [a, b] = name === "pow" ? autocastF32([left, right]) : autocastCommon([left, right]);
  if (a.dtype !== b.dtype) {
    throw new TypeError(`${name}(): dtypes differ (${a} and ${b}); cast() one of them`);
  }
  if (!def.output) unpackedDtype(name, a);
  if (a.gpu !== b.gpu) throw new Error(`${name}(): tensors live on different devices`);
  const shape = broadcastShapes(a.shape, b.shape);
  const out = emptyOn(a, shape, def.output ?? a.dtype);
  runElementwise(
    a.gpu,
    { name, expr: def.wgsl, inputs: [a.dtype, b.dtype], output: out.dtype, helpers: def.helpers },
    [
      { binding: a.binding, strides: broadcastStrides(a.shape, shape) },
      { binding: b.binding, strides: broadcastStrides(b.shape, shape) },
    ],
    out.binding,
    shape,
  );
  const grad = def.grad;
  if (!grad || !isGradEnabled()) return out;
  return record(name, [a, b], out, [a, b, out], (g) => {
    const [ga, gb] = grad(a, b, out, g);
    return [ga && sumTo(ga, a.shape), gb && sumTo(gb, b.shape)];
  });
}

/** a + b (broadcasting; a number adds a scalar). */
export function add(a: Tensor, b: Tensor | number): Tensor {
  return typeof b === "number" ? addScalar(a, b) : binary("add", a, b);
}
/** a − b */
export function sub(a: Tensor, b: Tensor | number): Tensor {
  return typeof b === "number" ? addScalar(a, -b) : binary("sub", a, b);
}
/** a · b */
export function mul(a: Tensor, b: Tensor | number): Tensor {
  return typeof b === "number" ? mulScalar(a, b) : binary("mul", a, b);
}
/** a / b */
export function div(a: Tensor, b: Tensor | number): Tensor {
  return typeof b === "number" ? mulScalar(a, 1 / b) : binary("div", a, b);
}
/** aᵇ elementwise (a number exponent uses {@link powScalar}). */
export function pow(a: Tensor, b: Tensor | number): Tensor {
  return typeof b === "number" ? powScalar(a, b) : binary("pow", a, b);
}
/** Elementwise maximum (ties split the gradient). */
export const maximum = (a: Tensor, b: Tensor): Tensor => binary("maximum", a, b);
/** Elementwise minimum. */
export const minimum = (a: Tensor, b: Tensor): Tensor => binary("minimum", a, b);
/** a == b as a u32 mask. */
export const eq = (a: Tensor, b: Tensor): Tensor => binary("eq", a, b);
/** a != b as a u32 mask. */
export const ne = (a: Tensor, b: Tensor): Tensor => binary("ne", a, b);
/** a < b as a u32 mask. */
export const lt = (a: Tensor, b: Tensor): Tensor => binary("lt", a, b);
/** a ≤ b as a u32 mask. */
export const le = (a: Tensor, b: Tensor): Tensor => binary("le", a, b);
/** a > b as a u32 mask. */
export const gt = (a: Tensor, b: Tensor): Tensor => binary("gt", a, b);
/** a ≥ b as a u32 mask. */
export const ge = (a: Tensor, b: Tensor): Tensor => binary("ge", a, b);

/**
 * `cond ? a : b` elementwise with broadcasting; `cond` is an integer mask (u32, i32 or u8; non-zero
 * selects `a`). `a` and `b` share a dtype other than u8.
 */
export function where(cond: Tensor, ifTrue: Tensor, ifFalse: Tensor): Tensor {
  using _family = opFamily("elementwise");
  const [a, b] = autocastCommon([ifTrue, ifFalse]);
  if (isFloat(cond.dtype)) throw new TypeError(`where(): cond must be a u32/i32/u8 mask, got ${cond}`);
  if (a.dtype !== b.dtype) throw new TypeError(`where(): dtypes differ (${a} and ${b})`);
  unpackedDtype("where", a);
  const shape = broadcastShapes(broadcastShapes(cond.shape, a.shape), b.shape);
  const out = emptyOn(a, shape);
  const zero = cond.dtype === "i32" ? "0i" : "0u"; // u8 loads as u32
  runElementwise(
    a.gpu,
    {
      name: "where",
      expr: `select(c, b, a != ${zero})`,
      inputs: [cond.dtype, a.dtype, b.dtype],
      output: a.dtype,
    },
    [cond, a, b].map((t) => ({ binding: t.binding, strides: broadcastStrides(t.shape, shape) })),
    out.binding,
    shape,
  );
  return record("where", [cond, a, b], out, [cond], (g) => {
    const zeros = full([], 0, { dtype: g.dtype, gpu: g.gpu });
    return [undefined, sumTo(where(cond, g, zeros), a.shape), sumTo(where(cond, zeros, g), b.shape)];
  });
}

/**
 * WGSL of lerp over `a` (start), `b` (end), `c` (weight): PyTorch's two-sided form, exact at both ends
 * (weight 0 gives start and weight 1 gives end bit for bit, as a mask blend needs).
 */
const LERP_WGSL = "select(b - (b - a) * (1.0 - c), a + c * (b - a), abs(c) < 0.5)";

/**
 * start + weight · (end − start) elementwise with broadcasting (PyTorch's `torch.lerp`): one kernel for
 * what `add(mul(start, 1 − weight), mul(end, weight))` does in five (a mask-token blend, a volume fusion).
 * Float operands; mixed f16/f32 operands follow autocast's rule for binary ops.
 */
export function lerp(start: Tensor, end: Tensor, weight: Tensor): Tensor {
  using _family = opFamily("elementwise");
  const [a, b, w] = autocastCommon([start, end, weight]);
  for (const t of [a, b, w]) {
    if (!isFloat(t.dtype)) throw new TypeError(`lerp(): float operands expected, got ${t}`);
  }
  if (a.dtype !== b.dtype || a.dtype !== w.dtype) {
    throw new TypeError(`lerp(): dtypes differ (${a}, ${b}, ${w}); cast() them`);
  }
  if (a.gpu !== b.gpu || a.gpu !== w.gpu) throw new Error("lerp(): tensors live on different devices");
  const shape = broadcastShapes(broadcastShapes(a.shape, b.shape), w.shape);
  const out = emptyOn(a, shape);
  runElementwise(
    a.gpu,
    { name: "lerp", expr: LERP_WGSL, inputs: [a.dtype, b.dtype, w.dtype], output: a.dtype },
    [a, b, w].map((t) => ({ binding: t.binding, strides: broadcastStrides(t.shape, shape) })),
    out.binding,
    shape,
  );
  // d/dstart = 1 − w, d/dend = w, d/dw = end − start
  return record("lerp", [a, b, w], out, [a, b, w], (g) => {
    const gw = mul(g, w);
    return [
      a.requiresGrad ? sumTo(sub(g, gw), a.shape) : undefined,
      b.requiresGrad ? sumTo(gw, b.shape) : undefined,
      w.requiresGrad ? sumTo(mul(g, sub(b, a)), w.shape) : undefined,
    ];
  });
}

/**
 * Converts to another dtype (floats round to nearest; float → int truncates toward zero). Into u8 values
 * are clamped to [0, 255] then truncated toward zero (−3 → 0, 2.7 → 2, 300 → 255; NaN → an unspecified
 * byte); out of u8 they are exact.
 */
export function cast(x: Tensor, dtype: DType): Tensor {
  using _family = forceOpFamily("cast");
  if (x.dtype === dtype) return x;
  const out = emptyOn(x, x.shape, dtype);
  runElementwise(
    x.gpu,
    { name: "cast", expr: "a", inputs: [x.dtype], output: dtype },
    [{ binding: x.binding, strides: contiguousStrides(x.shape) }],
    out.binding,
    x.shape,
  );
  if (!isFloat(x.dtype) || !isFloat(dtype)) return out;
  return record("cast", [x], out, [], (g) => [cast(g, x.dtype)]);
}

/** A copy of `x` (differentiable; u8 copies too). */
export function clone(x: Tensor): Tensor {
  using _family = opFamily("elementwise");
  const out = emptyOn(x, x.shape);
  runElementwise(
    x.gpu,
    { name: "copy", expr: "a", inputs: [x.dtype], output: x.dtype },
    [{ binding: x.binding, strides: contiguousStrides(x.shape) }],
    out.binding,
    x.shape,
  );
  return record("clone", [x], out, [], (g) => [g]);
}

/** `target += alpha · source` in place (same shape; not recorded by autograd). */
export function addInPlace(target: Tensor, source: Tensor, alpha = 1): void {
  using _family = opFamily("elementwise");
  if (!sameShape(target.shape, source.shape) || target.dtype !== source.dtype) {
    throw new RangeError(`addInPlace(): ${target} and ${source} differ`);
  }
  if (target.dtype !== "f32" && target.dtype !== "f16") {
    throw new TypeError(`addInPlace(): float tensors only`);
  }
  runAccumulate(target.gpu, target.dtype, target.binding, source.binding, target.size, alpha);
}
