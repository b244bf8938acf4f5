/**
 * Row gather and scatter by per-sample index (ViT token dropping: MAE keeps K of N tokens per sample).
 *
 * Layout: x / base / dx [Bx, N, C] (Bx = B, or 1 for a table shared by every sample), index [B, K] of
 * i32 or u32 read as u32 (a negative i32 is ≥ 2³¹, hence out of range), rows [B, K, C], all contiguous;
 * f32 or f16 storage (copies move values unchanged; gradient sums accumulate in f32, one rounding).
 * Out-of-range indices (v ≥ N, negative i32) are never dereferenced: gather writes a zero row, scatter
 * skips the row, the backward ignores it. One element per invocation, 256 per workgroup, through the
 * chunked pointwise generator (chunked.ts).
 *
 * - {@link runGatherRows}: out[b, k, c] = x[bx, index[b, k], c] (bx = b, or 0 when shared).
 * - {@link runScatterRows}: out[b, index[b, k], c] = src[b, k, c] (or 0: zeroing rows) for in-range
 *   indices; other rows untouched (the caller copies base first). Repeated indices within a row: one of
 *   the writes wins, which one is undefined.
 * - {@link runGatherRowsGrad}: dx[bx, n, c] = Σ_{b ∈ batches(bx)} Σ_{k: index[b,k] = n} g[b, k, c],
 *   deterministic and without float atomics, in three passes over a fill:
 *   1. table [B, N, 2] u32 filled with 0xFFFFFFFF; one invocation per (b, k) does
 *      atomicMin(first[b, v], k) and atomicMin(~last[b, v], ~k) (integer atomics) for v = index[b, k];
 *   2. one invocation per (b, k) finds next[b, k], the next k' > k with the same index (scanning
 *      k + 1 … last[b, v], stopping at the first match; 0xFFFFFFFF at the end of a chain);
 *   3. one invocation per dx element walks, for each b of its batch element(s), the chain first[b, n],
 *      next[…], … in increasing k and sums g in f32 (fixed order: bit-reproducible).
 *   Cost: passes 1–2 run B·K invocations; pass 3 reads B·N table entries per column plus one g value
 *   per (b, k, c): O(B·N·C + B·K·C) whatever the indices (Bx = 1 included: every dx element loops over
 *   the B samples). With distinct indices and Bx = B, pass 3 is an inverse-permutation gather (one table
 *   read, at most one g read per element), with no sorting and no N·K comparison loop. Pass 2 is free
 *   for an index that occurs once in its row (first = last); a value occurring at k1 < … < km costs
 *   km − k1 steps in total, so pass 2 is ≤ Σ over repeated values of their span ≤ K²/2 per sample in the
 *   worst case (no C factor; 0 for the distinct indices of token dropping). N = 8000, K = 2000, C = 864,
 *   B = 2: table 128 KiB, next 16 KiB, pass 3 ≈ 2·8000·864 entries + 2·2000·864 g reads.
 *
 * Limits: tensors below 2³² elements. Chunks are runs of work elements whose windows fit one binding;
 * each chunk binds the whole rows of the samples it touches (indices are arbitrary within a sample), so
 * one sample of x (N·C elements; all of x when shared), of base, of g (K·C) and of the table must fit
 * one binding, otherwise a BindingTooLargeError names the kernel. With a shared x whose samples do not
 * all fit, the gradient is summed over groups of samples in several dispatches (an f16 dx then rounds
 * once per group).
 */
import type { BufferRange, Gpu } from "../core/gpu/mod.ts";
import { runFill } from "./copy.ts";
import { type OperandArg, perRow, type PointwiseSpec, runPointwise } from "./chunked.ts";
import { planWindows } from "./launch_plan.ts";
import { poolScratch } from "./reduce.ts";

/** Sizes of a row gather / scatter. */
export interface RowsShape {
  /** Samples (rows of the index). */
  b: number;
  /** Rows per sample of x / base / dx. */
  n: number;
  /** Indices per sample. */
  k: number;
  /** Elements per row. */
  c: number;
  /** x has one sample shared by every b (Bx = 1 with B > 1). */
  shared: boolean;
}

type FloatType = "f32" | "f16";

const BYTES: Record<FloatType, number> = { f32: 4, f16: 2 };

/** Elements [lo, hi) of rows of `per` elements for the samples that elements [g0, g1) of `unit` touch. */
function samples(unit: number, per: number, g0: number, g1: number): [number, number] {
  return [Math.floor(g0 / unit) * per, (Math.floor((g1 - 1) / unit) + 1) * per];
}

const DECOMPOSE = `let c = g % p.u_c;
  let bk = g / p.u_c;
  let b = bk / p.u_k;
  let v = ix[ix_ix(g)];`;

/** Records out [B, K, C] = rows of x [Bx, N, C] at `index` [B, K] (zero rows for out-of-range indices). */
export function runGatherRows(
  gpu: Gpu,
  type: FloatType,
  s: RowsShape,
  x: BufferRange,
  index: BufferRange,
  out: BufferRange,
): void {
  const n = s.b * s.k * s.c;
  if (n === 0) return;
  const xSpan = (g0: number, g1: number): [number, number] =>
    s.shared ? [0, s.n * s.c] : samples(s.k * s.c, s.n * s.c, g0, g1);
  runPointwise(
    gpu,
    {
      key: `gatherrows:${type}`,
      name: `gatherRows[${type}]`,
      operands: [
        { name: "x", type, index: "custom" },
        { name: "ix", type: "u32", index: "map" },
        { name: "o", type, write: true, index: "same" },
      ],
      uints: ["n", "k", "c", "shared"],
      body: `${DECOMPOSE}
  var y = ${type}(0.0);
  if (v < p.u_n) {
    let bx = select(b, 0u, p.u_shared != 0u);
    y = x[ix_x((bx * p.u_n + v) * p.u_c + c)];
  }
  o[ix_o(g)] = y;`,
    },
    n,
    [{ range: x, span: xSpan }, { range: index, map: perRow(s.c) }, { range: out }],
    [s.n, s.k, s.c, s.shared ? 1 : 0],
  );
}

/**
 * Records out[b, index[b, k], :] = src[b, k, :] for in-range indices (out [B, N, C], src [B, K, C]);
 * without `src`, writes zeros there instead. Other rows of out are left as they are.
 */
export function runScatterRows(
  gpu: Gpu,
  type: FloatType,
  s: RowsShape,
  index: BufferRange,
  src: BufferRange | undefined,
  out: BufferRange,
): void {
  const n = s.b * s.k * s.c;
  if (n === 0) return;
  const outSpan = (g0: number, g1: number) => samples(s.k * s.c, s.n * s.c, g0, g1);
  const args: OperandArg[] = [{ range: index, map: perRow(s.c) }, { range: out, span: outSpan }];
  if (src) args.push({ range: src });
  runPointwise(
    gpu,
    {
      key: `scatterrows:${type}:${src ? "src" : "zero"}`,
      name: src ? `scatterRows[${type}]` : `scatterRowsZero[${type}]`,
      operands: [
        { name: "ix", type: "u32", index: "map" },
        { name: "o", type, write: true, index: "custom" },
        ...(src ? [{ name: "src", type, index: "same" } as const] : []),
      ],
      uints: ["n", "k", "c"],
      body: `${DECOMPOSE}
  if (v < p.u_n) {
    o[ix_o((b * p.u_n + v) * p.u_c + c)] = ${src ? "src[ix_src(g)]" : `${type}(0.0)`};
  }`,
    },
    n,
    args,
    [s.n, s.k, s.c],
  );
}

const NONE = 0xffffffff;

/**
 * Records dx [Bx, N, C] = scatter-add of g [B, K, C] at `index` [B, K] (summed over b when shared;
 * repeated indices sum). Scratch: 8·B·N + 4·B·K bytes from the pool.
 */
export function runGatherRowsGrad(
  gpu: Gpu,
  type: FloatType,
  s: RowsShape,
  index: BufferRange,
  g: BufferRange,
  dx: BufferRange,
): void {
  const bx = s.shared ? 1 : s.b;
  const total = bx * s.n * s.c;
  if (total === 0) return;
  if (s.b * s.k === 0) {
    runFill(gpu, dx, Math.ceil((total * BYTES[type]) / 4), 0);
    return;
  }
  const tableWords = 2 * s.b * s.n;
  const scratch = poolScratch(gpu);
  const table = scratch.acquire(4 * tableWords);
  const next = scratch.acquire(4 * s.b * s.k);
  runFill(gpu, table, tableWords, NONE);
  const bk = s.b * s.k;
  // 1. first and (complemented) last k of every (b, v)
  runPointwise(
    gpu,
    {
      key: "gatherrows_first_last",
      name: "gatherRowsGrad_firstLast",
      operands: [
        { name: "ix", type: "u32", index: "same" },
        { name: "tb", type: "atomic<u32>", write: true, index: "custom" },
      ],
      uints: ["n", "k"],
      body: `let k = g % p.u_k;
  let b = g / p.u_k;
  let v = ix[ix_ix(g)];
  if (v < p.u_n) {
    let e = 2u * (b * p.u_n + v);
    atomicMin(&tb[ix_tb(e)], k);
    atomicMin(&tb[ix_tb(e + 1u)], ~k);
  }`,
    },
    bk,
    [{ range: index }, { range: table, span: (g0, g1) => samples(s.k, 2 * s.n, g0, g1) }],
    [s.n, s.k],
  );
  // 2. next occurrence of the same index in the sample (chains in increasing k)
  runPointwise(
    gpu,
    {
      key: "gatherrows_next",
      name: "gatherRowsGrad_next",
      operands: [
        { name: "ix", type: "u32", index: "custom" },
        { name: "tb", type: "u32", index: "custom" },
        { name: "nx", type: "u32", write: true, index: "same" },
      ],
      uints: ["n", "k"],
      body: `let k = g % p.u_k;
  let b = g / p.u_k;
  let v = ix[ix_ix(g)];
  var nxt = ${NONE}u;
  if (v < p.u_n) {
    let last = ~tb[ix_tb(2u * (b * p.u_n + v) + 1u)];
    for (var j = k + 1u; j <= last; j++) {
      if (ix[ix_ix(b * p.u_k + j)] == v) {
        nxt = j;
        break;
      }
    }
  }
  nx[ix_nx(g)] = nxt;`,
    },
    bk,
    [
      { range: index, span: (g0, g1) => samples(s.k, s.k, g0, g1) },
      { range: table, span: (g0, g1) => samples(s.k, 2 * s.n, g0, g1) },
      { range: next },
    ],
    [s.n, s.k],
  );
  // 3. every dx element walks its chains
  const spec: PointwiseSpec = {
    key: `gatherrows_grad:${type}`,
    name: `gatherRowsGrad[${type}]`,
    operands: [
      { name: "tb", type: "u32", index: "custom" },
      { name: "nx", type: "u32", index: "custom" },
      { name: "gy", type, index: "custom" },
      { name: "dx", type, write: true, index: "same" },
    ],
    uints: ["n", "k", "c", "shared", "b0", "b1", "acc"],
    body: `let c = g % p.u_c;
  let n = (g / p.u_c) % p.u_n;
  let bx = g / (p.u_c * p.u_n);
  var b_lo = bx;
  var b_hi = bx + 1u;
  if (p.u_shared != 0u) {
    b_lo = p.u_b0;
    b_hi = p.u_b1;
  }
  var acc = 0.0;
  for (var b = b_lo; b < b_hi; b++) {
    var k = tb[ix_tb(2u * (b * p.u_n + n))];
    // next[] grows strictly along a chain, so k < K bounds the walk
    for (var step = 0u; step < p.u_k && k < p.u_k; step++) {
      acc += f32(gy[ix_gy((b * p.u_k + k) * p.u_c + c)]);
      k = nx[ix_nx(b * p.u_k + k)];
    }
  }
  if (p.u_acc != 0u) { acc += f32(dx[ix_dx(g)]); }
  dx[ix_dx(g)] = ${type}(acc);`,
  };
  if (!s.shared) {
    const per = s.n * s.c;
    runPointwise(
      gpu,
      spec,
      total,
      [
        { range: table, span: (g0, g1) => samples(per, 2 * s.n, g0, g1) },
        { range: next, span: (g0, g1) => samples(per, s.k, g0, g1) },
        { range: g, span: (g0, g1) => samples(per, s.k * s.c, g0, g1) },
        { range: dx },
      ],
      [s.n, s.k, s.c, 0, 0, 0, 0],
    );
  } else {
    // groups of samples whose table, next and g rows fit one binding each (the launch planner, one
    // sample per item)
    const perSample = (range: BufferRange, elementBytes: number, elems: number) => ({
      range,
      elementBytes,
      itemStride: elems,
      itemExtent: elems,
    });
    const groups = planWindows(
      gpu.limits,
      [perSample(table, 4, 2 * s.n), perSample(next, 4, s.k), perSample(g, BYTES[type], s.k * s.c)],
      s.b,
      { label: spec.name },
    ).map((w): [number, number] => [w.item0, w.item0 + w.items]);
    groups.forEach(([b0, b1], i) => {
      const fixed = (lo: number, hi: number) => (): [number, number] => [lo, hi];
      runPointwise(
        gpu,
        spec,
        total,
        [
          { range: table, span: fixed(b0 * 2 * s.n, b1 * 2 * s.n) },
          { range: next, span: fixed(b0 * s.k, b1 * s.k) },
          { range: g, span: fixed(b0 * s.k * s.c, b1 * s.k * s.c) },
          { range: dx },
        ],
        [s.n, s.k, s.c, 1, b0, b1, i > 0 ? 1 : 0],
      );
    });
  }
  scratch.release(table);
  scratch.release(next);
}
