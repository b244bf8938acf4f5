/**
 * Fused scaled-dot-product attention (FlashAttention-2 style): forward with online softmax and
 * log-sum-exp, backward with recomputation. The Lq×Lk score matrix never exists in memory.
 *
 * Layout: q [heads, Lq, Dh], k and v [heads, Lk, Dh], out [heads, Lq, Dh] (heads = batch·heads, each
 * head contiguous), lse [heads, Lq] in f32. Storage f32 or f16 (widened on load); all arithmetic and
 * accumulation in f32. Causal masking is top-left aligned like PyTorch's `is_causal`: query i sees keys
 * j ≤ i.
 *
 * Work split: one workgroup per (head, block of rows). A row is a query (forward, dQ) or a key (dK/dV).
 * Each row is owned by `lanes` invocations of one subgroup; the head dimension, padded to vec4 slots
 * (`rowSlots` = lanes·slots), is dealt out lane-interleaved (lane l holds slots l, l+lanes, ...), so an
 * invocation keeps `slots` vec4 of its row's vectors and accumulators in registers. Partial dot products
 * are summed over the row's lanes with a subgroupShuffleXor butterfly (several rows' sums in one vector).
 * Without subgroups `lanes` is 1 and an invocation owns whole rows (no cross-invocation reduction).
 * lanes = the smallest power of two ≤ 8 (and ≤ the adapter's minimum subgroup size) giving ≤ 6 slots:
 * Dh 64 → 4×4, 66 and 72 → 4×5, 128 → 8×4, 33 → 2×5, 5 → 1×2. An invocation owns
 * `rowsPerInvocation` rows (2 when slots ≤ 5, else 1; rows rloc and rloc + workgroup/lanes): every vec4
 * read from workgroup memory then feeds 8 FMAs (4 with one row), at the price of registers: with 2 rows
 * of 5 slots, 80 floats of rows and accumulators plus 2·tile scores (forward), 120 (dQ), 160 (dK/dV).
 * Workgroup: 64·lanes invocations (≤ 256), so 128 rows per workgroup at Dh 64–72 and 64 at Dh 128.
 * The generator unrolls every loop over rows and slots into one variable per (row, slot), so that
 * compilers keep them in registers (lavapipe left loop-indexed register arrays in scratch memory at 5
 * slots: unrolling made dK/dV about 9× and the forward 2× faster there); loops over tiles and tile rows
 * stay loops. Tile vectors are read from workgroup memory again for the accumulations rather than kept
 * live across the lane reduction.
 * Rows are assigned per subgroup through a workgroup atomic (a subgroup takes the next index and owns
 * row groups index·(subgroup_size/lanes) + subgroup_invocation_id/lanes), so nothing assumes how
 * local_invocation_index maps onto subgroups. Should a subgroup be smaller than `lanes` (the launcher
 * avoids this when the adapter reports its sizes) the results are NaN, never silently wrong.
 *
 * Tiles: the other side (keys and values for forward and dQ; queries and dO for dK/dV) advances in tiles
 * of `tile` rows staged in workgroup memory as vec4<f32>: 2·tile·rowSlots·16 bytes. `tile` is the largest
 * of 32, 16, 8, ... that fits `maxComputeWorkgroupStorageSize` (32 KiB on lavapipe: tile 32 up to Dh 124,
 * 16 for Dh 128 in f32; 48 KiB GPUs: 32 up to Dh 188). Every staged value is read by all rows of the
 * workgroup, so global traffic per FMA falls with the rows per workgroup.
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
  /** Head dimension the tiling is for. */
  headDim: number;
  /** Invocations per row (1 without subgroups). */
  lanes: number;
  /** vec4 slots per invocation. */
  slots: number;
  /** vec4 slots per row (lanes·slots ≥ ⌈headDim/4⌉, the excess zero-padded). */
  rowSlots: number;
  /** Rows each invocation owns in the forward and dQ kernels (1 or 2; dK/dV: 1). */
  rowsPerInvocation: number;
  /** Rows of the staged side per tile. */
  tile: number;
  /** Invocations per workgroup. */
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
  /** Queries per head. */
  lq: number;
  /** Keys (and values) per head. */
  lk: number;
  /** Channels per head of q, k and v. */
  headDim: number;
  /** Multiplier of q·k (usually 1/√headDim). */
  scale: number;
  /** Top-left causal mask: query i sees keys j ≤ i. */
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
  // two rows per invocation halve the workgroup-memory loads per FMA where registers allow
  const rowsPerInvocation = slots <= 5 ? 2 : 1;
  const budget = gpu.limits.maxComputeWorkgroupStorageSize - 64;
  let tile = 32;
  while (tile > 1 && tile * (2 * rowSlots * 16 + 8) > budget) tile /= 2;
  if (tile * (2 * rowSlots * 16 + 8) > budget) {
    throw new RangeError(`attention: head dim ${headDim} does not fit this device's workgroup memory`);
  }
  return {
    headDim,
    lanes,
    slots,
    rowSlots,
    rowsPerInvocation,
    tile,
    workgroup,
    subgroups: subgroups && lanes > 1,
  };
}

type Kind = "forward" | "dq" | "dkdv";

const STORAGE: Record<Kind, ("read" | "read_write")[]> = {
  forward: ["read", "read", "read", "read_write", "read_write"],
  dq: ["read", "read", "read", "read", "read", "read", "read_write", "read_write"],
  dkdv: ["read", "read", "read", "read", "read", "read", "read_write", "read_write"],
};

/** Rows (queries or keys) one invocation owns in a kernel. */
function rowsPerInvocation(_kind: Kind, t: AttentionTiling): number {
  return t.rowsPerInvocation;
}

/** Rows per workgroup of a kernel. */
function blockRows(kind: Kind, t: AttentionTiling): number {
  return (t.workgroup / t.lanes) * rowsPerInvocation(kind, t);
}

/** `f(0) … f(n−1)` joined: the generator unrolls every loop over rows and slots. */
function unroll(n: number, f: (i: number) => string, separator = "\n  "): string {
  return Array.from({ length: n }, (_, i) => f(i)).join(separator);
}

function source(kind: Kind, type: AttentionType, t: AttentionTiling): string {
  const { headDim: DH, lanes: T, slots: NV, rowSlots: SP, tile: BC, workgroup: WG } = t;
  const R = rowsPerInvocation(kind, t);
  const RS = WG / T; // row groups per workgroup: the rows of invocation rloc are rloc + r·RS
  const BR = RS * R;
  // Rows and slots are unrolled into one variable per (row, slot) (`q0_3`, `a1_2`, ...), so that every
  // compiler keeps them in registers; loops over tiles and tile rows stay loops.
  const slot = (v: number) => `lane + ${v * T}u`;
  const rowOf = (r: number) => `row0 + ${r * RS}u`;
  const each = (f: (r: number, v: number) => string, sep = "\n  ") =>
    unroll(R, (r) => unroll(NV, (v) => f(r, v), sep), sep);
  // a vector of per-row sums Σ_v dot(a{r}_{v}, b{v}) (one per row, then one per row of a second pair)
  const dots = (pairs: [string, string][]) => {
    const terms = pairs.flatMap(([a, b]) =>
      unroll(R, (r) => unroll(NV, (v) => `dot(${a}${r}_${v}, ${b}${v})`, " + "), "|").split("|")
    );
    return terms.length === 1 ? terms[0] : `vec${terms.length}<f32>(${terms.join(", ")})`;
  };
  const sumFn = (n: number) => (n === 1 ? "lanes_sum0" : n === 2 ? "lanes_sum1" : "lanes_sum2");
  const component = (n: number, i: number) => (n === 1 ? "x" : `x[${i}]`);
  // one vec4 slot of a row of `buf` (zeros past `limit` or the head dim), and its store
  const loader = (buf: string) => `
fn ld_${buf}(base: u32, row: u32, limit: u32, s: u32) -> vec4<f32> {
  var x = vec4<f32>(0.0);
  let d = s * 4u;
  if (row < limit) {
    let i = base + row * ${DH}u + d;
    if (d + 4u <= ${DH}u) {
      x = vec4<f32>(f32(${buf}[i]), f32(${buf}[i + 1u]), f32(${buf}[i + 2u]), f32(${buf}[i + 3u]));
    } else {
      for (var c = 0u; c < 4u; c++) { if (d + c < ${DH}u) { x[c] = f32(${buf}[i + c]); } }
    }
  }
  return x;
}`;
  const storer = (buf: string) => `
fn st_${buf}(base: u32, row: u32, limit: u32, s: u32, x: vec4<f32>) {
  let d = s * 4u;
  if (row < limit) {
    let i = base + row * ${DH}u + d;
    for (var c = 0u; c < 4u; c++) { if (d + c < ${DH}u) { ${buf}[i + c] = {{T}}(x[c]); } }
  }
}`;
  const loadRows = (name: string, buf: string, base: string, limit: string, factor = "") =>
    each((r, v) => `var ${name}${r}_${v} = ld_${buf}(${base}, ${rowOf(r)}, ${limit}, ${slot(v)})${factor};`);
  const storeRows = (buf: string, base: string, name: string, factor: (r: number) => string, limit: string) =>
    each((r, v) => `st_${buf}(${base}, ${rowOf(r)}, ${limit}, ${slot(v)}, ${name}${r}_${v} * ${factor(r)});`);
  const zeros = (name: string) => each((r, v) => `var ${name}${r}_${v} = vec4<f32>(0.0);`);
  // rows first..first+BC−1 of `buf` into a workgroup tile (vec4 slots), zeros past `limit`
  const loadTile = (tileName: string, buf: string, base: string, first: string, limit: string) => `
    for (var e = lid; e < ${BC * SP}u; e += ${WG}u) {
      ${tileName}[e] = ld_${buf}(${base}, ${first} + e / ${SP}u, ${limit}, e % ${SP}u);
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
  // sums over the lanes of a row: f32 and the vector widths the kernels reduce at once
  const sums = ["f32", "vec2<f32>", "vec4<f32>"].map((ty, i) =>
    `fn lanes_sum${i}(x: ${ty}) -> ${ty} { var y = x; ${butterfly}return y; }`
  ).join("\n");
  const buffers = (list: [string, string, boolean][]) =>
    list.map(([name, ty, rw], i) =>
      `@group(0) @binding(${i}) var<storage, ${rw ? "read_write" : "read"}> ${name}: array<${ty}>;`
    ).join("\n");

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
${sums}
var<workgroup> ta: array<vec4<f32>, ${BC * SP}>;
var<workgroup> tb: array<vec4<f32>, ${BC * SP}>;
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
  let row0 = block * ${BR}u + rloc;
  let qh = head * p.lq * ${DH}u;
  let kh = head * p.lk * ${DH}u;`;
  // key tiles of forward and dQ stop after the block's last row when causal
  const keyLoop = `
  var k_end = p.lk;
  if (p.causal != 0u) { k_end = min(p.lk, (block + 1u) * ${BR}u); }
  for (var k0 = 0u; k0 < k_end; k0 += ${BC}u) {
    workgroupBarrier();
    ${loadTile("ta", "k", "p.o1 + kh", "k0", "p.lk")}
    ${loadTile("tb", "vv", "p.o2 + kh", "k0", "p.lk")}
    workgroupBarrier();`;
  const masked = (r: number) => `(key >= p.lk || (p.causal != 0u && key > ${rowOf(r)}))`;

  if (kind === "forward") {
    return specialize(
      /* wgsl */ `
${
        buffers([
          ["q", "{{T}}", false],
          ["k", "{{T}}", false],
          ["vv", "{{T}}", false],
          ["out", "{{T}}", true],
          [
            "lse",
            "f32",
            true,
          ],
        ])
      }
${prelude}
${loader("q")}${loader("k")}${loader("vv")}${storer("out")}
${entry}
  ${loadRows("q", "q", "p.o0 + qh", "p.lq", " * p.scale2")}
  ${zeros("a")}
  ${unroll(R, (r) => `var m${r} = NEG;\n  var l${r} = 0.0;\n  var s${r}: array<f32, ${BC}>;`)}
  ${keyLoop}
    ${unroll(R, (r) => `var mb${r} = NEG;`)}
    for (var j = 0u; j < ${BC}u; j++) {
      ${unroll(NV, (v) => `let kt${v} = ta[j * ${SP}u + ${slot(v)}];`, "\n      ")}
      var x = ${dots([["q", "kt"]])};
      x = ${sumFn(R)}(x);
      let key = k0 + j;
      ${
        unroll(R, (r) =>
          `{ let sc = select(${component(R, r)}, NEG, ${
            masked(r)
          }); s${r}[j] = sc; mb${r} = max(mb${r}, sc); }`, "\n      ")
      }
    }
    ${
        unroll(R, (r) =>
          `{
      let mn = max(m${r}, mb${r});
      let alpha = exp2(m${r} - mn);
      l${r} *= alpha;
      ${
            unroll(NV, (v) => `a${r}_${v} *= alpha;`, " ")
          }
      m${r} = mn;
    }`, "\n    ")
      }
    for (var j = 0u; j < ${BC}u; j++) {
      ${unroll(R, (r) => `let p${r} = exp2(s${r}[j] - m${r});\n      l${r} += p${r};`, "\n      ")}
      ${
        unroll(NV, (v) =>
          `{ let vt = tb[j * ${SP}u + ${slot(v)}]; ${
            unroll(R, (r) =>
              `a${r}_${v} = fma(vec4<f32>(p${r}), vt, a${r}_${v});`, " ")
          } }`, "\n      ")
      }
    }
  }
  ${unroll(R, (r) => `let inv${r} = poison / l${r};`)}
  ${storeRows("out", "p.o3 + qh", "a", (r) => `inv${r}`, "p.lq")}
  if (lane == 0u) {
    ${
        unroll(R, (r) =>
          `if (${rowOf(r)} < p.lq) { lse[p.o4 + head * p.lq + ${
            rowOf(r)
          }] = (m${r} + log2(l${r})) * LN2 * poison; }`, "\n    ")
      }
  }
}`,
      { T: type },
    );
  }

  if (kind === "dq") {
    // q·k and dO·v of the R rows reduced at once: vec2 [s, dp] (R = 1) or vec4 [s0, s1, dp0, dp1] (R = 2)
    return specialize(
      /* wgsl */ `
${
        buffers([
          ["q", "{{T}}", false],
          ["k", "{{T}}", false],
          ["vv", "{{T}}", false],
          ["o", "{{T}}", false],
          ["g", "{{T}}", false],
          ["lse", "f32", false],
          ["dsum", "f32", true],
          ["dq", "{{T}}", true],
        ])
      }
${prelude}
${loader("q")}${loader("k")}${loader("vv")}${loader("o")}${loader("g")}${storer("dq")}
${entry}
  ${loadRows("q", "q", "p.o0 + qh", "p.lq")}
  ${loadRows("g", "g", "p.o4 + qh", "p.lq")}
  ${unroll(R, (r) => `var dd${r} = 0.0;\n  var lse2_${r} = 0.0;`)}
  {
    ${loadRows("o", "o", "p.o3 + qh", "p.lq")}
    var x = ${R === 1 ? "0.0" : "vec2<f32>(0.0)"};
    ${
        unroll(R, (r) =>
          `${component(R, r)} = ${unroll(NV, (v) => `dot(g${r}_${v}, o${r}_${v})`, " + ")};`, "\n    ")
      }
    x = ${sumFn(R)}(x);
    ${
        unroll(R, (r) =>
          `dd${r} = ${component(R, r)};
    if (${rowOf(r)} < p.lq) {
      lse2_${r} = lse[p.o5 + head * p.lq + ${rowOf(r)}] * LOG2E;
      if (lane == 0u) { dsum[p.o6 + head * p.lq + ${rowOf(r)}] = dd${r}; }
    }`, "\n    ")
      }
  }
  ${zeros("a")}
  ${keyLoop}
    for (var j = 0u; j < ${BC}u; j++) {
      ${
        unroll(
          NV,
          (v) => `let kt${v} = ta[j * ${SP}u + ${slot(v)}];\n      let wt${v} = tb[j * ${SP}u + ${slot(v)}];`,
          "\n      ",
        )
      }
      var x = ${dots([["q", "kt"], ["g", "wt"]])};
      x = ${sumFn(2 * R)}(x);
      let key = k0 + j;
      ${
        unroll(R, (r) =>
          `let ds${r} = select(exp2(x[${r}] * p.scale2 - lse2_${r}), 0.0, ${masked(r)}) * (x[${
            R + r
          }] - dd${r});`, "\n      ")
      }
      ${
        unroll(
          NV,
          (v) =>
            `{
        let kt = ta[j * ${SP}u + ${slot(v)}];
        ${unroll(R, (r) => `a${r}_${v} = fma(vec4<f32>(ds${r}), kt, a${r}_${v});`, " ")}
      }`,
          "\n      ",
        )
      }
    }
  }
  ${storeRows("dq", "p.o7 + qh", "a", () => "(p.scale * poison)", "p.lq")}
}`,
      { T: type },
    );
  }

  // dK/dV: R key rows per invocation, query tiles staged with their lse and D; k·q and v·dO of the R rows
  // reduced at once as in dQ. The tile vectors are read again for the accumulation (fewer live registers).
  return specialize(
    /* wgsl */ `
${
      buffers([
        ["q", "{{T}}", false],
        ["k", "{{T}}", false],
        ["vv", "{{T}}", false],
        ["g", "{{T}}", false],
        ["lse", "f32", false],
        ["dsum", "f32", false],
        ["dk", "{{T}}", true],
        ["dv", "{{T}}", true],
      ])
    }
${prelude}
${loader("q")}${loader("k")}${loader("vv")}${loader("g")}${storer("dk")}${storer("dv")}
var<workgroup> tl: array<f32, ${BC}>;
var<workgroup> td: array<f32, ${BC}>;
${entry}
  ${loadRows("k", "k", "p.o1 + kh", "p.lk")}
  ${loadRows("v", "vv", "p.o2 + kh", "p.lk")}
  ${zeros("ak")}
  ${zeros("av")}
  var q_start = 0u;
  if (p.causal != 0u) { q_start = block * ${BR}u; }
  for (var q0 = q_start; q0 < p.lq; q0 += ${BC}u) {
    workgroupBarrier();
    ${loadTile("ta", "q", "p.o0 + qh", "q0", "p.lq")}
    ${loadTile("tb", "g", "p.o3 + qh", "q0", "p.lq")}
    for (var e = lid; e < ${BC}u; e += ${WG}u) {
      let qe = q0 + e;
      var a = 0.0;
      var b = 0.0;
      if (qe < p.lq) { a = lse[p.o4 + head * p.lq + qe] * LOG2E; b = dsum[p.o5 + head * p.lq + qe]; }
      tl[e] = a;
      td[e] = b;
    }
    workgroupBarrier();
    for (var i = 0u; i < ${BC}u; i++) {
      var x = ${
      (() => {
        const terms = [
          ...unroll(R, (r) => unroll(NV, (v) => `dot(k${r}_${v}, ta[i * ${SP}u + ${slot(v)}])`, " + "), "|")
            .split("|"),
          ...unroll(R, (r) => unroll(NV, (v) => `dot(v${r}_${v}, tb[i * ${SP}u + ${slot(v)}])`, " + "), "|")
            .split("|"),
        ];
        return `vec${terms.length}<f32>(${terms.join(", ")})`;
      })()
    };
      x = ${sumFn(2 * R)}(x);
      let qi = q0 + i;
      ${
      unroll(R, (r) =>
        `let p${r} = select(exp2(x[${r}] * p.scale2 - tl[i]), 0.0, qi >= p.lq || (p.causal != 0u && ${
          rowOf(r)
        } > qi));
      let ds${r} = p${r} * (x[${R + r}] - td[i]);`, "\n      ")
    }
      ${
      unroll(NV, (v) =>
        `{
        let qt = ta[i * ${SP}u + ${slot(v)}];
        let gt = tb[i * ${SP}u + ${slot(v)}];
        ${
          unroll(
            R,
            (r) =>
              `av${r}_${v} = fma(vec4<f32>(p${r}), gt, av${r}_${v});\n        ak${r}_${v} = fma(vec4<f32>(ds${r}), qt, ak${r}_${v});`,
            "\n        ",
          )
        }
      }`, "\n      ")
    }
    }
  }
  ${storeRows("dk", "p.o6 + kh", "ak", () => "(p.scale * poison)", "p.lk")}
  ${storeRows("dv", "p.o7 + kh", "av", () => "poison", "p.lk")}
}`,
    { T: type },
  );
}

function kernelFor(gpu: Gpu, kind: Kind, type: AttentionType, t: AttentionTiling) {
  const rows = blockRows(kind, t);
  const key = `attention:${kind}:${type}:${t.headDim}:${t.lanes}x${t.slots}:${rows}:${t.tile}:${+t
    .subgroups}`;
  return gpu.kernel(key, () => ({
    name: `attention-${kind}[${type},dh${t.headDim},${t.lanes}x${t.slots},r${rows},t${t.tile}${
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
  const blocks = Math.ceil(rowsPerHead / blockRows(kind, t));
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
  /** Forward input [heads, lq, headDim]. */
  q: BufferRange;
  /** Forward input [heads, lk, headDim]. */
  k: BufferRange;
  /** Forward input [heads, lk, headDim]. */
  v: BufferRange;
  /** Forward output [heads, lq, headDim]. */
  out: BufferRange;
  /** Gradient of the output [heads, lq, headDim]. */
  gradOut: BufferRange;
  /** Forward log-sum-exp [heads, lq], f32. */
  lse: BufferRange;
  /** Scratch [heads, lq], f32: D = rowsum(dO·O), written by the dQ kernel. */
  dsum: BufferRange;
  /** Output: gradient of q. */
  dq: BufferRange;
  /** Output: gradient of k. */
  dk: BufferRange;
  /** Output: gradient of v. */
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
