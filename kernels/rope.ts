/**
 * Rotary position embedding on interleaved pairs with a concatenated [sin | cos] table (timm's
 * `apply_rot_embed_cat`, the layout of EVA / Primus; see core/tensor/ops/rope.ts for the table).
 *
 * Layout: x and out [heads, L, Dh] contiguous (heads = batch·heads); table [Lt, 2R] f32 (or [B, Lt, 2R]
 * with one table per batch element, `headsPerBatch` heads each): row t holds sin(θ_t,c) for c < R, then
 * cos(θ_t,c). Channels c ≥ R and the first L − Lt tokens (prefix tokens) pass through unchanged.
 * Forward: y_c = x_c·cos_c + s_c·x_{c^1}·sin_c with s_c = −1 for even c, +1 for odd c (pairs (2i, 2i+1)
 * rotate). Inverse (the backward): dx_c = g_c·cos_c − s_c·g_{c^1}·sin_{c^1}, the transpose of the
 * forward map for any table. One invocation per element (256 per workgroup, linear grid); f16 storage is
 * widened to f32. Bindings above the device limit are split over heads (head_chunks.ts).
 */
import { type BufferRange, type Gpu, Params } from "../core/gpu/mod.ts";
import { headChunks } from "./head_chunks.ts";
import { LINEAR_INDEX, specialize } from "./wgsl.ts";

/** Shape of one rotary application. */
export interface RopeShape {
  /** batch·heads. */
  heads: number;
  /** Tokens per head. */
  length: number;
  headDim: number;
  /** Rotated channels (even, ≤ headDim). */
  rotaryDim: number;
  /** Rows of the table (≤ length; the first length − tableLength tokens pass through). */
  tableLength: number;
  /** Heads per table when the table has a batch dimension; 0 when one table serves every head. */
  headsPerBatch: number;
  /** Apply the transpose (backward) instead of the rotation. */
  inverse: boolean;
}

const WG = 256;

const SOURCE = /* wgsl */ `
struct P { n: u32, l: u32, dh: u32, r: u32, lt: u32, per_batch: u32, inverse: u32, head0: u32,
           x_off: u32, o_off: u32 }
@group(0) @binding(0) var<storage, read> x: array<{{T}}>;
@group(0) @binding(1) var<storage, read> table: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<{{T}}>;
@group(1) @binding(0) var<uniform> p: P;
${LINEAR_INDEX}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = linear_workgroup(wid, nwg) * ${WG}u + lid;
  if (i >= p.n) { return; }
  let c = i % p.dh;
  let tok = (i / p.dh) % p.l;
  let head = p.head0 + i / (p.dh * p.l);
  let xc = f32(x[p.x_off + i]);
  let prefix = p.l - p.lt;
  if (c >= p.r || tok < prefix) {
    out[p.o_off + i] = {{T}}(xc);
    return;
  }
  var row = tok - prefix;
  if (p.per_batch != 0u) { row += (head / p.per_batch) * p.lt; }
  let base = row * 2u * p.r;
  let partner = c ^ 1u;
  let xp = f32(x[p.x_off + i - c + partner]);
  let even = (c & 1u) == 0u;
  var y: f32;
  if (p.inverse == 0u) {
    y = xc * table[base + p.r + c] + select(1.0, -1.0, even) * xp * table[base + c];
  } else {
    y = xc * table[base + p.r + c] + select(-1.0, 1.0, even) * xp * table[base + partner];
  }
  out[p.o_off + i] = {{T}}(y);
}`;

/** Records out = rope(x) (or its transpose) for every head. */
export function runRope(
  gpu: Gpu,
  type: "f32" | "f16",
  x: BufferRange,
  table: BufferRange,
  out: BufferRange,
  s: RopeShape,
): void {
  if (s.heads * s.length * s.headDim === 0) return;
  if (s.rotaryDim % 2 !== 0 || s.rotaryDim > s.headDim || s.tableLength > s.length) {
    throw new RangeError(`rope: bad shape ${JSON.stringify(s)}`);
  }
  const kernel = gpu.kernel(`rope:${type}`, () => ({
    name: `rope[${type}]`,
    code: specialize(SOURCE, { T: type }),
    storage: ["read", "read", "read_write"],
    uniform: true,
  }));
  const perHead = s.length * s.headDim;
  const bytes = type === "f16" ? 2 : 4;
  const chunks = headChunks(gpu, [
    { range: x, perHead, elementBytes: bytes },
    { range: out, perHead, elementBytes: bytes },
  ], s.heads);
  for (const c of chunks) {
    const n = c.heads * perHead;
    const params = new Params().u32(n).u32(s.length).u32(s.headDim).u32(s.rotaryDim).u32(s.tableLength)
      .u32(s.headsPerBatch).u32(s.inverse ? 1 : 0).u32(c.head0).u32(c.offsets[0]).u32(c.offsets[1]);
    gpu.dispatch(kernel, [c.ranges[0], table, c.ranges[1]], params, Math.ceil(n / WG));
  }
}
