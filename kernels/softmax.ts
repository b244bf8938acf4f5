/**
 * Softmax and log-softmax along the last axis of a contiguous [rows, r] tensor.
 *
 * One workgroup of 256 per row, three sweeps over the row: max (tree in workgroup memory), sum of
 * exp(x − max) (Kahan per invocation, then a tree), and the write. Rows of any length; values are
 * read in f32 (f16 storage widened) and written in the output type. Above `maxStorageBufferBindingSize`,
 * windows of whole rows from the launch planner (one row must fit a binding).
 */
import { type BufferRange, type Gpu, Params } from "../core/gpu/mod.ts";
import { planWindows } from "./launch_plan.ts";
import { ELEMENT_BYTES, type ElementType, LINEAR_INDEX, specialize } from "./wgsl.ts";

const WG = 256;

const source = /* wgsl */ `
struct P { rows: u32, r: u32, src_base: u32, out_base: u32 }
@group(0) @binding(0) var<storage, read> src: array<{{T}}>;
@group(0) @binding(1) var<storage, read_write> out: array<{{T}}>;
@group(1) @binding(0) var<uniform> p: P;
var<workgroup> part: array<f32, {{WG}}>;
${LINEAR_INDEX}
fn tree_max(lid: u32) -> f32 {
  workgroupBarrier();
  for (var stride = {{WG}}u / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) { part[lid] = max(part[lid], part[lid + stride]); }
    workgroupBarrier();
  }
  let result = part[0];
  workgroupBarrier();
  return result;
}
fn tree_sum(lid: u32) -> f32 {
  workgroupBarrier();
  for (var stride = {{WG}}u / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) { part[lid] = part[lid] + part[lid + stride]; }
    workgroupBarrier();
  }
  let result = part[0];
  workgroupBarrier();
  return result;
}
@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let row = linear_workgroup(wid, nwg);
  if (row >= p.rows) { return; }
  let sb = p.src_base + row * p.r;
  let ob = p.out_base + row * p.r;
  var m = bitcast<f32>(0xff800000u);
  for (var i = lid; i < p.r; i += {{WG}}u) { m = max(m, f32(src[sb + i])); }
  part[lid] = m;
  m = tree_max(lid);
  var s = 0.0;
  var comp = 0.0;
  for (var i = lid; i < p.r; i += {{WG}}u) {
    let y = exp(f32(src[sb + i]) - m) - comp;
    let t = s + y;
    comp = (t - s) - y;
    s = t;
  }
  part[lid] = s;
  s = tree_sum(lid);
  {{WRITE}}
}`;

const WRITE = {
  softmax: `let inv = 1.0 / s;
  for (var i = lid; i < p.r; i += {{WG}}u) { out[ob + i] = {{T}}(exp(f32(src[sb + i]) - m) * inv); }`,
  logSoftmax: `let lse = m + log(s);
  for (var i = lid; i < p.r; i += {{WG}}u) { out[ob + i] = {{T}}(f32(src[sb + i]) - lse); }`,
};

/** Records softmax (or log-softmax) of each row of a contiguous [rows, r] tensor. */
export function runSoftmax(
  gpu: Gpu,
  kind: "softmax" | "logSoftmax",
  type: ElementType,
  src: BufferRange,
  out: BufferRange,
  rows: number,
  r: number,
): void {
  if (rows * r === 0) return;
  const kernel = gpu.kernel(`${kind}:${type}`, () => ({
    name: `${kind}[${type}]`,
    code: specialize(source.replace("{{WRITE}}", WRITE[kind]), { T: type, WG }),
    storage: ["read", "read_write"],
    uniform: true,
  }));
  const rowsOf = (range: BufferRange) => ({
    range,
    elementBytes: ELEMENT_BYTES[type],
    itemStride: r,
    itemExtent: r,
  });
  for (const w of planWindows(gpu.limits, [rowsOf(src), rowsOf(out)], rows, { label: kind })) {
    gpu.dispatch(kernel, w.ranges, new Params().u32(w.items).u32(r).u32(w.bases[0]).u32(w.bases[1]), w.items);
  }
}
