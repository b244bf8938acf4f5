/**
 * Per-channel sums of an NCDHW tensor, out[c] = Σ_{n, s} g[n, c, s]: the bias gradient of conv3d and
 * ConvTranspose3d.
 *
 * Layout: g viewed as N·C planes of S = D·H·W contiguous elements. Pass 1: one workgroup of 256 per
 * (plane, segment of the plane); each invocation sums a strided part of the segment, a tree in
 * workgroup memory combines them, the result goes to partial[plane, segment]. Segments (≤ 4096 elements
 * by default) keep every GPU core busy for a batch of 2. Pass 2: one invocation per channel adds its
 * N·segments partials in order.
 *
 * Types: g and out are f32 or f16 (f16 needs shader-f16); sums and partials are f32, rounded to the
 * output type once.
 *
 * Limits: each dispatch of pass 1 binds the launch planner's window over the longest run of whole planes
 * that fits (`planRuns`), or of segments of one plane when a plane exceeds maxStorageBufferBindingSize; the
 * partials (N·C·segments floats) must fit one binding.
 */
import { type BufferRange, type Gpu, Params } from "../core/gpu/mod.ts";
import {
  checkAlignedRanges,
  checkConvType,
  CONV_BYTES,
  type ConvType,
  enableF16,
  narrow,
  scratch,
  typeKey,
  widen,
} from "./conv3d_gemm.ts";
import { planRuns, spanLimitBytes, windowOf, windowsFit } from "./launch_plan.ts";
import { ELEMENTWISE_WORKGROUP, LINEAR_INDEX } from "./wgsl.ts";

const WG = 256;
const SEGMENT = 4096;

const pass1Source = (type: ConvType) =>
  /* wgsl */ `${enableF16(type)}
struct P { plane0: u32, seg0: u32, segs_here: u32, segs: u32, seg_len: u32, s: u32, base: u32, groups: u32 }
@group(0) @binding(0) var<storage, read> g: array<${type}>;
@group(0) @binding(1) var<storage, read_write> part: array<f32>;
@group(1) @binding(0) var<uniform> p: P;
var<workgroup> acc: array<f32, ${WG}>;
${LINEAR_INDEX}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let w = linear_workgroup(wid, nwg);
  if (w >= p.groups) { return; }
  let plane = p.plane0 + w / p.segs_here;
  let seg = p.seg0 + w % p.segs_here;
  let start = seg * p.seg_len;
  let end = min(p.s, start + p.seg_len);
  var s = 0.0;
  for (var i = start + lid; i < end; i += ${WG}u) { s += ${
    widen(type, "g[plane * p.s + i - p.base]", false)
  }; }
  acc[lid] = s;
  workgroupBarrier();
  for (var width = ${WG / 2}u; width > 0u; width /= 2u) {
    if (lid < width) { acc[lid] += acc[lid + width]; }
    workgroupBarrier();
  }
  if (lid == 0u) { part[plane * p.segs + seg] = acc[0]; }
}`;

const pass2Source = (type: ConvType) =>
  /* wgsl */ `${enableF16(type)}
struct P { batch: u32, channels: u32, segs: u32 }
@group(0) @binding(0) var<storage, read> part: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<${type}>;
@group(1) @binding(0) var<uniform> p: P;
${LINEAR_INDEX}
@compute @workgroup_size(${ELEMENTWISE_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let c = linear_workgroup(wid, nwg) * ${ELEMENTWISE_WORKGROUP}u + lid;
  if (c >= p.channels) { return; }
  var s = 0.0;
  for (var n = 0u; n < p.batch; n++) {
    let row = (n * p.channels + c) * p.segs;
    for (var k = 0u; k < p.segs; k++) { s += part[row + k]; }
  }
  out[c] = ${narrow(type, "s", false)};
}`;

/** Sizes of a channel sum: g is [batch, channels, spatial]. */
export interface Conv3dBiasGradShape {
  batch: number;
  channels: number;
  spatial: number;
}

/**
 * Records out[c] = Σ over batch and space of g[n, c, ·] (`out` holds `channels` elements, overwritten).
 * `type` is the storage type of g and out; the sums are f32.
 */
export function runConv3dBiasGrad(
  gpu: Gpu,
  g: BufferRange,
  out: BufferRange,
  shape: Conv3dBiasGradShape,
  type: ConvType = "f32",
): void {
  checkConvType(gpu, "conv3d bias gradient", type);
  checkAlignedRanges(gpu, "conv3d bias gradient", { g, out });
  const { batch, channels, spatial } = shape;
  if (channels === 0) return;
  const limit = Math.floor(spanLimitBytes(gpu.limits, 4) / 4);
  const tb = CONV_BYTES[type];
  const gLimit = Math.floor(spanLimitBytes(gpu.limits, tb) / tb); // elements of g per window
  const planes = batch * channels;
  const maxSegs = Math.floor(limit / Math.max(1, planes));
  const segs = Math.max(1, Math.ceil(spatial / SEGMENT), Math.ceil(spatial / gLimit));
  if (segs > maxSegs || channels > limit) {
    throw new RangeError(
      `channel sum of [${batch}, ${channels}, ${spatial}]: the partial sums do not fit this device's binding limit`,
    );
  }
  const segLen = Math.max(1, Math.ceil(spatial / segs));
  const part = scratch(gpu, planes * segs);
  const types = typeKey(type, type);
  const pass1 = gpu.kernel(`conv3d_channel_sum_pass1${types}`, () => ({
    name: `channel_sum_pass1${types ? `[${type}]` : ""}`,
    code: pass1Source(type),
    storage: ["read", "read_write"],
    uniform: true,
  }));
  const dispatch = (plane0: number, plane1: number, seg0: number, seg1: number) => {
    const win = windowOf(
      gpu.limits,
      g,
      tb,
      plane0 * spatial + seg0 * segLen,
      (plane1 - 1) * spatial + Math.min(spatial, seg1 * segLen),
    );
    const groups = (plane1 - plane0) * (seg1 - seg0);
    const params = new Params().u32(plane0).u32(seg0).u32(seg1 - seg0).u32(segs).u32(segLen).u32(spatial)
      .u32(win.first).u32(groups);
    gpu.dispatch(pass1, [win.binding, part], params, groups);
  };
  // runs of whole planes when a plane fits a binding, else runs of one plane's segments (the planner's
  // longest fitting runs of the dispatch's window)
  const fits = (lo: number, hi: number) => windowsFit(gpu.limits, [[g, tb, lo, hi]]);
  const label = "conv3d bias gradient";
  if (planes > 0 && spatial > 0) {
    if (spatial <= gLimit) {
      for (const [p0, p1] of planRuns(planes, (a, b) => fits(a * spatial, b * spatial), label)) {
        dispatch(p0, p1, 0, segs);
      }
    } else {
      for (let plane = 0; plane < planes; plane++) {
        const at = (s: number) => plane * spatial + Math.min(spatial, s * segLen);
        for (const [s0, s1] of planRuns(segs, (a, b) => fits(at(a), at(b)), label)) {
          dispatch(plane, plane + 1, s0, s1);
        }
      }
    }
  }
  const pass2 = gpu.kernel(`conv3d_channel_sum_pass2${types}`, () => ({
    name: `channel_sum_pass2${types ? `[${type}]` : ""}`,
    code: pass2Source(type),
    storage: ["read", "read_write"],
    uniform: true,
  }));
  const outWin = windowOf(gpu.limits, out, tb, 0, channels);
  const params = new Params().u32(spatial > 0 ? batch : 0).u32(channels).u32(segs);
  gpu.dispatch(pass2, [part, outWin.binding], params, Math.ceil(channels / ELEMENTWISE_WORKGROUP));
  gpu.pool.release(part.buffer);
}
