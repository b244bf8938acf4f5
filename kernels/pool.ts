/**
 * Pooling kernels on NCDHW: average and max pooling with kernel = stride (output ⌊D/kd⌋ × ⌊H/kh⌋ ×
 * ⌊W/kw⌋, trailing voxels dropped like PyTorch), and global average pooling over all spatial voxels.
 *
 * Forward: one invocation per output voxel, reading its kd·kh·kw window (max pooling also writes the
 * window position of the first maximum, as i32, for backward). Backward: one invocation per input voxel
 * (a gather, no atomics): its window's output gradient / (kd·kh·kw), or for max pooling the output
 * gradient where the saved position is its own; 0 in the dropped border. Global average pooling is a
 * row reduction (pieces of ≤ 4096 voxels, Kahan sums) and a pointwise backward.
 * Chunks (kernels/chunked.ts): runs of output (forward) or input (backward) voxels whose input/output
 * windows fit a binding; one output depth slice (kd·H·W input voxels) must fit. f32 or f16 storage.
 */
import type { BufferRange, Gpu } from "../core/gpu/mod.ts";
import {
  accumulatorWgsl,
  combineWgsl,
  expandBy,
  type OperandArg,
  type OperandSpec,
  perRow,
  rowPieceLength,
  runPointwise,
  runRowReduce,
} from "./chunked.ts";
import type { Scratch } from "./reduce.ts";

/** Sizes of a 3D pooling with kernel = stride. */
export interface Pool3dShape {
  /** N·C */
  nc: number;
  d: number;
  h: number;
  w: number;
  kd: number;
  kh: number;
  kw: number;
}

/** Output sizes ⌊d/kd⌋, ⌊h/kh⌋, ⌊w/kw⌋. */
export function poolOutput(s: Pool3dShape): [number, number, number] {
  return [Math.floor(s.d / s.kd), Math.floor(s.h / s.kh), Math.floor(s.w / s.kw)];
}

function uints(s: Pool3dShape): number[] {
  const [od, oh, ow] = poolOutput(s);
  return [s.d, s.h, s.w, s.kd, s.kh, s.kw, od, oh, ow];
}

const UINTS = ["d", "h", "w", "kd", "kh", "kw", "od", "oh", "ow"];

/** Input elements touched by outputs [g0, g1): from the first window's start to the last window's end. */
function inputSpan(s: Pool3dShape): (g0: number, g1: number) => [number, number] {
  const [od, oh, ow] = poolOutput(s);
  const start = (g: number) => {
    const x = g % ow;
    const y = Math.floor(g / ow) % oh;
    const z = Math.floor(g / (ow * oh)) % od;
    const nc = Math.floor(g / (ow * oh * od));
    return ((nc * s.d + z * s.kd) * s.h + y * s.kh) * s.w + x * s.kw;
  };
  const extent = ((s.kd - 1) * s.h + (s.kh - 1)) * s.w + s.kw;
  return (g0, g1) => [start(g0), start(g1 - 1) + extent];
}

/** Output elements read by inputs [g0, g1): whole output rows of the depth slices involved. */
function outputSpan(s: Pool3dShape): (g0: number, g1: number) => [number, number] {
  const [od, oh, ow] = poolOutput(s);
  const slice = (g: number) => {
    const z = Math.min(Math.floor((Math.floor(g / (s.w * s.h)) % s.d) / s.kd), od - 1);
    const nc = Math.floor(g / (s.w * s.h * s.d));
    return nc * od + z;
  };
  return (g0, g1) => [slice(g0) * oh * ow, (slice(g1 - 1) + 1) * oh * ow];
}

const DECOMPOSE_OUT = `let ow = g % p.u_ow;
  let oh = (g / p.u_ow) % p.u_oh;
  let od = (g / (p.u_ow * p.u_oh)) % p.u_od;
  let nc = g / (p.u_ow * p.u_oh * p.u_od);
  let base = ((nc * p.u_d + od * p.u_kd) * p.u_h + oh * p.u_kh) * p.u_w + ow * p.u_kw;`;

/**
 * Records avg or max pooling of `x` into `out` (N·C·od·oh·ow elements); max pooling also writes the
 * window position of the first maximum into `argmax` (i32).
 */
export function runPool3d(
  gpu: Gpu,
  type: "f32" | "f16",
  kind: "avg" | "max",
  s: Pool3dShape,
  x: BufferRange,
  out: BufferRange,
  argmax?: BufferRange,
): void {
  const [od, oh, ow] = poolOutput(s);
  const n = s.nc * od * oh * ow;
  if (n === 0) return;
  const operands: OperandSpec[] = [
    { name: "x", type, index: "custom" },
    { name: "o", type, write: true, index: "same" },
  ];
  const args: OperandArg[] = [{ range: x, span: inputSpan(s) }, { range: out }];
  if (kind === "max") {
    operands.push({ name: "am", type: "i32", write: true, index: "same" });
    args.push({ range: argmax! });
  }
  const loop = (inner: string) =>
    `for (var a = 0u; a < p.u_kd; a++) {
    for (var b = 0u; b < p.u_kh; b++) {
      for (var c = 0u; c < p.u_kw; c++) {
        let v = f32(x[ix_x(base + (a * p.u_h + b) * p.u_w + c)]);
        ${inner}
      }
    }
  }`;
  runPointwise(
    gpu,
    {
      key: `pool3d:${kind}:${type}`,
      name: `${kind}_pool3d[${type}]`,
      operands,
      uints: UINTS,
      floats: ["inv"],
      body: kind === "avg"
        ? `${DECOMPOSE_OUT}
  var acc = 0.0;
  ${loop("acc += v;")}
  o[ix_o(g)] = ${type}(acc * p.f_inv);`
        : `${DECOMPOSE_OUT}
  var best = f32(x[ix_x(base)]);
  var best_at = 0u;
  var at = 0u;
  ${loop("if (v > best) { best = v; best_at = at; }\n        at++;")}
  o[ix_o(g)] = ${type}(best);
  am[ix_am(g)] = i32(best_at);`,
    },
    n,
    args,
    uints(s),
    [1 / (s.kd * s.kh * s.kw)],
  );
}

/** Records the input gradient of {@link runPool3d} (max pooling reads the saved `argmax`). */
export function runPool3dGrad(
  gpu: Gpu,
  type: "f32" | "f16",
  kind: "avg" | "max",
  s: Pool3dShape,
  gy: BufferRange,
  dx: BufferRange,
  argmax?: BufferRange,
): void {
  const n = s.nc * s.d * s.h * s.w;
  if (n === 0) return;
  const span = outputSpan(s);
  const operands: OperandSpec[] = [{ name: "gy", type, index: "custom" }];
  const args: OperandArg[] = [{ range: gy, span }];
  if (kind === "max") {
    operands.push({ name: "am", type: "i32", index: "custom" });
    args.push({ range: argmax!, span });
  }
  operands.push({ name: "dx", type, write: true, index: "same" });
  args.push({ range: dx });
  const [od, oh, ow] = poolOutput(s);
  const pick = kind === "avg"
    ? "v = f32(gy[ix_gy(o)]) * p.f_inv;"
    : `let local = ((z - zo * p.u_kd) * p.u_kh + (y - yo * p.u_kh)) * p.u_kw + (xx - xo * p.u_kw);
    if (u32(am[ix_am(o)]) == local) { v = f32(gy[ix_gy(o)]); }`;
  runPointwise(
    gpu,
    {
      key: `pool3dgrad:${kind}:${type}`,
      name: `${kind}_pool3d_grad[${type}]`,
      operands,
      uints: UINTS,
      floats: ["inv"],
      body: `let xx = g % p.u_w;
  let y = (g / p.u_w) % p.u_h;
  let z = (g / (p.u_w * p.u_h)) % p.u_d;
  let nc = g / (p.u_w * p.u_h * p.u_d);
  let zo = z / p.u_kd;
  let yo = y / p.u_kh;
  let xo = xx / p.u_kw;
  var v = 0.0;
  if (zo < p.u_od && yo < p.u_oh && xo < p.u_ow) {
    let o = ((nc * p.u_od + zo) * p.u_oh + yo) * p.u_ow + xo;
    ${pick}
  }
  dx[ix_dx(g)] = ${type}(v);`,
    },
    od * oh * ow === 0 ? 0 : n,
    args,
    uints(s),
    [1 / (s.kd * s.kh * s.kw)],
  );
}

/** Records the mean of each of `rows` contiguous rows of `len` voxels into `out` (one value per row). */
export function runGlobalAvgPool(
  gpu: Gpu,
  type: "f32" | "f16",
  rows: number,
  len: number,
  x: BufferRange,
  out: BufferRange,
  scratch: Scratch,
): void {
  if (rows === 0) return;
  const pieceLen = rowPieceLength(gpu, len, 4);
  const pieces = Math.max(1, Math.ceil(len / pieceLen));
  const part = scratch.acquire(rows * pieces * 16);
  runRowReduce(
    gpu,
    {
      key: `gap:${type}`,
      name: `global_avg_pool[${type}]`,
      operands: [{ name: "x", type, index: "same" }],
      value: "let v = vec4<f32>(f32(x[ix_x(g)]), 0.0, 0.0, 0.0);",
      mode: "sum",
    },
    rows,
    len,
    pieceLen,
    [{ range: x }],
    part,
  );
  runPointwise(
    gpu,
    {
      key: `gapmerge:${type}`,
      name: `global_avg_pool_merge[${type}]`,
      operands: [{ name: "part", type: "vec4<f32>", index: "map" }, {
        name: "o",
        type,
        write: true,
        index: "same",
      }],
      uints: ["pieces"],
      floats: ["inv"],
      helpers: accumulatorWgsl("sum") + combineWgsl("part"),
      body: `o[ix_o(g)] = ${type}(combine_part(g).x * p.f_inv);`,
    },
    rows,
    [{ range: part, map: expandBy(pieces) }, { range: out }],
    [pieces],
    [len === 0 ? 0 : 1 / len],
  );
  scratch.release(part);
}

/** Records dx[g] = gy[⌊g / len⌋] / len, the gradient of {@link runGlobalAvgPool}. */
export function runGlobalAvgPoolGrad(
  gpu: Gpu,
  type: "f32" | "f16",
  rows: number,
  len: number,
  gy: BufferRange,
  dx: BufferRange,
): void {
  runPointwise(
    gpu,
    {
      key: `gapgrad:${type}`,
      name: `global_avg_pool_grad[${type}]`,
      operands: [{ name: "gy", type, index: "map" }, { name: "dx", type, write: true, index: "same" }],
      floats: ["inv"],
      body: `dx[ix_dx(g)] = ${type}(f32(gy[ix_gy(g)]) * p.f_inv);`,
    },
    rows * len,
    [{ range: gy, map: perRow(len) }, { range: dx }],
    [],
    [len === 0 ? 0 : 1 / len],
  );
}
