/**
 * 3D convolutions with PyTorch semantics (NCDHW, groups = 1, no dilation): `conv3d` (Conv3d) and
 * `convTranspose3d` (ConvTranspose3d), forward and backward, on the implicit-GEMM kernels of
 * kernels/conv3d_*.ts. The two ops share three kernels: conv3d's input gradient is convTranspose3d's
 * forward pass and conv3d's forward pass is convTranspose3d's input gradient; one weight-gradient kernel
 * serves both with the roles of input and output gradient swapped. Float64 reference:
 * core/tensor/reference/conv.ts.
 *
 * Precision: operands are all f32 or all f16 (f16 storage with f32 arithmetic and accumulation; needs the
 * device's shader-f16); the output and every gradient have the operands' dtype. Under `autocast()` f32
 * operands are cast to f16 and the result is f16 (core/tensor/autocast.ts).
 */
import {
  type Conv3dGeometry,
  type Conv3dTriple,
  type ConvType,
  runConv3dBackwardData,
  runConv3dBackwardWeight,
  runConv3dBiasGrad,
  runConv3dForward,
} from "../../../kernels/mod.ts";
import { record } from "../autograd.ts";
import type { Tensor } from "../tensor.ts";
import { autocastOp } from "./autocast_op.ts";
import { emptyOn } from "./create.ts";
import { cast } from "./elementwise.ts";
import { opFamily } from "../../gpu/op_family.ts";

/** A size per spatial axis (D, H, W), or one size for all three. */
export type Size3 = number | readonly [number, number, number];

/** Options of {@link conv3d}. */
export interface Conv3dOptions {
  /** Added per output channel, shape [Cout]. */
  bias?: Tensor;
  /** Step of the kernel per axis (default 1). */
  stride?: Size3;
  /** Zeros added on both sides of each axis (default 0). */
  padding?: Size3;
}

/** Options of {@link convTranspose3d}. */
export interface ConvTranspose3dOptions extends Conv3dOptions {
  /** Extra rows at the high end of each axis of the output, each smaller than the stride (default 0). */
  outputPadding?: Size3;
}

function triple(
  op: string,
  name: string,
  value: Size3 | undefined,
  fallback: number,
  min: number,
): Conv3dTriple {
  const t: Conv3dTriple = value === undefined
    ? [fallback, fallback, fallback]
    : typeof value === "number"
    ? [value, value, value]
    : [value[0], value[1], value[2]];
  if (t.length !== 3 || t.some((v) => !Number.isInteger(v) || v < min)) {
    throw new RangeError(
      `${op}(): ${name} must be an integer >= ${min} or three of them, got ${JSON.stringify(value)}`,
    );
  }
  return t;
}

/** The first three entries of a list, as a triple. */
function t3(a: readonly number[]): Conv3dTriple {
  return [a[0], a[1], a[2]];
}

function checkOperands(
  op: string,
  x: Tensor,
  weight: Tensor,
  bias: Tensor | undefined,
  biasSize: number,
): void {
  if (x.rank !== 5) throw new RangeError(`${op}(): input must be [N, C, D, H, W], got ${x}`);
  if (weight.rank !== 5) throw new RangeError(`${op}(): weight must have rank 5, got ${weight}`);
  if (x.dtype !== "f32" && x.dtype !== "f16") {
    throw new TypeError(`${op}(): input must be f32 or f16, got ${x}`);
  }
  for (const t of [weight, bias]) {
    if (t && t.dtype !== x.dtype) {
      throw new TypeError(`${op}(): operands must share one dtype (all f32 or all f16), got ${x} and ${t}`);
    }
    if (t && t.gpu !== x.gpu) throw new Error(`${op}(): tensors live on different devices`);
  }
  if (x.shape[1] !== weight.shape[op === "conv3d" ? 1 : 0]) {
    throw new RangeError(
      `${op}(): input ${x} has ${x.shape[1]} channels, weight ${weight} expects ` +
        `${weight.shape[op === "conv3d" ? 1 : 0]} (groups = 1)`,
    );
  }
  if (bias && (bias.rank !== 1 || bias.shape[0] !== biasSize)) {
    throw new RangeError(`${op}(): bias must be [${biasSize}], got ${bias}`);
  }
}

/** conv3d's input gradient (ConvTranspose3d of g), shaped like the convolution's input. */
function inputGrad(g: Tensor, weight: Tensor, geo: Conv3dGeometry, bias?: Tensor): Tensor {
  const dx = emptyOn(g, [geo.batch, geo.cin, ...geo.in]);
  runConv3dBackwardData(g.gpu, geo, {
    dy: g.binding,
    w: weight.binding,
    bias: bias?.binding,
    dx: dx.binding,
  }, g.dtype as ConvType);
  return dx;
}

/** conv3d's weight gradient for input `x` and output gradient `g`. */
function weightGrad(x: Tensor, g: Tensor, geo: Conv3dGeometry): Tensor {
  const dw = emptyOn(x, [geo.cout, geo.cin, ...geo.kernel]);
  runConv3dBackwardWeight(x.gpu, geo, { x: x.binding, dy: g.binding, dw: dw.binding }, x.dtype as ConvType);
  return dw;
}

/** conv3d's output for input `x` (shaped [batch, cout, out…]). */
function forward(x: Tensor, weight: Tensor, geo: Conv3dGeometry, bias?: Tensor): Tensor {
  const y = emptyOn(x, [geo.batch, geo.cout, ...geo.out]);
  runConv3dForward(
    x.gpu,
    geo,
    { x: x.binding, w: weight.binding, bias: bias?.binding, y: y.binding },
    x.dtype as ConvType,
  );
  return y;
}

/** Per-channel sum of an NCDHW gradient (the bias gradient). */
function channelSum(g: Tensor): Tensor {
  const out = emptyOn(g, [g.shape[1]]);
  runConv3dBiasGrad(g.gpu, g.binding, out.binding, {
    batch: g.shape[0],
    channels: g.shape[1],
    spatial: g.shape[2] * g.shape[3] * g.shape[4],
  }, g.dtype as ConvType);
  return out;
}

/** The output gradient in the operands' dtype (a rule downstream may hand back another float type). */
function gradAs(g: Tensor, like: Tensor): Tensor {
  return g.dtype === like.dtype ? g : cast(g, like.dtype);
}

/**
 * 3D convolution as PyTorch's `F.conv3d` with groups = 1: input [N, Cin, D, H, W], weight
 * [Cout, Cin, kD, kH, kW], optional bias [Cout]; output [N, Cout, ⌊(D + 2p − kD)/s⌋ + 1, …].
 * All f32 or all f16 tensors (f32 accumulation); under `autocast()` f32 operands compute in f16 and the
 * output is f16. Differentiable with respect to input, weight and bias. Tensors above the device's
 * binding limit are processed in chunks.
 * @example
 * const y = conv3d(x, w, { bias: b, stride: 2, padding: 1 }); // ResEnc downsampling
 */
export function conv3d(x: Tensor, weight: Tensor, options: Conv3dOptions = {}): Tensor {
  using _family = opFamily("conv");
  return autocastOp(
    [x, weight, options.bias],
    ([x16, w16, b16]) => conv3d(x16!, w16!, { ...options, bias: b16 }),
  ) ??
    conv3dAsCalled(x, weight, options);
}

function conv3dAsCalled(x: Tensor, weight: Tensor, options: Conv3dOptions): Tensor {
  const { bias } = options;
  checkOperands("conv3d", x, weight, bias, weight.shape[0]);
  const stride = triple("conv3d", "stride", options.stride, 1, 1);
  const padding = triple("conv3d", "padding", options.padding, 0, 0);
  const [n, cin, ...spatial] = x.shape;
  const [cout, , ...kernel] = weight.shape;
  const out = spatial.map((len, a) => Math.floor((len + 2 * padding[a] - kernel[a]) / stride[a]) + 1);
  if (out.some((o) => o < 1) || kernel.some((k) => k < 1)) {
    throw new RangeError(
      `conv3d(): input ${x} with kernel [${kernel}], stride [${stride}], padding [${padding}] gives no output`,
    );
  }
  const geo: Conv3dGeometry = {
    batch: n,
    cin,
    cout,
    in: t3(spatial),
    out: t3(out),
    kernel: t3(kernel),
    stride,
    padding,
  };
  const y = forward(x, weight, geo, bias);
  const inputs = bias ? [x, weight, bias] : [x, weight];
  return record("conv3d", inputs, y, [x, weight], (grad) => {
    const g = gradAs(grad, x);
    return [
      x.requiresGrad ? inputGrad(g, weight, geo) : undefined,
      weight.requiresGrad ? weightGrad(x, g, geo) : undefined,
      bias?.requiresGrad ? channelSum(g) : undefined,
    ];
  });
}

/**
 * Transposed 3D convolution as PyTorch's `F.conv_transpose3d` with groups = 1: input
 * [N, Cin, D, H, W], weight [Cin, Cout, kD, kH, kW], optional bias [Cout]; output
 * [N, Cout, (D − 1)·s − 2p + kD + outputPadding, …]. All f32 or all f16 tensors (f32 accumulation);
 * under `autocast()` f32 operands compute in f16 and the output is f16. Differentiable with respect to
 * input, weight and bias. Tensors above the device's binding limit are processed in chunks.
 * @example
 * const up = convTranspose3d(x, w, { stride: 2 }); // decoder upsampling with a 2³ kernel
 */
export function convTranspose3d(x: Tensor, weight: Tensor, options: ConvTranspose3dOptions = {}): Tensor {
  using _family = opFamily("conv");
  return autocastOp(
    [x, weight, options.bias],
    ([x16, w16, b16]) => convTranspose3d(x16!, w16!, { ...options, bias: b16 }),
  ) ??
    convTranspose3dAsCalled(x, weight, options);
}

function convTranspose3dAsCalled(x: Tensor, weight: Tensor, options: ConvTranspose3dOptions): Tensor {
  const { bias } = options;
  checkOperands("convTranspose3d", x, weight, bias, weight.shape[1]);
  const stride = triple("convTranspose3d", "stride", options.stride, 1, 1);
  const padding = triple("convTranspose3d", "padding", options.padding, 0, 0);
  const outputPadding = triple("convTranspose3d", "outputPadding", options.outputPadding, 0, 0);
  if (outputPadding.some((o, a) => o >= stride[a])) {
    throw new RangeError(
      `convTranspose3d(): outputPadding [${outputPadding}] must be smaller than the stride [${stride}]`,
    );
  }
  const [n, cin, ...spatial] = x.shape;
  const [, cout, ...kernel] = weight.shape;
  const out = spatial.map((len, a) => (len - 1) * stride[a] - 2 * padding[a] + kernel[a] + outputPadding[a]);
  if (out.some((o) => o < 1) || spatial.some((s) => s < 1) || kernel.some((k) => k < 1)) {
    throw new RangeError(
      `convTranspose3d(): input ${x} with kernel [${kernel}], stride [${stride}], padding [${padding}] ` +
        `gives no output`,
    );
  }
  // the convolution whose input gradient this is: input = our output, output = our input
  const geo: Conv3dGeometry = {
    batch: n,
    cin: cout,
    cout: cin,
    in: t3(out),
    out: t3(spatial),
    kernel: t3(kernel),
    stride,
    padding,
  };
  const y = inputGrad(x, weight, geo, bias);
  const inputs = bias ? [x, weight, bias] : [x, weight];
  return record("convTranspose3d", inputs, y, [x, weight], (grad) => {
    const g = gradAs(grad, x);
    return [
      x.requiresGrad ? forward(g, weight, geo) : undefined,
      weight.requiresGrad ? weightGrad(g, x, geo) : undefined,
      bias?.requiresGrad ? channelSum(g) : undefined,
    ];
  });
}
