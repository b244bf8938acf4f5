/**
 * Elementwise kernels, generated from a WGSL expression: one output element per invocation.
 *
 * Layout: contiguous output of `n` elements; up to 3 inputs, each read through its own strides so that
 * broadcasting (stride 0) needs no copy. Rank ≤ 8. The `contiguous` variant (every input already has the
 * output's shape) skips the index arithmetic.
 * Values: float inputs are loaded as f32 (f16 storage is widened), integer inputs keep their type (u8,
 * stored packed 4 per u32 word, is loaded as u32); the expression sees them as `a`, `b`, `c` and the
 * scalars `s0`, `s1` (f32); the result converts to the output type. A u8 output is written one whole word
 * (4 elements) per invocation, so no two invocations touch one word: the result goes through f32, is
 * clamped to [0, 255] and truncated toward zero (NaN gives an unspecified value in 0..255); the bytes of
 * the last word past `n` are written as 0.
 * Workgroup: 256 invocations; the linear grid is split over x/y/z past 65,535 workgroups.
 * Limits: above `maxStorageBufferBindingSize` the launch planner (launch_plan.ts) splits the work into
 * windows along one axis, broadcast operands included; every operand (and the output) carries an element
 * `base` into its window's aligned binding.
 */
import type { BufferRange, Gpu } from "../core/gpu/mod.ts";
import { Params } from "../core/gpu/mod.ts";
import { planWindows, spanLimitBytes } from "./launch_plan.ts";
import {
  ELEMENT_BYTES,
  ELEMENTWISE_WORKGROUP,
  type ElementwiseType,
  LINEAR_INDEX,
  MAX_RANK,
  specialize,
} from "./wgsl.ts";

/** What to compute: `expr` over `a`, `b`, `c`, `s0`, `s1`; `helpers` adds WGSL functions it calls. */
export interface ElementwiseSpec {
  /** Label for errors and timings, e.g. "add". */
  name: string;
  expr: string;
  inputs: readonly ElementwiseType[];
  output: ElementwiseType;
  helpers?: string;
}

/** One input: its buffer and its strides over the output's shape (0 where broadcast). */
export interface ElementwiseInput {
  binding: BufferRange;
  strides: readonly number[];
}

const NAMES = ["a", "b", "c"];

function loadType(t: ElementwiseType): string {
  return t === "f16" || t === "f32" ? "f32" : t === "u8" ? "u32" : t;
}

function storageType(t: ElementwiseType): string {
  return t === "u8" ? "u32" : t;
}

/** WGSL loading input `k` at element `index` (after stride arithmetic) as `a`, `b` or `c`. */
function load(t: ElementwiseType, k: number, index: string, indent: string): string {
  if (t !== "u8") return `let ${NAMES[k]} = ${loadType(t)}(in${k}[${index}]);`;
  const j = `${NAMES[k]}_j`;
  return `let ${j} = ${index};\n${indent}let ${
    NAMES[k]
  } = (in${k}[${j} >> 2u] >> ((${j} & 3u) * 8u)) & 0xffu;`;
}

function source(spec: ElementwiseSpec, contiguous: boolean): string {
  const decls = spec.inputs.map((t, k) =>
    `@group(0) @binding(${k}) var<storage, read> in${k}: array<${storageType(t)}>;`
  ).join("\n");
  const loads = (indent: string) =>
    spec.inputs.map((t, k) =>
      indent + load(t, k, contiguous ? `p.base[${k}] + i` : `p.base[${k}] + offset_of(i, ${k}u)`, indent)
    )
      .join("\n");
  const body = spec.output === "u8"
    ? /* wgsl */ `
  let w = linear_workgroup(wid, nwg) * {{WG}}u + lid;
  if (w * 4u >= p.n) { return; }
  let s0 = p.s0;
  let s1 = p.s1;
  var word = 0u;
  for (var e = 0u; e < 4u; e++) {
    let i = w * 4u + e;
    if (i >= p.n) { break; }
${loads("    ")}
    word |= min(u32(clamp(f32({{EXPR}}), 0.0, 255.0)), 255u) << (e * 8u);
  }
  out[p.base[3] / 4u + w] = word;`
    : /* wgsl */ `
  let i = linear_workgroup(wid, nwg) * {{WG}}u + lid;
  if (i >= p.n) { return; }
  let s0 = p.s0;
  let s1 = p.s1;
${loads("  ")}
  out[p.base[3] + i] = {{TO}}({{EXPR}});`;
  return specialize(
    /* wgsl */ `
struct P { n: u32, rank: u32, s0: f32, s1: f32, shape: array<vec4<u32>, 2>, strides: array<vec4<u32>, 6>,
           base: vec4<u32> }
${decls}
@group(0) @binding({{OUT}}) var<storage, read_write> out: array<{{TO}}>;
@group(1) @binding(0) var<uniform> p: P;
${LINEAR_INDEX}
fn offset_of(i: u32, k: u32) -> u32 {
  var rem = i;
  var off = 0u;
  for (var d = i32(p.rank) - 1; d >= 0; d--) {
    let dd = u32(d);
    let size = p.shape[dd / 4u][dd % 4u];
    off += (rem % size) * p.strides[2u * k + dd / 4u][dd % 4u];
    rem = rem / size;
  }
  return off;
}
{{HELPERS}}
@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {${body}
}
`,
    {
      OUT: spec.inputs.length,
      TO: storageType(spec.output),
      EXPR: spec.expr,
      HELPERS: spec.helpers ?? "",
      WG: ELEMENTWISE_WORKGROUP,
    },
  );
}

/**
 * Records `out[i] = expr(inputs at i)` for `n = prod(shape)` elements. `out` must hold `n` elements of
 * `spec.output`.
 */
export function runElementwise(
  gpu: Gpu,
  spec: ElementwiseSpec,
  inputs: readonly ElementwiseInput[],
  out: BufferRange,
  shape: readonly number[],
  scalars: readonly [number, number] = [0, 0],
): void {
  if (shape.length > MAX_RANK) throw new RangeError(`${spec.name}: rank ${shape.length} exceeds ${MAX_RANK}`);
  if (inputs.length !== spec.inputs.length) {
    throw new Error(`${spec.name}: expected ${spec.inputs.length} inputs`);
  }
  const n = shape.reduce((x, y) => x * y, 1);
  if (n === 0) return;
  const limit = gpu.limits.maxStorageBufferBindingSize;
  if (out.size > limit || inputs.some((inp) => inp.binding.size > limit)) {
    runSplit(gpu, spec, inputs, out, shape, scalars);
    return;
  }
  dispatchElementwise(gpu, spec, inputs, out, shape, scalars, n, [0, 0, 0, 0]);
}

function dispatchElementwise(
  gpu: Gpu,
  spec: ElementwiseSpec,
  inputs: readonly ElementwiseInput[],
  out: BufferRange,
  shape: readonly number[],
  scalars: readonly [number, number],
  n: number,
  bases: readonly number[],
): void {
  const dense = contiguousStrides(shape);
  const contiguous = inputs.every((inp) => inp.strides.every((s, d) => s === dense[d]));
  const key = `ew:${spec.name}:${spec.expr}:${spec.inputs.join(",")}>${spec.output}:${
    contiguous ? "c" : "s"
  }`;
  const kernel = gpu.kernel(key, () => ({
    name: `${spec.name}[${spec.inputs.join(",")}→${spec.output}${contiguous ? "" : ",strided"}]`,
    code: source(spec, contiguous),
    storage: [...spec.inputs.map(() => "read" as const), "read_write"],
    uniform: true,
  }));
  const params = new Params().u32(n).u32(shape.length).f32(scalars[0]).f32(scalars[1]).u32s(shape, 8);
  for (let k = 0; k < 3; k++) params.u32s(inputs[k]?.strides ?? [], 8);
  params.u32s(bases, 4);
  const invocations = spec.output === "u8" ? Math.ceil(n / 4) : n; // u8: one invocation per output word
  gpu.dispatch(
    kernel,
    [...inputs.map((inp) => inp.binding), out],
    params,
    Math.ceil(invocations / ELEMENTWISE_WORKGROUP),
  );
}

/**
 * Tensors above one binding: coalesce the axes every operand walks alike, pick the outermost axis whose
 * slices fit one binding, and let the launch planner split runs along it into windows (one run per index
 * of the axes before it). Broadcast operands (stride 0) bind only the part a window reads.
 */
function runSplit(
  gpu: Gpu,
  spec: ElementwiseSpec,
  inputs: readonly ElementwiseInput[],
  out: BufferRange,
  shape: readonly number[],
  scalars: readonly [number, number],
): void {
  const ranges = [...inputs.map((inp) => inp.binding), out];
  const bytes = [...spec.inputs, spec.output].map((t) => ELEMENT_BYTES[t]);
  const axes = coalesce(shape, [...inputs.map((inp) => inp.strides), contiguousStrides(shape)]);
  const limit = gpu.limits.maxStorageBufferBindingSize;
  const extent = (a: number, k: number) =>
    1 + axes.slice(a + 1).reduce((e, x) => e + (x.size - 1) * x.strides[k], 0);
  let axis = 0;
  while (
    axis < axes.length - 1 &&
    ranges.some((_, k) => extent(axis, k) * bytes[k] > spanLimitBytes(gpu.limits, bytes[k]))
  ) axis++;
  const inner = axes.slice(axis + 1).reduce((p, x) => p * x.size, 1);
  const prefixes = axes.slice(0, axis).reduce((p, x) => p * x.size, 1);
  // u8 output is written a whole u32 word per invocation: windows start and end on words
  const granule = spec.output === "u8" ? 4 / gcd(inner, 4) : 1;
  if (spec.output === "u8" && prefixes > 1 && (axes[axis].size * inner) % 4 !== 0) {
    throw new RangeError(
      `${spec.name}: a u8 output of [${shape}] above the ${limit}-byte binding limit needs rows of a multiple ` +
        `of 4 elements`,
    );
  }
  const windowShape = (items: number) => [items, ...axes.slice(axis + 1).map((x) => x.size)];
  for (let p = 0; p < prefixes; p++) {
    // element offset of this run in every operand
    let rem = p;
    const offsets = ranges.map(() => 0);
    for (let d = axis - 1; d >= 0; d--) {
      const idx = rem % axes[d].size;
      rem = Math.floor(rem / axes[d].size);
      ranges.forEach((_, k) => offsets[k] += idx * axes[d].strides[k]);
    }
    const operands = ranges.map((r, k) => {
      const stride = axes[axis].strides[k];
      const span = (axes[axis].size - 1) * stride + extent(axis, k);
      return {
        range: { ...r, offset: (r.offset ?? 0) + offsets[k] * bytes[k], size: span * bytes[k] },
        elementBytes: bytes[k],
        itemStride: stride,
        itemExtent: extent(axis, k),
      };
    });
    const windows = planWindows(gpu.limits, operands, axes[axis].size, { granule, label: spec.name });
    for (const w of windows) {
      const wShape = windowShape(w.items);
      const chunkInputs = inputs.map((_, k) => ({
        binding: w.ranges[k],
        strides: axes.slice(axis).map((x) => x.strides[k]),
      }));
      const n = wShape.reduce((x, y) => x * y, 1);
      // the kernel reads input k's base from slot k and the output's from slot 3
      const bases = [0, 1, 2].map((k) => k < inputs.length ? w.bases[k] : 0).concat(w.bases[inputs.length]);
      dispatchElementwise(gpu, spec, chunkInputs, w.ranges[inputs.length], wShape, scalars, n, bases);
    }
  }
}

/** One axis after coalescing: its size and every operand's stride along it. */
interface Axis {
  size: number;
  strides: number[];
}

/**
 * Drops size-1 axes and merges neighbours every operand walks contiguously (stride of the outer one =
 * stride × size of the inner one), so a same-shape op becomes one axis and the split has most freedom.
 */
function coalesce(shape: readonly number[], strides: readonly (readonly number[])[]): Axis[] {
  const axes: Axis[] = [];
  shape.forEach((size, d) => {
    if (size !== 1) axes.push({ size, strides: strides.map((s) => s[d]) });
  });
  for (let d = axes.length - 2; d >= 0; d--) {
    const outer = axes[d];
    const innerAxis = axes[d + 1];
    if (outer.strides.every((s, k) => s === innerAxis.strides[k] * innerAxis.size)) {
      axes.splice(d, 2, { size: outer.size * innerAxis.size, strides: innerAxis.strides });
    }
  }
  return axes.length > 0 ? axes : [{ size: 1, strides: strides.map(() => 0) }];
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

function contiguousStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

const accumulateSource = /* wgsl */ `
struct P { n: u32, alpha: f32 }
@group(0) @binding(0) var<storage, read> src: array<{{T}}>;
@group(0) @binding(1) var<storage, read_write> dst: array<{{T}}>;
@group(1) @binding(0) var<uniform> p: P;
${LINEAR_INDEX}
@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = linear_workgroup(wid, nwg) * {{WG}}u + lid;
  if (i < p.n) { dst[i] = {{T}}(f32(dst[i]) + p.alpha * f32(src[i])); }
}`;

/**
 * Records `target += alpha · src` in place over `n` elements (gradient accumulation). A separate kernel
 * because WebGPU forbids binding one buffer both read-only and writable in a dispatch.
 */
export function runAccumulate(
  gpu: Gpu,
  type: "f32" | "f16",
  target: BufferRange,
  src: BufferRange,
  n: number,
  alpha = 1,
): void {
  if (n === 0) return;
  const kernel = gpu.kernel(`accumulate:${type}`, () => ({
    name: `accumulate[${type}]`,
    code: specialize(accumulateSource, { T: type, WG: ELEMENTWISE_WORKGROUP }),
    storage: ["read", "read_write"],
    uniform: true,
  }));
  gpu.dispatch(kernel, [src, target], new Params().u32(n).f32(alpha), Math.ceil(n / ELEMENTWISE_WORKGROUP));
}
