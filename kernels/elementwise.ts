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
 */
import type { BufferRange, Gpu } from "../core/gpu/mod.ts";
import { Params } from "../core/gpu/mod.ts";
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
    spec.inputs.map((t, k) => indent + load(t, k, contiguous ? "i" : `offset_of(i, ${k}u)`, indent))
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
  out[w] = word;`
    : /* wgsl */ `
  let i = linear_workgroup(wid, nwg) * {{WG}}u + lid;
  if (i >= p.n) { return; }
  let s0 = p.s0;
  let s1 = p.s1;
${loads("  ")}
  out[i] = {{TO}}({{EXPR}});`;
  return specialize(
    /* wgsl */ `
struct P { n: u32, rank: u32, s0: f32, s1: f32, shape: array<vec4<u32>, 2>, strides: array<vec4<u32>, 6> }
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
    runChunked(gpu, spec, inputs, out, shape, scalars, n, limit);
    return;
  }
  dispatchElementwise(gpu, spec, inputs, out, shape, scalars, n);
}

function dispatchElementwise(
  gpu: Gpu,
  spec: ElementwiseSpec,
  inputs: readonly ElementwiseInput[],
  out: BufferRange,
  shape: readonly number[],
  scalars: readonly [number, number],
  n: number,
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
  const invocations = spec.output === "u8" ? Math.ceil(n / 4) : n; // u8: one invocation per output word
  gpu.dispatch(
    kernel,
    [...inputs.map((inp) => inp.binding), out],
    params,
    Math.ceil(invocations / ELEMENTWISE_WORKGROUP),
  );
}

/**
 * Tensors above one binding: walk the flat index range in chunks, binding aligned sub-ranges of the
 * output and of every same-shape input; single-element (broadcast scalar) inputs stay bound whole.
 * Other broadcast patterns over such tensors are refused with a clear error.
 */
function runChunked(
  gpu: Gpu,
  spec: ElementwiseSpec,
  inputs: readonly ElementwiseInput[],
  out: BufferRange,
  shape: readonly number[],
  scalars: readonly [number, number],
  n: number,
  limit: number,
): void {
  const dense = contiguousStrides(shape);
  const kinds = inputs.map((inp) =>
    inp.strides.every((s, d) => s === dense[d] || shape[d] === 1)
      ? "dense"
      : inp.strides.every((s) => s === 0)
      ? "scalar"
      : "other"
  );
  if (kinds.includes("other")) {
    throw new RangeError(
      `${spec.name}: tensors of [${shape}] exceed the ${limit}-byte binding limit; above it, elementwise ops ` +
        `take same-shape or single-element operands only (expand() the operand first)`,
    );
  }
  const types = [...spec.inputs, spec.output];
  const widest = Math.max(...types.map((t) => ELEMENT_BYTES[t]));
  // 256 elements keep offsets aligned (u8: every chunk starts on a word, at a 256-byte multiple)
  const chunk = Math.floor(limit / widest / 256) * 256;
  for (let start = 0; start < n; start += chunk) {
    const len = Math.min(chunk, n - start);
    const sub = (r: BufferRange, bytes: number): BufferRange => ({
      buffer: r.buffer,
      offset: (r.offset ?? 0) + start * bytes,
      size: Math.max(16, len * bytes),
    });
    const chunkInputs = inputs.map((inp, k) =>
      kinds[k] === "dense"
        ? { binding: sub(inp.binding, ELEMENT_BYTES[spec.inputs[k]]), strides: [1] }
        : { binding: inp.binding, strides: [0] }
    );
    dispatchElementwise(gpu, spec, chunkInputs, sub(out, ELEMENT_BYTES[spec.output]), [len], scalars, len);
  }
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
