/**
 * Loss kernels: masked MSE / L1, voxel-wise cross-entropy fused with log-softmax over C, soft Dice,
 * cosine similarity, and the NT-Xent pieces (L2 normalization, log-sum-exp along a dim). Built on the
 * chunked reductions of kernels/chunked.ts: every sum over a volume is split into pieces of ≤ 4096
 * elements (Kahan-compensated within an invocation, tree-merged in the workgroup, merged per result),
 * every reduction over channels runs per voxel column with an online log-sum-exp (no exp overflow).
 *
 * Layouts. Volumes are [N, C, S] (S = voxels, any spatial rank). Per-voxel operands (labels [N, S],
 * masks [N, S]) are read through the column map o·S + s; masks shaped like the prediction through the
 * same index. Scalar results are written as `out` (loss, the input's dtype) and `den` (f32 denominator
 * kept for backward). Backward kernels read the incoming scalar gradient from a one-element buffer.
 * Masks may be f32, f16, u32 or i32 (read as f32 weights); labels i32 or u32.
 */
import type { BufferRange, Gpu } from "../core/gpu/mod.ts";
import {
  type IndexMap,
  type OperandArg,
  type OperandSpec,
  type OperandType,
  perColumn,
  perRow,
  runPointwise,
  runReduceMerge,
} from "./chunked.ts";
import type { Scratch } from "./reduce.ts";

/** Storage type of loss inputs. */
export type LossType = "f32" | "f16";

/** A mask operand: its buffer, element type and index map over the prediction's elements. */
export interface MaskArg {
  range: BufferRange;
  type: OperandType;
  map: IndexMap;
}

const NAN = "bitcast<f32>(0x7fc00000u)";

/** Elementwise errors that {@link runMaskedError} reduces. */
export type ErrorKind = "mse" | "l1";

const ERROR: Record<ErrorKind, { value: string; grad: string }> = {
  mse: { value: "d * d", grad: "2.0 * d" },
  l1: { value: "abs(d)", grad: "sign(d)" },
};

/**
 * Records the masked mean (or sum, `mean` false) of (pred − target)² or |pred − target| over `n`
 * elements into `out` (one element) and the denominator Σ mask (1 for a sum) into `den` (f32). An
 * all-zero mask gives loss 0.
 */
export function runMaskedError(
  gpu: Gpu,
  type: LossType,
  kind: ErrorKind,
  n: number,
  pred: BufferRange,
  target: BufferRange,
  mask: MaskArg | undefined,
  mean: boolean,
  out: BufferRange,
  den: BufferRange,
  scratch: Scratch,
): void {
  const operands: OperandSpec[] = [
    { name: "a", type, index: "same" },
    { name: "t", type, index: "same" },
  ];
  const args: OperandArg[] = [{ range: pred }, { range: target }];
  if (mask) {
    operands.push({ name: "m", type: mask.type, index: "map" });
    args.push({ range: mask.range, map: mask.map });
  }
  // pieces stay inside one channel's voxels, so a per-voxel mask is read through an exact window
  const segment = mask && mask.map.mod > 1 ? mask.map.mod : n;
  runReduceMerge(gpu, scratch, { kind: "rows", rows: 1, len: n, segment }, {
    key: `maskederr:${kind}:${type}:${mask?.type ?? "-"}`,
    name: `${kind}_loss[${type}${mask ? ",masked" : ""}]`,
    mode: "sum",
    operands,
    value: `let d = f32(a[ix_a(g)]) - f32(t[ix_t(g)]);
    let w = ${mask ? "f32(m[ix_m(g)])" : "1.0"};
    let v = vec4<f32>(w * ${ERROR[kind].value}, w, 0.0, 0.0);`,
    merge: {
      operands: [
        { name: "o", type, write: true, index: "same" },
        { name: "dn", type: "f32", write: true, index: "same" },
      ],
      uints: ["mean"],
      body: `let r = combine_part(g);
  let q = select(1.0, r.y, p.u_mean == 1u);
  o[ix_o(g)] = ${type}(select(r.x / q, 0.0, q == 0.0));
  dn[ix_dn(g)] = q;`,
    },
  }, { args, mergeArgs: [{ range: out }, { range: den }], mergeUints: [mean ? 1 : 0] });
}

/** Records d/dpred (and d/dtarget = −d/dpred) of {@link runMaskedError} scaled by the scalar `gs`. */
export function runMaskedErrorGrad(
  gpu: Gpu,
  type: LossType,
  kind: ErrorKind,
  n: number,
  pred: BufferRange,
  target: BufferRange,
  mask: MaskArg | undefined,
  gs: BufferRange,
  den: BufferRange,
  dpred: BufferRange | undefined,
  dtarget: BufferRange | undefined,
): void {
  if (!dpred && !dtarget) return;
  const operands: OperandSpec[] = [
    { name: "a", type, index: "same" },
    { name: "t", type, index: "same" },
    { name: "gs", type, index: "whole" },
    { name: "dn", type: "f32", index: "whole" },
  ];
  const args: OperandArg[] = [{ range: pred }, { range: target }, { range: gs }, { range: den }];
  if (mask) {
    operands.push({ name: "m", type: mask.type, index: "map" });
    args.push({ range: mask.range, map: mask.map });
  }
  if (dpred) {
    operands.push({ name: "da", type, write: true, index: "same" });
    args.push({ range: dpred });
  }
  if (dtarget) {
    operands.push({ name: "dt", type, write: true, index: "same" });
    args.push({ range: dtarget });
  }
  runPointwise(
    gpu,
    {
      key: `maskederrgrad:${kind}:${type}:${mask?.type ?? "-"}:${dpred ? "a" : ""}${dtarget ? "t" : ""}`,
      name: `${kind}_loss_grad[${type}]`,
      operands,
      body: `let d = f32(a[ix_a(g)]) - f32(t[ix_t(g)]);
  let q = dn[0];
  let w = ${mask ? "f32(m[ix_m(g)])" : "1.0"};
  let gv = select(f32(gs[0]) * w * ${ERROR[kind].grad} / q, 0.0, q == 0.0);
  ${dpred ? `da[ix_da(g)] = ${type}(gv);` : ""}
  ${dtarget ? `dt[ix_dt(g)] = ${type}(-gv);` : ""}`,
    },
    n,
    args,
  );
}

/** Sizes of a voxel-wise classification: logits [n, c, s], labels [n, s]. */
export interface ClassShape {
  n: number;
  c: number;
  s: number;
}

/**
 * Records the cross-entropy of logits [n, c, s] against labels [n, s]: per voxel (lse, nll) into
 * `voxel` (vec2<f32>, nll = lse − x[label]; NaN for a label outside [0, c) that is not `ignoreIndex`),
 * then the weighted mean Σ w·nll / Σ w into `out` and Σ w into `den`, with w = mask·(label ≠ ignore).
 * No voxel counted gives loss 0.
 */
export function runCrossEntropy(
  gpu: Gpu,
  type: LossType,
  s: ClassShape,
  logits: BufferRange,
  labels: BufferRange,
  labelType: "i32" | "u32",
  mask: MaskArg | undefined,
  ignoreIndex: number,
  voxel: BufferRange,
  out: BufferRange,
  den: BufferRange,
  scratch: Scratch,
): void {
  const col = perColumn(s.c, s.s);
  runReduceMerge(gpu, scratch, { kind: "columns", outer: s.n, r: s.c, inner: s.s }, {
    key: `ce_lse:${type}:${labelType}`,
    name: `cross_entropy_lse[${type}]`,
    mode: "lse",
    operands: [{ name: "x", type, index: "same" }, { name: "lab", type: labelType, index: "map" }],
    value: `let xv = f32(x[ix_x(g)]);
    let v = vec4<f32>(xv, 0.0, select(0.0, xv, i32(lab[ix_lab(g)]) == i32(r)), 0.0);`,
    merge: {
      operands: [
        { name: "lab", type: labelType, index: "same" },
        { name: "vx", type: "vec2<f32>", write: true, index: "same" },
      ],
      uints: ["c"],
      floats: ["ignore"],
      body: `let st = combine_part(g);
  let lse = st.x + log(st.y);
  let label = i32(lab[ix_lab(g)]);
  let valid = label >= 0 && label < i32(p.u_c);
  let ignored = f32(label) == p.f_ignore;
  vx[ix_vx(g)] = vec2<f32>(lse, select(select(${NAN}, 0.0, ignored), lse - st.z, valid && !ignored));`,
    },
  }, {
    args: [{ range: logits }, { range: labels, map: col }],
    mergeArgs: [{ range: labels }, { range: voxel }],
    mergeUints: [s.c],
    mergeFloats: [ignoreIndex],
  });
  const operands: OperandSpec[] = [
    { name: "vx", type: "vec2<f32>", index: "same" },
    { name: "lab", type: labelType, index: "same" },
  ];
  const args: OperandArg[] = [{ range: voxel }, { range: labels }];
  if (mask) {
    operands.push({ name: "m", type: mask.type, index: "same" });
    args.push({ range: mask.range });
  }
  runReduceMerge(gpu, scratch, { kind: "rows", rows: 1, len: s.n * s.s }, {
    key: `ce_mean:${labelType}:${mask?.type ?? "-"}`,
    name: `cross_entropy_mean[${type}]`,
    mode: "sum",
    operands,
    floats: ["ignore"],
    value: `let w = select(${mask ? "f32(m[ix_m(g)])" : "1.0"}, 0.0, f32(i32(lab[ix_lab(g)])) == p.f_ignore);
    let v = vec4<f32>(select(w * vx[ix_vx(g)].y, 0.0, w == 0.0), w, 0.0, 0.0);`,
    merge: {
      operands: [
        { name: "o", type, write: true, index: "same" },
        { name: "dn", type: "f32", write: true, index: "same" },
      ],
      body: `let r = combine_part(g);
  o[ix_o(g)] = ${type}(select(r.x / r.y, 0.0, r.y == 0.0));
  dn[ix_dn(g)] = r.y;`,
    },
  }, { args, floats: [ignoreIndex], mergeArgs: [{ range: out }, { range: den }] });
}

/** Records d loss / d logits of {@link runCrossEntropy}: gs·w·(softmax − onehot(label)) / den. */
export function runCrossEntropyGrad(
  gpu: Gpu,
  type: LossType,
  s: ClassShape,
  logits: BufferRange,
  labels: BufferRange,
  labelType: "i32" | "u32",
  mask: MaskArg | undefined,
  ignoreIndex: number,
  voxel: BufferRange,
  gs: BufferRange,
  den: BufferRange,
  dlogits: BufferRange,
): void {
  const col = perColumn(s.c, s.s);
  const operands: OperandSpec[] = [
    { name: "x", type, index: "same" },
    { name: "lab", type: labelType, index: "map" },
    { name: "vx", type: "vec2<f32>", index: "map" },
    { name: "gs", type, index: "whole" },
    { name: "dn", type: "f32", index: "whole" },
  ];
  const args: OperandArg[] = [
    { range: logits },
    { range: labels, map: col },
    { range: voxel, map: col },
    { range: gs },
    { range: den },
  ];
  if (mask) {
    operands.push({ name: "m", type: mask.type, index: "map" });
    args.push({ range: mask.range, map: col });
  }
  operands.push({ name: "dx", type, write: true, index: "same" });
  args.push({ range: dlogits });
  runPointwise(
    gpu,
    {
      key: `cegrad:${type}:${labelType}:${mask?.type ?? "-"}`,
      name: `cross_entropy_grad[${type}]`,
      operands,
      uints: ["s", "c"],
      floats: ["ignore"],
      body: `let label = i32(lab[ix_lab(g)]);
  let q = dn[0];
  let w = select(${mask ? "f32(m[ix_m(g)])" : "1.0"}, 0.0, f32(label) == p.f_ignore || q == 0.0);
  let cls = i32((g / p.u_s) % p.u_c);
  let sm = exp(f32(x[ix_x(g)]) - vx[ix_vx(g)].x);
  dx[ix_dx(g)] = ${type}(select(f32(gs[0]) * w * (sm - select(0.0, 1.0, cls == label)) / q, 0.0, w == 0.0));`,
    },
    s.n * s.c * s.s,
    args,
    [s.s, s.c],
    [ignoreIndex],
  );
}

/** The Dice target: integer labels [n, s] (one-hot implied) or dense values [n, c, s]. */
export interface DiceTarget {
  range: BufferRange;
  type: OperandType;
  labels: boolean;
}

function diceTargetOperand(t: DiceTarget, s: ClassShape): { spec: OperandSpec; arg: OperandArg; y: string } {
  return t.labels
    ? {
      spec: { name: "ty", type: t.type, index: "map" },
      arg: { range: t.range, map: perColumn(s.c, s.s) },
      y: "select(0.0, 1.0, i32(ty[ix_ty(g)]) == i32((g / p.u_s) % p.u_c))",
    }
    : { spec: { name: "ty", type: t.type, index: "same" }, arg: { range: t.range }, y: "f32(ty[ix_ty(g)])" };
}

/** Options of the Dice kernels. */
export interface DiceOptions {
  smooth: number;
  batchDice: boolean;
  includeBackground: boolean;
}

/**
 * Records the soft Dice loss of probabilities x [n, c, s] against `target`, nnU-Net's SoftDiceLoss:
 * per (n, c) (per c with `batchDice`) I = Σ x·y·m and U = Σ (x + y)·m (= 2tp + fp + fn),
 * dc = (2I + smooth) / max(U + smooth, 1e-8), loss = −mean(dc) over the classes (without class 0
 * unless `includeBackground`) and samples. Writes `out` and per-(n, c) backward coefficients `coef`
 * (vec2 α, β: d loss/dx = gs·m·(α·y + β)).
 */
export function runSoftDice(
  gpu: Gpu,
  type: LossType,
  s: ClassShape,
  probs: BufferRange,
  target: DiceTarget,
  mask: MaskArg | undefined,
  options: DiceOptions,
  sums: BufferRange,
  out: BufferRange,
  coef: BufferRange,
  scratch: Scratch,
): void {
  const t = diceTargetOperand(target, s);
  const operands: OperandSpec[] = [{ name: "x", type, index: "same" }, t.spec];
  const args: OperandArg[] = [{ range: probs }, t.arg];
  if (mask) {
    operands.push({ name: "m", type: mask.type, index: "map" });
    args.push({ range: mask.range, map: mask.map });
  }
  runReduceMerge(gpu, scratch, { kind: "rows", rows: s.n * s.c, len: s.s }, {
    key: `dicesums:${type}:${target.type}:${target.labels}:${mask?.type ?? "-"}`,
    name: `soft_dice_sums[${type}]`,
    mode: "sum",
    operands,
    uints: ["s", "c"],
    value: `let xv = f32(x[ix_x(g)]);
    let yv = ${t.y};
    let w = ${mask ? "f32(m[ix_m(g)])" : "1.0"};
    let v = vec4<f32>(w * xv * yv, w * (xv + yv), 0.0, 0.0);`,
    merge: {
      operands: [{ name: "o", type: "vec2<f32>", write: true, index: "same" }],
      body: `let r = combine_part(g);
  o[ix_o(g)] = vec2<f32>(r.x, r.y);`,
    },
  }, { args, uints: [s.s, s.c], mergeArgs: [{ range: sums }] });
  const first = options.includeBackground ? 0 : 1;
  const terms = (s.c - first) * (options.batchDice ? 1 : s.n);
  runPointwise(
    gpu,
    {
      key: `dicefinal:${type}`,
      name: `soft_dice_final[${type}]`,
      operands: [
        { name: "sm", type: "vec2<f32>", index: "whole" },
        { name: "o", type, write: true, index: "same" },
        { name: "cf", type: "vec2<f32>", write: true, index: "whole" },
      ],
      uints: ["n", "c", "first", "batch"],
      floats: ["smooth", "inv_terms"],
      body: `var total = 0.0;
  for (var k = 0u; k < p.u_c; k++) {
    for (var i = 0u; i < p.u_n; i++) {
      var su = sm[i * p.u_c + k];
      if (p.u_batch == 1u) {
        su = vec2<f32>(0.0);
        for (var j = 0u; j < p.u_n; j++) { su += sm[j * p.u_c + k]; }
      }
      let num = 2.0 * su.x + p.f_smooth;
      let dnm = max(su.y + p.f_smooth, 1e-8);
      var ab = vec2<f32>(0.0);
      if (k >= p.u_first) {
        if (p.u_batch == 0u || i == 0u) { total += num / dnm; }
        ab = vec2<f32>(-2.0 / dnm, num / (dnm * dnm)) * p.f_inv_terms;
      }
      cf[i * p.u_c + k] = ab;
    }
  }
  o[ix_o(g)] = ${type}(-total * p.f_inv_terms);`,
    },
    1,
    [{ range: sums }, { range: out }, { range: coef }],
    [s.n, s.c, first, options.batchDice ? 1 : 0],
    [options.smooth, terms > 0 ? 1 / terms : 0],
  );
}

/** Records d loss / d probs of {@link runSoftDice}: gs·m·(α·y + β) with α, β per (n, c). */
export function runSoftDiceGrad(
  gpu: Gpu,
  type: LossType,
  s: ClassShape,
  target: DiceTarget,
  mask: MaskArg | undefined,
  coef: BufferRange,
  gs: BufferRange,
  dprobs: BufferRange,
): void {
  const t = diceTargetOperand(target, s);
  const operands: OperandSpec[] = [
    t.spec,
    { name: "cf", type: "vec2<f32>", index: "map" },
    { name: "gs", type, index: "whole" },
  ];
  const args: OperandArg[] = [t.arg, { range: coef, map: perRow(s.s) }, { range: gs }];
  if (mask) {
    operands.push({ name: "m", type: mask.type, index: "map" });
    args.push({ range: mask.range, map: mask.map });
  }
  operands.push({ name: "dx", type, write: true, index: "same" });
  args.push({ range: dprobs });
  runPointwise(
    gpu,
    {
      key: `dicegrad:${type}:${target.type}:${target.labels}:${mask?.type ?? "-"}`,
      name: `soft_dice_grad[${type}]`,
      operands,
      uints: ["s", "c"],
      body: `let ab = cf[ix_cf(g)];
  let w = ${mask ? "f32(m[ix_m(g)])" : "1.0"};
  dx[ix_dx(g)] = ${type}(f32(gs[0]) * w * (ab.x * ${t.y} + ab.y));`,
    },
    s.n * s.c * s.s,
    args,
    [s.s, s.c],
  );
}

/** [outer, r, inner]: a reduction over the middle dim of contiguous tensors. */
export interface DimShape {
  outer: number;
  r: number;
  inner: number;
}

/**
 * Records the cosine similarity of a and b along the middle dim: per column (cos, na, nb, 0) into
 * `stats` (vec4, na = max(‖a‖, eps)) and cos into `out`.
 */
export function runCosineSimilarity(
  gpu: Gpu,
  type: LossType,
  s: DimShape,
  a: BufferRange,
  b: BufferRange,
  eps: number,
  stats: BufferRange,
  out: BufferRange,
  scratch: Scratch,
): void {
  runReduceMerge(gpu, scratch, { kind: "columns", ...s }, {
    key: `cosine:${type}`,
    name: `cosine_similarity[${type}]`,
    mode: "sum",
    operands: [{ name: "a", type, index: "same" }, { name: "b", type, index: "same" }],
    value: `let av = f32(a[ix_a(g)]);
    let bv = f32(b[ix_b(g)]);
    let v = vec4<f32>(av * bv, av * av, bv * bv, 0.0);`,
    merge: {
      operands: [
        { name: "st", type: "vec4<f32>", write: true, index: "same" },
        { name: "o", type, write: true, index: "same" },
      ],
      floats: ["eps"],
      body: `let r = combine_part(g);
  let na = max(sqrt(r.y), p.f_eps);
  let nb = max(sqrt(r.z), p.f_eps);
  let cs = r.x / (na * nb);
  st[ix_st(g)] = vec4<f32>(cs, na, nb, 0.0);
  o[ix_o(g)] = ${type}(cs);`,
    },
  }, {
    args: [{ range: a }, { range: b }],
    mergeArgs: [{ range: stats }, { range: out }],
    mergeFloats: [eps],
  });
}

/** Records da, db of {@link runCosineSimilarity} (norms clamped at eps are constants). */
export function runCosineSimilarityGrad(
  gpu: Gpu,
  type: LossType,
  s: DimShape,
  a: BufferRange,
  b: BufferRange,
  eps: number,
  stats: BufferRange,
  gy: BufferRange,
  da: BufferRange | undefined,
  db: BufferRange | undefined,
): void {
  if (!da && !db) return;
  const col = perColumn(s.r, s.inner);
  const operands: OperandSpec[] = [
    { name: "a", type, index: "same" },
    { name: "b", type, index: "same" },
    { name: "st", type: "vec4<f32>", index: "map" },
    { name: "gy", type, index: "map" },
  ];
  const args: OperandArg[] = [{ range: a }, { range: b }, { range: stats, map: col }, {
    range: gy,
    map: col,
  }];
  if (da) {
    operands.push({ name: "da", type, write: true, index: "same" });
    args.push({ range: da });
  }
  if (db) {
    operands.push({ name: "db", type, write: true, index: "same" });
    args.push({ range: db });
  }
  runPointwise(
    gpu,
    {
      key: `cosinegrad:${type}:${da ? "a" : ""}${db ? "b" : ""}`,
      name: `cosine_similarity_grad[${type}]`,
      operands,
      floats: ["eps"],
      body: `let cs = st[ix_st(g)];
  let gv = f32(gy[ix_gy(g)]);
  let av = f32(a[ix_a(g)]);
  let bv = f32(b[ix_b(g)]);
  let inv = 1.0 / (cs.y * cs.z);
  ${
        da
          ? `da[ix_da(g)] = ${type}(gv * (bv * inv - select(0.0, cs.x * av / (cs.y * cs.y), cs.y > p.f_eps)));`
          : ""
      }
  ${
        db
          ? `db[ix_db(g)] = ${type}(gv * (av * inv - select(0.0, cs.x * bv / (cs.z * cs.z), cs.z > p.f_eps)));`
          : ""
      }`,
    },
    s.outer * s.r * s.inner,
    args,
    [],
    [eps],
  );
}

/** Records y = x / max(‖x‖, eps) along the middle dim; `norms` gets max(‖x‖, eps) per column (f32). */
export function runL2Normalize(
  gpu: Gpu,
  type: LossType,
  s: DimShape,
  x: BufferRange,
  eps: number,
  norms: BufferRange,
  y: BufferRange,
  scratch: Scratch,
): void {
  runReduceMerge(gpu, scratch, { kind: "columns", ...s }, {
    key: `l2norm:${type}`,
    name: `l2_normalize_norms[${type}]`,
    mode: "sum",
    operands: [{ name: "x", type, index: "same" }],
    value: `let xv = f32(x[ix_x(g)]);
    let v = vec4<f32>(xv * xv, 0.0, 0.0, 0.0);`,
    merge: {
      operands: [{ name: "nm", type: "f32", write: true, index: "same" }],
      floats: ["eps"],
      body: `nm[ix_nm(g)] = max(sqrt(combine_part(g).x), p.f_eps);`,
    },
  }, { args: [{ range: x }], mergeArgs: [{ range: norms }], mergeFloats: [eps] });
  runPointwise(
    gpu,
    {
      key: `l2normapply:${type}`,
      name: `l2_normalize[${type}]`,
      operands: [
        { name: "x", type, index: "same" },
        { name: "nm", type: "f32", index: "map" },
        { name: "y", type, write: true, index: "same" },
      ],
      body: `y[ix_y(g)] = ${type}(f32(x[ix_x(g)]) / nm[ix_nm(g)]);`,
    },
    s.outer * s.r * s.inner,
    [{ range: x }, { range: norms, map: perColumn(s.r, s.inner) }, { range: y }],
  );
}

/**
 * Records dx of {@link runL2Normalize}: (g − y·Σ(g·y)) / n per column, or g / n where the norm was
 * clamped at eps.
 */
export function runL2NormalizeGrad(
  gpu: Gpu,
  type: LossType,
  s: DimShape,
  y: BufferRange,
  norms: BufferRange,
  gy: BufferRange,
  eps: number,
  dots: BufferRange,
  dx: BufferRange,
  scratch: Scratch,
): void {
  runReduceMerge(gpu, scratch, { kind: "columns", ...s }, {
    key: `l2normgrad:${type}`,
    name: `l2_normalize_grad_dots[${type}]`,
    mode: "sum",
    operands: [{ name: "y", type, index: "same" }, { name: "gy", type, index: "same" }],
    value: `let v = vec4<f32>(f32(y[ix_y(g)]) * f32(gy[ix_gy(g)]), 0.0, 0.0, 0.0);`,
    merge: {
      operands: [{ name: "dt", type: "f32", write: true, index: "same" }],
      body: `dt[ix_dt(g)] = combine_part(g).x;`,
    },
  }, { args: [{ range: y }, { range: gy }], mergeArgs: [{ range: dots }] });
  const col = perColumn(s.r, s.inner);
  runPointwise(
    gpu,
    {
      key: `l2normgradapply:${type}`,
      name: `l2_normalize_grad[${type}]`,
      operands: [
        { name: "y", type, index: "same" },
        { name: "gy", type, index: "same" },
        { name: "nm", type: "f32", index: "map" },
        { name: "dt", type: "f32", index: "map" },
        { name: "dx", type, write: true, index: "same" },
      ],
      floats: ["eps"],
      body: `let nv = nm[ix_nm(g)];
  let proj = select(0.0, f32(y[ix_y(g)]) * dt[ix_dt(g)], nv > p.f_eps);
  dx[ix_dx(g)] = ${type}((f32(gy[ix_gy(g)]) - proj) / nv);`,
    },
    s.outer * s.r * s.inner,
    [{ range: y }, { range: gy }, { range: norms, map: col }, { range: dots, map: col }, { range: dx }],
    [],
    [eps],
  );
}

/** Records log Σ exp(x) along the middle dim (online max-rescaled sums) into `out` per column. */
export function runLogSumExp(
  gpu: Gpu,
  type: LossType,
  s: DimShape,
  x: BufferRange,
  out: BufferRange,
  scratch: Scratch,
): void {
  runReduceMerge(gpu, scratch, { kind: "columns", ...s }, {
    key: `lse:${type}`,
    name: `log_sum_exp[${type}]`,
    mode: "lse",
    operands: [{ name: "x", type, index: "same" }],
    value: `let v = vec4<f32>(f32(x[ix_x(g)]), 0.0, 0.0, 0.0);`,
    merge: {
      operands: [{ name: "o", type, write: true, index: "same" }],
      body: `let r = combine_part(g);
  o[ix_o(g)] = ${type}(r.x + log(r.y));`,
    },
  }, { args: [{ range: x }], mergeArgs: [{ range: out }] });
}

/** Records dx = g·exp(x − lse) of {@link runLogSumExp}. */
export function runLogSumExpGrad(
  gpu: Gpu,
  type: LossType,
  s: DimShape,
  x: BufferRange,
  lse: BufferRange,
  gy: BufferRange,
  dx: BufferRange,
): void {
  const col = perColumn(s.r, s.inner);
  runPointwise(
    gpu,
    {
      key: `lsegrad:${type}`,
      name: `log_sum_exp_grad[${type}]`,
      operands: [
        { name: "x", type, index: "same" },
        { name: "ls", type, index: "map" },
        { name: "gy", type, index: "map" },
        { name: "dx", type, write: true, index: "same" },
      ],
      body: `dx[ix_dx(g)] = ${type}(f32(gy[ix_gy(g)]) * exp(f32(x[ix_x(g)]) - f32(ls[ix_ls(g)])));`,
    },
    s.outer * s.r * s.inner,
    [{ range: x }, { range: lse, map: col }, { range: gy, map: col }, { range: dx }],
  );
}
