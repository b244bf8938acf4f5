/**
 * Geometry of one 3D convolution as the kernels see it (PyTorch Conv3d semantics, groups = 1, no
 * dilation): input [batch, cin, in…], weight [cout, cin, kernel…], output [batch, cout, out…] with
 * out = ⌊(in + 2·padding − kernel) / stride⌋ + 1 per axis. A transposed convolution is described by the
 * convolution whose input gradient it is (its output is that convolution's input).
 */

/** Three sizes, one per spatial axis (D, H, W). */
export type Conv3dTriple = readonly [number, number, number];

/** Sizes and hyperparameters of one convolution. */
export interface Conv3dGeometry {
  batch: number;
  cin: number;
  cout: number;
  /** Spatial size of the input (D, H, W). */
  in: Conv3dTriple;
  /** Spatial size of the output; must equal {@link convOutputSize} of the input. */
  out: Conv3dTriple;
  kernel: Conv3dTriple;
  stride: Conv3dTriple;
  padding: Conv3dTriple;
}

/** Output length of a convolution along one axis. */
export function convOutputSize(input: number, kernel: number, stride: number, padding: number): number {
  return Math.floor((input + 2 * padding - kernel) / stride) + 1;
}

/** Product of a triple. */
export function volume(t: Conv3dTriple): number {
  return t[0] * t[1] * t[2];
}

/** Throws unless `g` is consistent (positive sizes, output sizes matching the input). */
export function checkConv3dGeometry(op: string, g: Conv3dGeometry): void {
  const all = [g.batch, g.cin, g.cout, ...g.in, ...g.out, ...g.kernel, ...g.stride, ...g.padding];
  if (all.some((v) => !Number.isInteger(v) || v < 0)) {
    throw new RangeError(`${op}: sizes must be integers >= 0, got ${JSON.stringify(g)}`);
  }
  if ([g.cin, g.cout, ...g.kernel, ...g.stride].some((v) => v < 1)) {
    throw new RangeError(`${op}: channels, kernel and stride must be >= 1, got ${JSON.stringify(g)}`);
  }
  for (let a = 0; a < 3; a++) {
    const expected = convOutputSize(g.in[a], g.kernel[a], g.stride[a], g.padding[a]);
    if (g.out[a] !== expected || expected < 1) {
      throw new RangeError(
        `${op}: axis ${a}: input ${g.in[a]}, kernel ${g.kernel[a]}, stride ${g.stride[a]}, padding ` +
          `${g.padding[a]} give ${expected} outputs, geometry says ${g.out[a]}`,
      );
    }
  }
}

/** Multiply-adds of one convolution (forward; each backward pass costs the same). */
export function convMacs(g: Conv3dGeometry): number {
  return g.batch * g.cout * volume(g.out) * g.cin * volume(g.kernel);
}
