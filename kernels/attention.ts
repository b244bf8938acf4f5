/**
 * Fused scaled-dot-product attention (FlashAttention-2 style): forward with online softmax and
 * log-sum-exp, backward with recomputation. The Lq×Lk score matrix never exists in memory.
 *
 * Layout: q [heads, Lq, Dh], k and v [heads, Lk, Dh], out [heads, Lq, Dh] (heads = batch·heads, each
 * head contiguous), lse [heads, Lq] in f32. Storage f32 or f16 (widened on load); all arithmetic and
 * accumulation in f32. Causal masking is top-left aligned like PyTorch's `is_causal`: query i sees keys
 * j ≤ i.
 *
 * Work split: one workgroup per (head, block of `rows` rows). A row is a query (forward, dQ) or a key
 * (dK/dV). Each row is owned by `lanes` invocations of one subgroup; the head dimension, padded to vec4
 * slots (`rowSlots` = lanes·slots), is dealt out lane-interleaved (lane l holds slots l, l+lanes, ...), so
 * an invocation keeps `slots` vec4 of its row's vectors and accumulators in registers. Partial dot
 * products are summed over the row's lanes with a subgroupShuffleXor butterfly. Without subgroups
 * `lanes` is 1 and an invocation owns whole rows (no cross-invocation reduction at all).
 * Rows are assigned per subgroup through a workgroup atomic (a subgroup takes the next index and owns
 * rows index·(subgroup_size/lanes) + subgroup_invocation_id/lanes), so nothing assumes how
 * local_invocation_index maps onto subgroups. Should a subgroup be smaller than `lanes` (the launcher
 * avoids this when the adapter reports its sizes) the results are NaN, never silently wrong.
 *
 * Tiles: the other side (keys and values for forward and dQ; queries and dO for dK/dV) advances in tiles
 * of `tile` rows staged in workgroup memory as vec4<f32>: 2·tile·rowSlots·16 bytes. `tile` is the largest
 * of 32, 16, 8, ... that fits `maxComputeWorkgroupStorageSize` (32 KiB on lavapipe: tile 32 up to Dh 124,
 * 16 for Dh 128 in f32; 48 KiB GPUs: 32 up to Dh 188). Every staged value is read by all `rows` rows of
 * the workgroup, so global traffic per FMA falls with `rows` (64; 32 when lanes = 8).
 *
 * Forward: per key tile, scores s_j = (q·k_j)·scale·log2(e) for the tile (register array of `tile`
 * floats), one rescale of the accumulator by exp2(m_old − m_new), then acc += exp2(s_j − m)·v_j. Masked
 * scores are −1e30 (finite, so fast-math cannot produce NaN; key 0 is never masked, which makes the first
 * tile's maximum real). Writes out = acc / l and lse = (m + log2 l)·ln 2 (natural log of Σ exp(scale·q·k)).
 * Backward (three dispatches' worth of work in two, no float atomics):
 *   dQ kernel: per query row, D = dO·O (written out for the next kernel), then over key tiles
 *     p = exp2(s − lse·log2 e), ds = p·(dO·v − D), dQ += ds·k; dQ ·= scale.
 *   dK/dV kernel: per key row, over query tiles (starting at the key block when causal), the same p and
 *     ds with staged lse and D; dV += p·dO, dK += ds·q; dK ·= scale.
 * The backward recomputes q·k and dO·v in both kernels: 7 Lq·Lk·Dh multiply-adds against the 5 of the
 * algorithm (FLOP counts in {@link attentionFlops} use the algorithm's 5).
 *
 * Grid: heads·⌈L/rows⌉ workgroups, linear (split over x/y/z past 65,535). Bindings larger than the device
 * allows are split over heads (head_chunks.ts). Limits: ≤ 8 storage bindings per kernel.
 */
import { type BufferRange, type Gpu, Params } from "../core/gpu/mod.ts";
import { headChunks } from "./head_chunks.ts";
import { LINEAR_INDEX, specialize } from "./wgsl.ts";

/** Storage type of attention operands. */
export type AttentionType = "f32" | "f16";

/** How one head dimension is laid over invocations and tiles (see the file header). */
export interface AttentionTiling {
  headDim: number;
  /** Invocations per row (1 without subgroups). */
  lanes: number;
  /** vec4 slots per invocation. */
  slots: number;
  /** vec4 slots per row (lanes·slots ≥ ⌈headDim/4⌉, the excess zero-padded). */
  rowSlots: number;
  /** Rows per workgroup. */
  rows: number;
  /** Rows of the staged side per tile. */
  tile: number;
  /** Invocations per workgroup (rows·lanes). */
  workgroup: number;
  /** Whether the kernels use subgroup operations. */
  subgroups: boolean;
}

/** Options of the launchers. */
export interface AttentionKernelOptions {
  /** Use subgroup operations (default: when the device has them). */
  subgroups?: boolean;
}

/** Shape and parameters of one attention call. */
export interface AttentionShape {
  /** batch·heads. */
  heads: number;
  lq: number;
  lk: number;
  headDim: number;
  /** Multiplier of q·k (usually 1/√headDim). */
  scale: number;
  causal: boolean;
}

/** Picks lanes, rows and tile for a head dimension on this device. */
export function attentionTiling(
  gpu: Gpu,
  headDim: number,
  options: AttentionKernelOptions = {},
): AttentionTiling {
  if (!Number.isInteger(headDim) || headDim < 1) {
    throw new RangeError(`head dim must be >= 1, got ${headDim}`);
  }
  const subgroups = (options.subgroups ?? true) && gpu.hasSubgroups;
  const vec = Math.ceil(headDim / 4);
  let lanes = 1;
  if (subgroups) {
    // Only split a row across lanes that are surely in one subgroup; unknown sizes: assume ≥ 4.
    const minSize = gpu.limits.subgroupMinSize > 0 ? gpu.limits.subgroupMinSize : 4;
    const maxLanes = Math.min(8, minSize);
    while (lanes < maxLanes && Math.ceil(vec / lanes) > 6) lanes *= 2;
  }
  const slots = Math.ceil(vec / lanes);
  const rowSlots = lanes * slots;
  const workgroup = Math.min(256, gpu.limits.maxComputeInvocationsPerWorkgroup, 64 * lanes);
  const rows = workgroup / lanes;
  const budget = gpu.limits.maxComputeWorkgroupStorageSize - 64;
  let tile = 32;
  while (tile > 1 && tile * (2 * rowSlots * 16 + 8) > budget) tile /= 2;
  if (tile * (2 * rowSlots * 16 + 8) > budget) {
    throw new RangeError(`attention: head dim ${headDim} does not fit this device's workgroup memory`);
  }
  return { headDim, lanes, slots, rowSlots, rows, tile, workgroup, subgroups: subgroups && lanes > 1 };
}

type Kind = "forward" | "dq" | "dkdv";

const STORAGE: Record<Kind, ("read" | "read_write")[]> = {
  forward: ["read", "read", "read", "read_write", "read_write"],
  dq: ["read", "read", "read", "read", "read", "read", "read_write", "read_write"],
  dkdv: ["read", "read", "read", "read", "read", "read", "read_write", "read_write"],
};

function source(kind: Kind, type: AttentionType, t: AttentionTiling): string {
  const { headDim: DH, lanes: T, slots: NV, rowSlots: SP, rows: BR, tile: BC, workgroup: WG } = t;
  const slot = `lane + v * ${T}u`;
  const forSlots = (body: string) => `for (var v = 0u; v < ${NV}u; v++) { ${body} }`;
  // the invocation's slots of one row of `buf` starting at element `base` (zeros when !valid or padding)
  const loadRow = (target: string, buf: string, base: string, valid: string) => `
  var ${target}: array<vec4<f32>, ${NV}>;
  for (var v = 0u; v < ${NV}u; v++) {
    let d = (${slot}) * 4u;
    var x = vec4<f32>(0.0);
    if (${valid}) {
      for (var c = 0u; c < 4u; c++) { if (d + c < ${DH}u) { x[c] = f32(${buf}[${base} + d + c]); } }
    }
    ${target}[v] = x;
  }`;
  // rows first..first+BC−1 of `buf` (head base `base`) into a workgroup tile, zeros past `limit`
  const loadTile = (tileName: string, buf: string, base: string, first: string, limit: string) => `
    for (var e = lid; e < ${BC * SP}u; e += ${WG}u) {
      let r = ${first} + e / ${SP}u;
      let d = (e % ${SP}u) * 4u;
      var x = vec4<f32>(0.0);
      if (r < ${limit}) {
        for (var c = 0u; c < 4u; c++) { if (d + c < ${DH}u) { x[c] = f32(${buf}[${base} + r * ${DH}u + d + c]); } }
      }
      ${tileName}[e] = x;
    }`;
  const storeRow = (buf: string, base: string, src: string, factor: string, valid: string) => `
  if (${valid}) {
    for (var v = 0u; v < ${NV}u; v++) {
      let d = (${slot}) * 4u;
      let x = ${src}[v] * ${factor};
      for (var c = 0u; c < 4u; c++) { if (d + c < ${DH}u) { ${buf}[${base} + d + c] = {{T}}(x[c]); } }
    }
  }`;
  let butterfly = "";
  for (let mask = 1; mask < T; mask *= 2) butterfly += `y += subgroupShuffleXor(y, ${mask}u); `;
  const sgArgs = t.subgroups
    ? `, @builtin(subgroup_invocation_id) sid: u32, @builtin(subgroup_size) ssz: u32`
    : "";
  const sgDecl = t.subgroups ? `var<workgroup> sg_next: atomic<u32>;` : "";
  const rowMapping = t.subgroups
    ? `
  if (lid == 0u) { atomicStore(&sg_next, 0u); }
  workgroupBarrier();
  var sg_index = 0u;
  if (sid == 0u) { sg_index = atomicAdd(&sg_next, 1u); }
  sg_index = subgroupBroadcast(sg_index, 0u);
  let lane = sid % ${T}u;
  let rloc = sg_index * (ssz / ${T}u) + sid / ${T}u;
  let poison = select(bitcast<f32>(0x7fc00000u), 1.0, ssz >= ${T}u);`
    : `
  let lane = 0u;
  let rloc = lid;
  let poison = 1.0;`;

  const prelude = `
struct P {
  lq: u32, lk: u32, heads: u32, blocks: u32, scale: f32, scale2: f32, causal: u32, pad: u32,
  o0: u32, o1: u32, o2: u32, o3: u32, o4: u32, o5: u32, o6: u32, o7: u32,
}
@group(1) @binding(0) var<uniform> p: P;
const NEG: f32 = -1.0e30;
const LOG2E: f32 = 1.4426950408889634;
const LN2: f32 = 0.6931471805599453;
${sgDecl}
${LINEAR_INDEX}
fn lanes_sum(x: f32) -> f32 { var y = x; ${butterfly}return y; }
fn lanes_sum2(x: vec2<f32>) -> vec2<f32> { var y = x; ${butterfly}return y; }
`;
  const entry = `
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32${sgArgs}) {
  let wg = linear_workgroup(wid, nwg);
  if (wg >= p.heads * p.blocks) { return; }
  let head = wg / p.blocks;
  let block = wg % p.blocks;
  ${rowMapping}
  let row = block * ${BR}u + rloc;`;
  const tiles = `
var<workgroup> ta: array<vec4<f32>, ${BC * SP}>;
var<workgroup> tb: array<vec4<f32>, ${BC * SP}>;`;

  if (kind === "forward") {
    return specialize(
      /* wgsl */ `
@group(0) @binding(0) var<storage, read> q: array<{{T}}>;
@group(0) @binding(1) var<storage, read> k: array<{{T}}>;
@group(0) @binding(2) var<storage, read> vv: array<{{T}}>;
@group(0) @binding(3) var<storage, read_write> out: array<{{T}}>;
@group(0) @binding(4) var<storage, read_write> lse: array<f32>;
${prelude}${tiles}
${entry}
  let valid = row < p.lq;
  let k_base = p.o1 + head * p.lk * ${DH}u;
  let v_base = p.o2 + head * p.lk * ${DH}u;
  ${loadRow("qr", "q", `p.o0 + (head * p.lq + row) * ${DH}u`, "valid")}
  ${forSlots("qr[v] *= p.scale2;")}
  var acc: array<vec4<f32>, ${NV}>;
  ${forSlots("acc[v] = vec4<f32>(0.0);")}
  var m = NEG;
  var l = 0.0;
  var s: array<f32, ${BC}>;
  var k_end = p.lk;
  if (p.causal != 0u) { k_end = min(p.lk, (block + 1u) * ${BR}u); }
  for (var k0 = 0u; k0 < k_end; k0 += ${BC}u) {
    workgroupBarrier();
    ${loadTile("ta", "k", "k_base", "k0", "p.lk")}
    ${loadTile("tb", "vv", "v_base", "k0", "p.lk")}
    workgroupBarrier();
    var mb = NEG;
    for (var j = 0u; j < ${BC}u; j++) {
      var x = 0.0;
      ${forSlots(`x += dot(qr[v], ta[j * ${SP}u + ${slot}]);`)}
      x = lanes_sum(x);
      let key = k0 + j;
      if (key >= p.lk || (p.causal != 0u && key > row)) { x = NEG; }
      s[j] = x;
      mb = max(mb, x);
    }
    let mn = max(m, mb);
    let alpha = exp2(m - mn);
    l *= alpha;
    ${forSlots("acc[v] *= alpha;")}
    for (var j = 0u; j < ${BC}u; j++) {
      let pj = exp2(s[j] - mn);
      l += pj;
      ${forSlots(`acc[v] = fma(vec4<f32>(pj), tb[j * ${SP}u + ${slot}], acc[v]);`)}
    }
    m = mn;
  }
  ${storeRow("out", `p.o3 + (head * p.lq + row) * ${DH}u`, "acc", "(poison / l)", "valid")}
  if (valid && lane == 0u) { lse[p.o4 + head * p.lq + row] = (m + log2(l)) * LN2 * poison; }
}`,
      { T: type },
    );
  }

  if (kind === "dq") {
    return specialize(
      /* wgsl */ `
@group(0) @binding(0) var<storage, read> q: array<{{T}}>;
@group(0) @binding(1) var<storage, read> k: array<{{T}}>;
@group(0) @binding(2) var<storage, read> vv: array<{{T}}>;
@group(0) @binding(3) var<storage, read> o: array<{{T}}>;
@group(0) @binding(4) var<storage, read> g: array<{{T}}>;
@group(0) @binding(5) var<storage, read> lse: array<f32>;
@group(0) @binding(6) var<storage, read_write> dsum: array<f32>;
@group(0) @binding(7) var<storage, read_write> dq: array<{{T}}>;
${prelude}${tiles}
${entry}
  let valid = row < p.lq;
  let row_off = (head * p.lq + row) * ${DH}u;
  let k_base = p.o1 + head * p.lk * ${DH}u;
  let v_base = p.o2 + head * p.lk * ${DH}u;
  ${loadRow("qr", "q", "p.o0 + row_off", "valid")}
  ${loadRow("gr", "g", "p.o4 + row_off", "valid")}
  ${loadRow("orow", "o", "p.o3 + row_off", "valid")}
  var dpart = 0.0;
  ${forSlots("dpart += dot(gr[v], orow[v]);")}
  let dd = lanes_sum(dpart);
  var lse2 = 0.0;
  if (valid) {
    lse2 = lse[p.o5 + head * p.lq + row] * LOG2E;
    if (lane == 0u) { dsum[p.o6 + head * p.lq + row] = dd; }
  }
  var acc: array<vec4<f32>, ${NV}>;
  ${forSlots("acc[v] = vec4<f32>(0.0);")}
  var k_end = p.lk;
  if (p.causal != 0u) { k_end = min(p.lk, (block + 1u) * ${BR}u); }
  for (var k0 = 0u; k0 < k_end; k0 += ${BC}u) {
    workgroupBarrier();
    ${loadTile("ta", "k", "k_base", "k0", "p.lk")}
    ${loadTile("tb", "vv", "v_base", "k0", "p.lk")}
    workgroupBarrier();
    for (var j = 0u; j < ${BC}u; j++) {
      var x = vec2<f32>(0.0);
      ${
        forSlots(
          `x += vec2<f32>(dot(qr[v], ta[j * ${SP}u + ${slot}]), dot(gr[v], tb[j * ${SP}u + ${slot}]));`,
        )
      }
      x = lanes_sum2(x);
      let key = k0 + j;
      let masked = key >= p.lk || (p.causal != 0u && key > row);
      let pj = select(exp2(x.x * p.scale2 - lse2), 0.0, masked);
      let ds = pj * (x.y - dd);
      ${forSlots(`acc[v] = fma(vec4<f32>(ds), ta[j * ${SP}u + ${slot}], acc[v]);`)}
    }
  }
  ${storeRow("dq", "p.o7 + row_off", "acc", "(p.scale * poison)", "valid")}
}`,
      { T: type },
    );
  }

  return specialize(
    /* wgsl */ `
@group(0) @binding(0) var<storage, read> q: array<{{T}}>;
@group(0) @binding(1) var<storage, read> k: array<{{T}}>;
@group(0) @binding(2) var<storage, read> vv: array<{{T}}>;
@group(0) @binding(3) var<storage, read> g: array<{{T}}>;
@group(0) @binding(4) var<storage, read> lse: array<f32>;
@group(0) @binding(5) var<storage, read> dsum: array<f32>;
@group(0) @binding(6) var<storage, read_write> dk: array<{{T}}>;
@group(0) @binding(7) var<storage, read_write> dv: array<{{T}}>;
${prelude}${tiles}
var<workgroup> tl: array<f32, ${BC}>;
var<workgroup> td: array<f32, ${BC}>;
${entry}
  let valid = row < p.lk;
  let row_off = (head * p.lk + row) * ${DH}u;
  let q_base = p.o0 + head * p.lq * ${DH}u;
  let g_base = p.o3 + head * p.lq * ${DH}u;
  ${loadRow("kr", "k", "p.o1 + row_off", "valid")}
  ${loadRow("vr", "vv", "p.o2 + row_off", "valid")}
  var ak: array<vec4<f32>, ${NV}>;
  var av: array<vec4<f32>, ${NV}>;
  ${forSlots("ak[v] = vec4<f32>(0.0); av[v] = vec4<f32>(0.0);")}
  var q_start = 0u;
  if (p.causal != 0u) { q_start = block * ${BR}u; }
  for (var q0 = q_start; q0 < p.lq; q0 += ${BC}u) {
    workgroupBarrier();
    ${loadTile("ta", "q", "q_base", "q0", "p.lq")}
    ${loadTile("tb", "g", "g_base", "q0", "p.lq")}
    for (var e = lid; e < ${BC}u; e += ${WG}u) {
      let r = q0 + e;
      var a = 0.0;
      var b = 0.0;
      if (r < p.lq) { a = lse[p.o4 + head * p.lq + r] * LOG2E; b = dsum[p.o5 + head * p.lq + r]; }
      tl[e] = a;
      td[e] = b;
    }
    workgroupBarrier();
    for (var i = 0u; i < ${BC}u; i++) {
      var x = vec2<f32>(0.0);
      ${
      forSlots(`x += vec2<f32>(dot(kr[v], ta[i * ${SP}u + ${slot}]), dot(vr[v], tb[i * ${SP}u + ${slot}]));`)
    }
      x = lanes_sum2(x);
      let qi = q0 + i;
      let masked = qi >= p.lq || (p.causal != 0u && row > qi);
      let pj = select(exp2(x.x * p.scale2 - tl[i]), 0.0, masked);
      let ds = pj * (x.y - td[i]);
      ${
      forSlots(`av[v] = fma(vec4<f32>(pj), tb[i * ${SP}u + ${slot}], av[v]);
        ak[v] = fma(vec4<f32>(ds), ta[i * ${SP}u + ${slot}], ak[v]);`)
    }
    }
  }
  ${storeRow("dk", "p.o6 + row_off", "ak", "(p.scale * poison)", "valid")}
  ${storeRow("dv", "p.o7 + row_off", "av", "poison", "valid")}
}`,
    { T: type },
  );
}

function kernelFor(gpu: Gpu, kind: Kind, type: AttentionType, t: AttentionTiling) {
  const key = `attention:${kind}:${type}:${t.headDim}:${t.lanes}x${t.slots}:${t.rows}:${t.tile}:${+t
    .subgroups}`;
  return gpu.kernel(key, () => ({
    name: `attention-${kind}[${type},dh${t.headDim},${t.lanes}x${t.slots},r${t.rows},t${t.tile}${
      t.subgroups ? ",sg" : ""
    }]`,
    code: source(kind, type, t),
    storage: STORAGE[kind],
    uniform: true,
  }));
}

function dispatchChunks(
  gpu: Gpu,
  kind: Kind,
  type: AttentionType,
  s: AttentionShape,
  t: AttentionTiling,
  bindings: { range: BufferRange; perHead: number; f32?: boolean }[],
  rowsPerHead: number,
): void {
  const kernel = kernelFor(gpu, kind, type, t);
  const blocks = Math.ceil(rowsPerHead / t.rows);
  const bytes = type === "f16" ? 2 : 4;
  const chunks = headChunks(
    gpu,
    bindings.map((b) => ({ range: b.range, perHead: b.perHead, elementBytes: b.f32 ? 4 : bytes })),
    s.heads,
  );
  for (const c of chunks) {
    const params = new Params().u32(s.lq).u32(s.lk).u32(c.heads).u32(blocks)
      .f32(s.scale).f32(s.scale * Math.LOG2E).u32(s.causal ? 1 : 0).u32(0)
      .u32s(c.offsets, 8);
    gpu.dispatch(kernel, c.ranges, params, c.heads * blocks);
  }
}

function checkShape(s: AttentionShape): void {
  for (const [name, value] of Object.entries({ heads: s.heads, lq: s.lq, lk: s.lk, headDim: s.headDim })) {
    if (!Number.isInteger(value) || value < 0) throw new RangeError(`attention: bad ${name} ${value}`);
  }
  if (s.lq > 0 && s.lk === 0) throw new RangeError("attention: queries need at least one key");
}

/**
 * Records the forward pass: `out` [heads, lq, headDim] and `lse` [heads, lq] (f32, natural log of
 * Σ_j exp(scale·q·k_j)).
 */
export function runAttentionForward(
  gpu: Gpu,
  type: AttentionType,
  q: BufferRange,
  k: BufferRange,
  v: BufferRange,
  out: BufferRange,
  lse: BufferRange,
  s: AttentionShape,
  options: AttentionKernelOptions = {},
): void {
  checkShape(s);
  if (s.heads * s.lq === 0) return;
  const t = attentionTiling(gpu, s.headDim, options);
  const qd = s.lq * s.headDim;
  const kd = s.lk * s.headDim;
  dispatchChunks(gpu, "forward", type, s, t, [
    { range: q, perHead: qd },
    { range: k, perHead: kd },
    { range: v, perHead: kd },
    { range: out, perHead: qd },
    { range: lse, perHead: s.lq, f32: true },
  ], s.lq);
}

/** Buffers of the backward pass. `dsum` is f32 scratch of heads·lq elements (D = rowsum(dO·O)). */
export interface AttentionBackwardBuffers {
  q: BufferRange;
  k: BufferRange;
  v: BufferRange;
  out: BufferRange;
  gradOut: BufferRange;
  lse: BufferRange;
  dsum: BufferRange;
  dq: BufferRange;
  dk: BufferRange;
  dv: BufferRange;
}

/** Records the backward pass (two dispatches: dQ with D, then dK and dV). */
export function runAttentionBackward(
  gpu: Gpu,
  type: AttentionType,
  b: AttentionBackwardBuffers,
  s: AttentionShape,
  options: AttentionKernelOptions = {},
): void {
  checkShape(s);
  if (s.heads === 0 || s.lq === 0 && s.lk === 0) return;
  const t = attentionTiling(gpu, s.headDim, options);
  const qd = s.lq * s.headDim;
  const kd = s.lk * s.headDim;
  if (s.lq > 0) {
    dispatchChunks(gpu, "dq", type, s, t, [
      { range: b.q, perHead: qd },
      { range: b.k, perHead: kd },
      { range: b.v, perHead: kd },
      { range: b.out, perHead: qd },
      { range: b.gradOut, perHead: qd },
      { range: b.lse, perHead: s.lq, f32: true },
      { range: b.dsum, perHead: s.lq, f32: true },
      { range: b.dq, perHead: qd },
    ], s.lq);
  }
  if (s.lk > 0) {
    dispatchChunks(gpu, "dkdv", type, s, t, [
      { range: b.q, perHead: qd },
      { range: b.k, perHead: kd },
      { range: b.v, perHead: kd },
      { range: b.gradOut, perHead: qd },
      { range: b.lse, perHead: s.lq, f32: true },
      { range: b.dsum, perHead: s.lq, f32: true },
      { range: b.dk, perHead: kd },
      { range: b.dv, perHead: kd },
    ], s.lk);
  }
}

/**
 * FLOPs of attention by the algorithm's count (2 per multiply-add): forward 2 matmuls
 * (4·heads·Lq·Lk·Dh), backward 5 (10·heads·Lq·Lk·Dh); causal counts the unmasked pairs only.
 */
export function attentionFlops(s: AttentionShape, pass: "forward" | "backward"): number {
  let pairs = s.lq * s.lk;
  if (s.causal) {
    const n = Math.min(s.lq, s.lk);
    pairs = n * (n + 1) / 2 + Math.max(0, s.lq - s.lk) * s.lk;
  }
  return (pass === "forward" ? 4 : 10) * s.heads * pairs * s.headDim;
}
