/**
 * Normalization kernels (instance, group, layer and channels-first layer norm), with the optional fused
 * residual add and LeakyReLU of ResEnc blocks, built on the chunked generators of kernels/chunked.ts.
 *
 * Geometry. Statistics are taken either over contiguous rows (`rows`: instance/group norm rows of
 * (C/G)·S voxels, layer norm rows of the last dim) or over the middle axis of `[outer, r, inner]`
 * (`columns`: channels-first layer norm, over C at each voxel). Affine parameters are indexed
 * `a = ⌊g / adiv⌋ mod amod` (per channel: adiv = S, amod = C; per last-dim element: adiv = 1).
 *
 * Math. Forward y = act((x − mean)·rstd·w + b + residual), act = LeakyReLU(slope) or identity, biased
 * variance, rstd = 1/√(var + eps). Backward, with gz = gy·act'(y) (act' read from the sign of y: valid
 * for slope ≥ 0) and x̂ = (x − mean)·rstd: dx = rstd·(w·gz − c₁ − x̂·c₂) with c₁ = mean(w·gz),
 * c₂ = mean(w·gz·x̂) over the statistic's elements, d(residual) = gz, dW = Σ gz·x̂ and dB = Σ gz per
 * affine index.
 *
 * Passes of instance and group norm (row geometry; fused and masked alike), per launch (T = tensor):
 * forward, 2 launches:
 *   F1 moments: reads x (and the mask) → ≤ 16 Welford states (vec4) per statistic; rows are cut into
 *      pieces of max(4096, ⌈len/16⌉) elements, one workgroup each (2×32 channels of 160³: 1024
 *      workgroups of 256,000 voxels).
 *   F2 apply (merged): reads x, the states, w, b, residual (and the mask) → y, and the statistics
 *      (mean, rstd[, 1/count, count]) kept for the backward. Where rows span at least a workgroup (256
 *      or 1024 elements), each workgroup first merges the ≤ 16 states of the ≤ 2 statistics its
 *      elements touch (one half of the workgroup per statistic, a tree in workgroup memory); on shorter
 *      rows (then one state each, bar tiny bindings) each invocation merges its statistic's states.
 * backward, 3 launches (2 without affine gradients):
 *   B1 sums: reads x, stats, gy, y (with an activation) and w → ≤ 16 partial sums (gz, gz·x̂) per
 *      (n, channel), and gz into d(residual) when there is a residual.
 *   B2 affine: reads the partial sums (bound whole) → dW, dB per channel (C invocations).
 *   B3 input gradient (merged): reads x, stats, gy and y (or gz, with a residual), w, the partial sums
 *      (and the mask) → dx; each statistic's c = Σ_c w[c]·(A, B)/m over its C/G channels' partial sums
 *      is merged per workgroup or per invocation as in F2.
 * Traffic (f32): forward 3 T (x twice, y), 4 T with a residual; backward 5 T (x, gy twice; dx), 7 T with
 * a residual and an activation. Before the merges were folded in: 3 forward launches (moments, merge,
 * apply) and 5 backward (sums, merge, group coefficients, affine, dx), one more each when a row had
 * more than 64 pieces (the pieces were ≤ 4096 elements; 160³ had 1000).
 * Past the binding limit a statistic may need more than 16 pieces (up to 64 are merged in place); beyond
 * 64, row reductions over the states merge them first (one more launch each), and B2 merges them to one
 * per (n, c) when the sums do not fit one binding.
 *
 * Layer norm over rows shares F1/F2. Channels-first layer norm (column geometry) and the layer norms'
 * backward keep the separate merge pass: moments, merge into stats, apply (3); sums of (w·gz, w·gz·x̂)
 * merged into the coefficients, affine sums over columns merged, affine per-unit sums, dx (6).
 *
 * Data types: x, y, residual, gy and dx share f32 or f16 storage; weight and bias may each be f32 or
 * f16; statistics and every accumulation are f32. Chunking: see kernels/chunked.ts; per-channel weights
 * and the small per-segment sums are bound whole.
 *
 * Masked (sparse) norm — SparK's norm over the visible voxels only. Every launcher takes an optional
 * {@link NormMask}: an f32 operand read at `map(g)` for element g (for x [N, C, S] and a mask [N, 1, S]
 * broadcast over channels, `perColumn(C, S)`: n·S + s), non-zero = visible. The same passes then
 * change in four places: (1) the statistics use the weighted Welford accumulator ("wmoments") with
 * weight 1 at visible and 0 at masked elements, and store vec4 (mean, rstd, 1/count, count) per
 * statistic (1/count = 0 when nothing is visible); (2) the pointwise pass writes exactly 0 at masked
 * elements (the residual is not added there either); (3) gz is 0 at masked elements, so the sums,
 * dW, dB and d(residual) see visible elements only, and the coefficients c₁, c₂ are means over the
 * visible count (read from the statistics, not a static 1/m); (4) dx is 0 at masked elements. A
 * statistic without visible elements gives y = 0, dx = 0 and no contribution to dW, dB (no NaN: its
 * rstd is 1/√eps and its 1/count 0). Limits: at most 8 storage operands per kernel, which the masked
 * passes reach (apply: x, states, w, b, residual, mask, stats, y; input gradient: x, st, gy, y, w,
 * mask, partial sums, dx); the mask window is planned like any mapped operand, so chunking is
 * unchanged.
 */
import type { BufferRange, Gpu } from "../core/gpu/mod.ts";
import {
  accumulatorWgsl,
  combineWgsl,
  type IndexMap,
  type OperandArg,
  type OperandSpec,
  type OperandType,
  type Partials,
  perColumn,
  perRow,
  type ReduceGeometry,
  type ReduceMergeArgs,
  type ReduceMergeSpec,
  reduceUnits,
  runPointwise,
  runReduceMerge,
  runReducePartials,
} from "./chunked.ts";
import type { Scratch } from "./reduce.ts";

/** Storage type of normalized tensors and parameters. */
export type FloatType = "f32" | "f16";

/** Where statistics are taken: contiguous rows, or the middle axis of [outer, r, inner]. */
export type NormGeometry = ReduceGeometry;

/** Affine index a = ⌊g / adiv⌋ mod amod. */
export interface AffineIndex {
  adiv: number;
  amod: number;
}

/**
 * The visibility mask of a masked norm: an f32 buffer read at `map(g)` for element g (non-zero =
 * visible).
 */
export interface NormMask {
  /** The mask's buffer. */
  range: BufferRange;
  /** Element g of x reads mask element `map(g)` (e.g. `perColumn(C, S)` for a mask [N, 1, S]). */
  map: IndexMap;
}

/** Floats per statistic: (mean, rstd), or (mean, rstd, 1/count, count) for a masked norm. */
export function statWidth(masked: boolean): number {
  return masked ? 4 : 2;
}

function statType(masked: boolean): OperandType {
  return masked ? "vec4<f32>" : "vec2<f32>";
}

/** Appends the mask operand `m` (f32, read through its map) when there is a mask. */
function maskOperand(mask: NormMask | undefined, operands: OperandSpec[], bound: OperandArg[]): void {
  if (!mask) return;
  operands.push({ name: "m", type: "f32", index: "map" });
  bound.push({ range: mask.range, map: mask.map });
}

/** Number of statistics (mean, rstd pairs) of a geometry. */
export function statCount(geo: NormGeometry): number {
  return reduceUnits(geo);
}

/** Elements per statistic. */
export function statSize(geo: NormGeometry): number {
  return geo.kind === "rows" ? geo.len : geo.r;
}

function statMap(geo: NormGeometry): IndexMap {
  return geo.kind === "rows" ? perRow(geo.len) : perColumn(geo.r, geo.inner);
}

function elements(geo: NormGeometry): number {
  return geo.kind === "rows" ? geo.rows * geo.len : geo.outer * geo.r * geo.inner;
}

/**
 * Records the statistics of `x`: `stats[i] = (mean, 1/√(var + eps))` (vec2<f32>, biased variance) for
 * every row or column of the geometry; with `mask`, over the visible elements only, as vec4<f32>
 * (mean, rstd, 1/count, count) (1/count = 0 for a statistic without visible elements).
 */
export function runNormStats(
  gpu: Gpu,
  type: FloatType,
  geo: NormGeometry,
  x: BufferRange,
  stats: BufferRange,
  eps: number,
  scratch: Scratch,
  mask?: NormMask,
): void {
  if (statCount(geo) === 0) return;
  const operands: OperandSpec[] = [{ name: "x", type, index: "same" }];
  const args: OperandArg[] = [{ range: x }];
  maskOperand(mask, operands, args);
  runReduceMerge(gpu, scratch, geo, {
    key: `normstats:${type}${mask ? ":masked" : ""}`,
    name: `norm_stats[${type},${geo.kind}${mask ? ",masked" : ""}]`,
    operands,
    value: mask
      ? "let v = vec4<f32>(f32(x[ix_x(g)]), select(0.0, 1.0, m[ix_m(g)] != 0.0), 0.0, 0.0);"
      : "let v = vec4<f32>(f32(x[ix_x(g)]), 0.0, 0.0, 0.0);",
    mode: mask ? "wmoments" : "moments",
    merge: {
      operands: [{ name: "st", type: statType(mask !== undefined), write: true, index: "same" }],
      floats: ["eps"],
      body: mask
        ? `let r = combine_part(g);
  let rstd = inverseSqrt(max(r.z / max(r.x, 1.0), 0.0) + p.f_eps);
  st[ix_st(g)] = vec4<f32>(r.y, rstd, select(0.0, 1.0 / r.x, r.x > 0.0), r.x);`
        : `let r = combine_part(g);
  st[ix_st(g)] = vec2<f32>(r.y, inverseSqrt(max(r.z / max(r.x, 1.0), 0.0) + p.f_eps));`,
    },
  }, { args, mergeArgs: [{ range: stats }], mergeFloats: [eps] });
}

/**
 * Whether 4 consecutive elements (from a multiple of 4) always share their statistic and either share
 * their affine index or have consecutive ones: then the pointwise passes run 4 elements per invocation
 * and compute the index arithmetic (runtime integer divisions) once. True for every row geometry whose
 * row length and channel size are multiples of 4 (all ResEnc shapes).
 */
function quadOk(geo: NormGeometry, affine: AffineIndex): boolean {
  return geo.kind === "rows" && geo.len % 4 === 0 &&
    (affine.adiv % 4 === 0 || (affine.adiv === 1 && affine.amod % 4 === 0));
}

/**
 * The body of a norm pointwise pass: `head` (statements shared by an invocation's elements, using
 * `g`) and `each` (per element `e` with affine index `a`), for one or four elements per invocation.
 */
function normBody(quad: boolean, head: string, each: string): string {
  if (!quad) return `${head}\n  let e = g;\n  let a = (g / p.u_adiv) % p.u_amod;\n  ${each}`;
  return `${head}
  let a0 = (g / p.u_adiv) % p.u_amod;
  let a_step = select(0u, 1u, p.u_adiv == 1u);
  for (var k = 0u; k < 4u; k++) {
    let e = g + k;
    if (e >= g_end) { break; }
    let a = a0 + k * a_step;
    ${each}
  }`;
}

/** Types of the tensors of a normalization (x-like tensors share `x`). */
export interface NormTypes {
  x: FloatType;
  weight?: FloatType;
  bias?: FloatType;
}

/** Buffers of {@link runNormApply}. */
export interface NormApplyArgs {
  x: BufferRange;
  stats: BufferRange;
  weight?: BufferRange;
  bias?: BufferRange;
  residual?: BufferRange;
  /** A masked norm's visibility (its `stats` are then the masked ones). */
  mask?: NormMask;
  y: BufferRange;
}

function typesKey(t: NormTypes): string {
  return `${t.x},${t.weight ?? "-"},${t.bias ?? "-"}`;
}

/** Which optional operands a norm's pointwise pass has. */
interface NormFlags {
  weight?: unknown;
  bias?: unknown;
  residual?: unknown;
  mask?: unknown;
}

/**
 * WGSL of the forward output of element `e` (affine index `a`), from its statistic `s` (mean, rstd):
 * the one place that defines y (shared by the 3-pass and the merged 2-pass forward).
 */
function applyEach(types: NormTypes, args: NormFlags, act: boolean): string {
  return `var z = (f32(x[ix_x(e)]) - s.x) * s.y;
    ${args.weight ? "z = z * f32(w[a]);" : ""}
    ${args.bias ? "z = z + f32(b[a]);" : ""}
    ${args.residual ? "z = z + f32(res[ix_res(e)]);" : ""}
    ${act ? "z = select(z * p.f_slope, z, z > 0.0);" : ""}${
    args.mask ? "\n    z = select(0.0, z, m[ix_m(e)] != 0.0);" : ""
  }
    y[ix_y(e)] = ${types.x}(z);`;
}

/**
 * Records y = act((x − mean)·rstd·w + b + residual) over the whole tensor; `slope` undefined: no
 * activation, else LeakyReLU(slope). With a mask, y = 0 at masked elements.
 */
export function runNormApply(
  gpu: Gpu,
  types: NormTypes,
  geo: NormGeometry,
  affine: AffineIndex,
  args: NormApplyArgs,
  slope?: number,
): void {
  const operands: OperandSpec[] = [
    { name: "x", type: types.x, index: "same" },
    { name: "st", type: statType(args.mask !== undefined), index: "map" },
  ];
  const bound: OperandArg[] = [{ range: args.x }, { range: args.stats, map: statMap(geo) }];
  if (args.weight) {
    operands.push({ name: "w", type: types.weight!, index: "whole" });
    bound.push({ range: args.weight });
  }
  if (args.bias) {
    operands.push({ name: "b", type: types.bias!, index: "whole" });
    bound.push({ range: args.bias });
  }
  if (args.residual) {
    operands.push({ name: "res", type: types.x, index: "same" });
    bound.push({ range: args.residual });
  }
  maskOperand(args.mask, operands, bound);
  operands.push({ name: "y", type: types.x, write: true, index: "same" });
  bound.push({ range: args.y });
  const act = slope !== undefined;
  const flags = `${args.weight ? "w" : ""}${args.bias ? "b" : ""}${args.residual ? "r" : ""}${
    act ? "a" : ""
  }${args.mask ? "m" : ""}`;
  const quad = quadOk(geo, affine);
  runPointwise(
    gpu,
    {
      key: `normapply:${typesKey(types)}:${flags}:${quad ? 4 : 1}`,
      name: `norm_apply[${types.x},${flags}${quad ? ",x4" : ""}]`,
      operands,
      uints: ["adiv", "amod"],
      floats: ["slope"],
      elementsPerInvocation: quad ? 4 : 1,
      body: normBody(quad, "let s = st[ix_st(g)];", applyEach(types, args, act)),
    },
    elements(geo),
    bound,
    [affine.adiv, affine.amod],
    [slope ?? 0],
  );
}

/** Buffers read by the backward reductions and the input gradient. */
export interface NormGradArgs {
  x: BufferRange;
  stats: BufferRange;
  gy: BufferRange;
  /** The forward output, when an activation was fused (its sign gives the activation's slope). */
  y?: BufferRange;
  weight?: BufferRange;
  /** A masked norm's visibility: gz and dx are 0 at masked elements (`stats` are the masked ones). */
  mask?: NormMask;
  /** Reductions only: also write gz = gy·act'(y) here (the residual's gradient, then read as gy). */
  gzOut?: BufferRange;
}

function gradOperands(
  types: NormTypes,
  geo: NormGeometry,
  args: NormGradArgs,
  weighted: boolean,
): { operands: OperandSpec[]; bound: OperandArg[] } {
  const operands: OperandSpec[] = [
    { name: "x", type: types.x, index: "same" },
    { name: "st", type: statType(args.mask !== undefined), index: "map" },
    { name: "gy", type: types.x, index: "same" },
  ];
  const bound: OperandArg[] = [{ range: args.x }, { range: args.stats, map: statMap(geo) }, {
    range: args.gy,
  }];
  if (args.y) {
    operands.push({ name: "y", type: types.x, index: "same" });
    bound.push({ range: args.y });
  }
  if (weighted && args.weight) {
    operands.push({ name: "w", type: types.weight!, index: "whole" });
    bound.push({ range: args.weight });
  }
  maskOperand(args.mask, operands, bound);
  return { operands, bound };
}

const GZ = (act: boolean, masked: boolean) =>
  `let s = st[ix_st(g)];
    let xh = (f32(x[ix_x(g)]) - s.x) * s.y;
    var gz = f32(gy[ix_gy(g)]);
    ${act ? "gz = select(gz * p.f_slope, gz, f32(y[ix_y(g)]) > 0.0);" : ""}${
    masked ? "\n    gz = select(0.0, gz, m[ix_m(g)] != 0.0);" : ""
  }`;

/**
 * Records sums of (gz, gz·x̂) — times w[a] when `weighted` — over every row or column of `reduce`
 * (which walks the same elements as `geo`, e.g. per-channel segments of S voxels while the statistics
 * are per group). `out[i] = scale·(Σ, Σ)` as vec2<f32>. With `args.gzOut`, gz is also written out, so
 * that the input-gradient pass reads it instead of gy and y (7 passes instead of 8 with a residual).
 */
export function runNormGradSums(
  gpu: Gpu,
  types: NormTypes,
  geo: NormGeometry,
  reduce: NormGeometry,
  affine: AffineIndex,
  args: NormGradArgs,
  weighted: boolean,
  out: BufferRange,
  scale: number,
  scratch: Scratch,
  slope?: number,
): void {
  if (statCount(reduce) === 0) return;
  const { spec, args: a } = gradSumsSpec(types, geo, reduce, affine, args, weighted, slope);
  runReduceMerge(gpu, scratch, reduce, {
    ...spec,
    merge: {
      operands: [{ name: "o", type: "vec2<f32>", write: true, index: "same" }],
      floats: ["scale"],
      body: `let r = combine_part(g);
  o[ix_o(g)] = vec2<f32>(r.x, r.y) * p.f_scale;`,
    },
  }, { ...a, mergeArgs: [{ range: out }], mergeFloats: [scale] });
}

/** The reduction of (gz, gz·x̂) shared by {@link runNormGradSums} and {@link runNormGradPartials}. */
function gradSumsSpec(
  types: NormTypes,
  geo: NormGeometry,
  reduce: NormGeometry,
  affine: AffineIndex,
  args: NormGradArgs,
  weighted: boolean,
  slope?: number,
): { spec: Omit<ReduceMergeSpec, "merge">; args: ReduceMergeArgs } {
  const { operands, bound } = gradOperands(types, geo, args, weighted);
  if (args.gzOut) {
    operands.push({ name: "gzo", type: types.x, write: true, index: "same" });
    bound.push({ range: args.gzOut });
  }
  const act = args.y !== undefined;
  const w = weighted && args.weight;
  const masked = args.mask !== undefined;
  const flags = `${act ? "a" : ""}${w ? "w" : ""}${args.gzOut ? "z" : ""}${masked ? "m" : ""}`;
  return {
    spec: {
      key: `normgrad:${typesKey(types)}:${flags}`,
      name: `norm_grad_sums[${types.x},${reduce.kind}${act ? ",act" : ""}${w ? ",weighted" : ""}${
        masked ? ",masked" : ""
      }]`,
      operands,
      uints: ["adiv", "amod"],
      floats: ["slope"],
      value: `${GZ(act, masked)}
    ${args.gzOut ? `gzo[ix_gzo(g)] = ${types.x}(gz);` : ""}
    ${w ? "gz = gz * f32(w[(g / p.u_adiv) % p.u_amod]);" : ""}
    let v = vec4<f32>(gz, gz * xh, 0.0, 0.0);`,
      mode: "sum",
    },
    args: { args: bound, uints: [affine.adiv, affine.amod], floats: [slope ?? 0], mergeArgs: [] },
  };
}

/**
 * Records dW[c] = Σₙ ab[n·C + c].y and dB[c] = Σₙ ab[n·C + c].x from per-(n, c) sums (gz, gz·x̂).
 */
export function runChannelSums(
  gpu: Gpu,
  types: NormTypes,
  n: number,
  c: number,
  ab: BufferRange,
  dWeight?: BufferRange,
  dBias?: BufferRange,
): void {
  const operands: OperandSpec[] = [{ name: "ab", type: "vec2<f32>", index: "whole" }];
  const bound: OperandArg[] = [{ range: ab }];
  if (dWeight) {
    operands.push({ name: "dw", type: types.weight!, write: true, index: "same" });
    bound.push({ range: dWeight });
  }
  if (dBias) {
    operands.push({ name: "db", type: types.bias!, write: true, index: "same" });
    bound.push({ range: dBias });
  }
  if (!dWeight && !dBias) return;
  runPointwise(
    gpu,
    {
      key: `chsums:${typesKey(types)}:${dWeight ? "w" : ""}${dBias ? "b" : ""}`,
      name: "norm_channel_sums",
      operands,
      uints: ["n", "c"],
      body: `var s = vec2<f32>(0.0);
  for (var i = 0u; i < p.u_n; i++) { s += ab[i * p.u_c + g]; }
  ${dWeight ? `dw[ix_dw(g)] = ${types.weight}(s.y);` : ""}
  ${dBias ? `db[ix_db(g)] = ${types.bias}(s.x);` : ""}`,
    },
    c,
    bound,
    [n, c],
  );
}

/** Outputs of {@link runNormInputGrad}. */
export interface NormInputGradArgs extends NormGradArgs {
  coef: BufferRange;
  dx: BufferRange;
}

/**
 * WGSL of dx at element `e` (affine index `a`) from its statistic `s` and coefficients `c` = (c₁, c₂):
 * the one place that defines dx (shared by the 5-pass and the merged 3-pass backward).
 */
function inputGradEach(types: NormTypes, args: NormFlags & { y?: unknown }, act: boolean): string {
  return `let xh = (f32(x[ix_x(e)]) - s.x) * s.y;
    var gz = f32(gy[ix_gy(e)]);
    ${act ? "gz = select(gz * p.f_slope, gz, f32(y[ix_y(e)]) > 0.0);" : ""}
    ${args.weight ? "let wv = f32(w[a]);" : "let wv = 1.0;"}
    ${
    args.mask
      ? `let vis = m[ix_m(e)] != 0.0;
    let d = s.y * (wv * gz - c.x - xh * c.y);
    dx[ix_dx(e)] = ${types.x}(select(0.0, d, vis));`
      : `dx[ix_dx(e)] = ${types.x}(s.y * (wv * gz - c.x - xh * c.y));`
  }`;
}

/** Records dx = rstd·(w·gz − c₁ − x̂·c₂) over the whole tensor (0 at masked elements). */
export function runNormInputGrad(
  gpu: Gpu,
  types: NormTypes,
  geo: NormGeometry,
  affine: AffineIndex,
  args: NormInputGradArgs,
  slope?: number,
): void {
  const { operands, bound } = gradOperands(types, geo, args, true);
  operands.push({ name: "cf", type: "vec2<f32>", index: "map" });
  bound.push({ range: args.coef, map: statMap(geo) });
  operands.push({ name: "dx", type: types.x, write: true, index: "same" });
  bound.push({ range: args.dx });
  const act = args.y !== undefined;
  const flags = `${act ? "a" : ""}${args.weight ? "w" : ""}${args.mask ? "m" : ""}`;
  const quad = quadOk(geo, affine);
  runPointwise(
    gpu,
    {
      key: `normdx:${typesKey(types)}:${flags}:${quad ? 4 : 1}`,
      name: `norm_input_grad[${types.x},${flags}${quad ? ",x4" : ""}]`,
      operands,
      uints: ["adiv", "amod"],
      floats: ["slope"],
      elementsPerInvocation: quad ? 4 : 1,
      body: normBody(
        quad,
        "let s = st[ix_st(g)];\n  let c = cf[ix_cf(g)];",
        inputGradEach(types, args, act),
      ),
    },
    elements(geo),
    bound,
    [affine.adiv, affine.amod],
    [slope ?? 0],
  );
}

// ---------------------------------------------------------------------------------------------------
// Merged passes: 2 forward (moments → apply) and 3 backward (sums → affine sums → dx) for row geometries

/** Invocations per workgroup of the generated pointwise passes (kernels/chunked.ts). */
const WG = 256;

/** Partials map of a row geometry: element g reads the `count` states of its statistic. */
function partialsMap(len: number, count: number): IndexMap {
  return { div: len, mul: count, mod: 1, extent: count };
}

/** The first stride of a tree over `count` values held by invocations 0 … count − 1 (of ≤ 128). */
function treeStart(count: number): number {
  let s = 1;
  while (s < Math.min(count, 128)) s *= 2;
  return Math.floor(s / 2);
}

/**
 * Whether a merged pass merges its statistics per workgroup (every workgroup's elements then touch at
 * most 2 statistics, as rows are at least a workgroup's span) rather than per invocation.
 */
function cooperative(len: number, elementsPerInvocation: number, count: number): boolean {
  return count > 1 && len >= WG * elementsPerInvocation;
}

/**
 * WGSL run by every workgroup of a merged pass: the 2 halves of the workgroup (128 invocations each)
 * merge the states of the first and second statistic its elements touch (`_gh`: the first element of
 * that statistic inside the workgroup), each over its `p.u_cnt` states read as `gather` (which adds
 * state `j` of the block at `_base` into `_acc`), in a shared tree using `combine(a, b)`; invocation 0
 * of each half then runs `finish` (with the merged vec4 `_r`), which stores its result in `_ws[_h]`.
 * The body then reads `_ws[g / p.u_len − _sa]`.
 */
function workgroupMerge(gather: string, combine: string, finish: string): string {
  return `let _sa = wg_g0 / p.u_len;
  let _h = lid / 128u;
  let _i = lid % 128u;
  let _gh = select(wg_g0, (_sa + 1u) * p.u_len, _h == 1u);
  let _live = _gh < wg_g1;
  var _acc = acc_init();
  if (_live) {
    let _base = ix_part(_gh);
    for (var j = _i; j < p.u_cnt; j += 128u) { ${gather} }
  }
  _tree[lid] = acc_value(_acc);
  workgroupBarrier();
  for (var _s = p.u_tree; _s > 0u; _s /= 2u) {
    if (_i < _s) { _tree[lid] = ${combine}; }
    workgroupBarrier();
  }
  if (_i == 0u && _live) {
    let _r = _tree[lid];
    ${finish}
  }
  workgroupBarrier();`;
}

const SHARED = `var<workgroup> _tree: array<vec4<f32>, ${WG}>;
var<workgroup> _ws: array<vec4<f32>, 2>;`;

/**
 * Records the partial moments of every row of `geo` (a row geometry): at most 16 Welford states per
 * statistic (64 past a small binding limit; weighted by visibility with `mask`), for
 * {@link runNormApplyMerged}, which merges them.
 * Release `part` to `scratch` once the apply pass is recorded.
 */
export function runNormPartials(
  gpu: Gpu,
  type: FloatType,
  geo: Extract<NormGeometry, { kind: "rows" }>,
  x: BufferRange,
  scratch: Scratch,
  mask?: NormMask,
): Partials {
  const operands: OperandSpec[] = [{ name: "x", type, index: "same" }];
  const args: OperandArg[] = [{ range: x }];
  maskOperand(mask, operands, args);
  return runReducePartials(
    gpu,
    scratch,
    geo,
    {
      key: `normstats:${type}${mask ? ":masked" : ""}`,
      name: `norm_stats[${type},${geo.kind}${mask ? ",masked" : ""}]`,
      operands,
      value: mask
        ? "let v = vec4<f32>(f32(x[ix_x(g)]), select(0.0, 1.0, m[ix_m(g)] != 0.0), 0.0, 0.0);"
        : "let v = vec4<f32>(f32(x[ix_x(g)]), 0.0, 0.0, 0.0);",
      mode: mask ? "wmoments" : "moments",
    },
    { args },
    true,
  );
}

/** Buffers of {@link runNormApplyMerged}. */
export interface NormApplyMergedArgs extends Omit<NormApplyArgs, "stats"> {
  /** Partial moments from {@link runNormPartials}. */
  partials: Partials;
  /** Written: (mean, rstd) per statistic, or (mean, rstd, 1/count, count) with a mask. */
  stats: BufferRange;
}

/**
 * Records y = act((x − mean)·rstd·w + b + residual) like {@link runNormApply}, merging each statistic's
 * partial moments itself (per workgroup when rows span whole workgroups, else per invocation), and
 * writes the statistics for the backward: the second and last forward pass.
 */
export function runNormApplyMerged(
  gpu: Gpu,
  types: NormTypes,
  geo: Extract<NormGeometry, { kind: "rows" }>,
  affine: AffineIndex,
  args: NormApplyMergedArgs,
  eps: number,
  slope?: number,
): void {
  const masked = args.mask !== undefined;
  const { part, pieces } = args.partials;
  const operands: OperandSpec[] = [
    { name: "x", type: types.x, index: "same" },
    { name: "part", type: "vec4<f32>", index: "map" },
  ];
  const bound: OperandArg[] = [{ range: args.x }, { range: part, map: partialsMap(geo.len, pieces) }];
  if (args.weight) {
    operands.push({ name: "w", type: types.weight!, index: "whole" });
    bound.push({ range: args.weight });
  }
  if (args.bias) {
    operands.push({ name: "b", type: types.bias!, index: "whole" });
    bound.push({ range: args.bias });
  }
  if (args.residual) {
    operands.push({ name: "res", type: types.x, index: "same" });
    bound.push({ range: args.residual });
  }
  maskOperand(args.mask, operands, bound);
  operands.push({ name: "st", type: statType(masked), write: true, index: "map" });
  bound.push({ range: args.stats, map: perRow(geo.len) });
  operands.push({ name: "y", type: types.x, write: true, index: "same" });
  bound.push({ range: args.y });
  const act = slope !== undefined;
  const quad = quadOk(geo, affine);
  const coop = cooperative(geo.len, quad ? 4 : 1, pieces);
  const flags = `${args.weight ? "w" : ""}${args.bias ? "b" : ""}${args.residual ? "r" : ""}${
    act ? "a" : ""
  }${masked ? "m" : ""}`;
  const store = `st[ix_st(${coop ? "_gh" : "g"})] = ${masked ? "s" : "s.xy"};`;
  runPointwise(
    gpu,
    {
      key: `normapplymerged:${typesKey(types)}:${flags}:${quad ? 4 : 1}:${coop ? "wg" : "inv"}`,
      name: `norm_apply_merged[${types.x},${flags}${quad ? ",x4" : ""}${coop ? ",wg" : ""}]`,
      operands,
      uints: ["adiv", "amod", "len", "pieces", "cnt", "tree"],
      floats: ["slope", "eps"],
      elementsPerInvocation: quad ? 4 : 1,
      helpers: `${accumulatorWgsl(masked ? "wmoments" : "moments")}
${coop ? SHARED : combineWgsl("part")}
// (count, mean, M2) → (mean, rstd, 1/count, count), biased variance, 1/count = 0 when empty
fn stat_of(r: vec4<f32>) -> vec4<f32> {
  let rstd = inverseSqrt(max(r.z / max(r.x, 1.0), 0.0) + p.f_eps);
  return vec4<f32>(r.y, rstd, select(0.0, 1.0 / r.x, r.x > 0.0), r.x);
}`,
      workgroupSetup: coop
        ? workgroupMerge(
          "_acc = acc_merge(_acc, acc_from(part[_base + j]));",
          "acc_value(acc_merge(acc_from(_tree[lid]), acc_from(_tree[lid + _s])))",
          `let s = stat_of(_r);
    _ws[_h] = s;
    if (_gh % p.u_len == 0u) { ${store} }`,
        )
        : "",
      body: normBody(
        quad,
        coop ? "let s = _ws[g / p.u_len - _sa];" : `let s = stat_of(combine_part(g));
  if (g % p.u_len == 0u) { ${store} }`,
        applyEach(types, args, act),
      ),
    },
    elements(geo),
    bound,
    [affine.adiv, affine.amod, geo.len, pieces, pieces, treeStart(pieces)],
    [slope ?? 0, eps],
  );
}

/**
 * Records the partial sums (gz, gz·x̂) of every row of `reduce` (per-channel segments for group norms),
 * at most 16 per row (64 past a small binding limit), writing gz to `args.gzOut` when given: the first
 * backward pass. Release `part` to `scratch` once the passes that read it are recorded.
 */
export function runNormGradPartials(
  gpu: Gpu,
  types: NormTypes,
  geo: NormGeometry,
  reduce: Extract<NormGeometry, { kind: "rows" }>,
  affine: AffineIndex,
  args: NormGradArgs,
  scratch: Scratch,
  slope?: number,
): Partials {
  const { spec, args: a } = gradSumsSpec(types, geo, reduce, affine, args, false, slope);
  return runReducePartials(gpu, scratch, reduce, spec, a, true);
}

/**
 * Records dW[c] = Σₙ Σ_q part[(n·C + c)·pieces + q].y and dB[c] = (the same).x from the per-(n, c)
 * partial sums of {@link runNormGradPartials} (bound whole).
 */
export function runChannelPartialSums(
  gpu: Gpu,
  types: NormTypes,
  n: number,
  c: number,
  partials: Partials,
  dWeight?: BufferRange,
  dBias?: BufferRange,
): void {
  if (!dWeight && !dBias) return;
  const operands: OperandSpec[] = [{ name: "part", type: "vec4<f32>", index: "whole" }];
  const bound: OperandArg[] = [{ range: partials.part }];
  if (dWeight) {
    operands.push({ name: "dw", type: types.weight!, write: true, index: "same" });
    bound.push({ range: dWeight });
  }
  if (dBias) {
    operands.push({ name: "db", type: types.bias!, write: true, index: "same" });
    bound.push({ range: dBias });
  }
  runPointwise(
    gpu,
    {
      key: `chpartsums:${typesKey(types)}:${dWeight ? "w" : ""}${dBias ? "b" : ""}`,
      name: "norm_channel_sums",
      operands,
      uints: ["n", "c", "pieces"],
      body: `var s = vec2<f32>(0.0);
  for (var i = 0u; i < p.u_n; i++) {
    let base = (i * p.u_c + g) * p.u_pieces;
    for (var q = 0u; q < p.u_pieces; q++) { s += part[base + q].xy; }
  }
  ${dWeight ? `dw[ix_dw(g)] = ${types.weight}(s.y);` : ""}
  ${dBias ? `db[ix_db(g)] = ${types.bias}(s.x);` : ""}`,
    },
    c,
    bound,
    [n, c, partials.pieces],
  );
}

/** Buffers of {@link runNormInputGradMerged}. */
export interface NormInputGradMergedArgs extends NormGradArgs {
  /** Per-(n, c) partial sums (gz, gz·x̂) from {@link runNormGradPartials}. */
  partials: Partials;
  dx: BufferRange;
}

/**
 * Records dx = rstd·(w·gz − c₁ − x̂·c₂) like {@link runNormInputGrad} for a group/instance norm (row
 * geometry of `cpg` channels of `channels` per statistic, statistic g·cpg … of the per-channel partial
 * sums), merging each statistic's coefficients c = scale·Σ_c w[c]·(A, B) from the cpg·pieces partial
 * sums itself (scale = `scale`, or each statistic's 1/count with a mask): the last backward pass.
 */
export function runNormInputGradMerged(
  gpu: Gpu,
  types: NormTypes,
  geo: Extract<NormGeometry, { kind: "rows" }>,
  affine: AffineIndex,
  group: { cpg: number; channels: number },
  args: NormInputGradMergedArgs,
  scale: number,
  slope?: number,
): void {
  const { part, pieces } = args.partials;
  const count = group.cpg * pieces;
  const { operands, bound } = gradOperands(types, geo, args, true);
  operands.push({ name: "part", type: "vec4<f32>", index: "map" });
  bound.push({ range: part, map: partialsMap(geo.len, count) });
  operands.push({ name: "dx", type: types.x, write: true, index: "same" });
  bound.push({ range: args.dx });
  const act = args.y !== undefined;
  const masked = args.mask !== undefined;
  const quad = quadOk(geo, affine);
  const coop = cooperative(geo.len, quad ? 4 : 1, count);
  const flags = `${act ? "a" : ""}${args.weight ? "w" : ""}${masked ? "m" : ""}`;
  // state j of statistic `sig` belongs to channel (sig·cpg + j / pieces) mod C
  const weight = (sig: string) => args.weight ? ` * f32(w[(${sig} * p.u_cpg + j / p.u_pieces) % p.u_c])` : "";
  const scaleOf = (gi: string) => (masked ? `st[ix_st(${gi})].z` : "p.f_scale");
  runPointwise(
    gpu,
    {
      key: `normdxmerged:${typesKey(types)}:${flags}:${quad ? 4 : 1}:${coop ? "wg" : "inv"}`,
      name: `norm_input_grad_merged[${types.x},${flags}${quad ? ",x4" : ""}${coop ? ",wg" : ""}]`,
      operands,
      uints: ["adiv", "amod", "len", "cnt", "pieces", "cpg", "c", "tree"],
      floats: ["slope", "scale"],
      elementsPerInvocation: quad ? 4 : 1,
      helpers: coop ? `${accumulatorWgsl("sum")}\n${SHARED}` : `
// c = scale·Σ_j w·(A, B) over the cnt partial sums of element g's statistic
fn coef_of(g: u32) -> vec2<f32> {
  let base = ix_part(g);
  let sig = g / p.u_len;
  var s = vec2<f32>(0.0);
  for (var j = 0u; j < p.u_cnt; j++) { s += part[base + j].xy${weight("sig")}; }
  return s * ${scaleOf("g")};
}`,
      workgroupSetup: coop
        ? workgroupMerge(
          `_acc = acc_add(_acc, part[_base + j]${weight("(_gh / p.u_len)")});`,
          "_tree[lid] + _tree[lid + _s]",
          `_ws[_h] = vec4<f32>(_r.xy * ${scaleOf("_gh")}, 0.0, 0.0);`,
        )
        : "",
      body: normBody(
        quad,
        `let s = st[ix_st(g)];\n  let c = ${coop ? "_ws[g / p.u_len - _sa].xy" : "coef_of(g)"};`,
        inputGradEach(types, args, act),
      ),
    },
    elements(geo),
    bound,
    [affine.adiv, affine.amod, geo.len, count, pieces, group.cpg, group.channels, treeStart(count)],
    [slope ?? 0, scale],
  );
}
