/**
 * Fused optimizer kernels over parameter arenas, and the small kernels of the GPU-side step state.
 *
 * No step needs a CPU round trip: gradient norm, clipping coefficient, loss-scale unscaling, the
 * skip-on-overflow decision, the step count (bias correction) and the dynamic loss scale live in a
 * small f32 "step state" buffer on the GPU that every update kernel reads.
 *
 * Step state layout (f32): [0] gradient coefficient (clip · 1/scale), [1] skip flag (non-finite
 * gradients), [2] completed steps, [3] gradient norm (unscaled), [4] loss scale, [5] growth tracker,
 * [6] skipped steps, [7] unused.
 *
 * Update kernels: one invocation per element of a chunk of the arena (256 per workgroup); arenas larger
 * than one binding are updated chunk by chunk (same offsets in every arena of a group).
 */
import { type BufferRange, type Gpu, Params } from "../core/gpu/mod.ts";
import { ELEMENTWISE_WORKGROUP, LINEAR_INDEX, specialize } from "./wgsl.ts";

/** Number of f32 slots of the step state. */
export const STEP_STATE_SLOTS = 8;
/** Stride (in f32) between per-chunk squared-norm partials, so each slot can be bound at an aligned offset. */
export const PARTIAL_STRIDE = 64;

const coefSource = /* wgsl */ `
struct P { partials: u32, max_norm: f32 }
@group(0) @binding(0) var<storage, read> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> state: array<f32>;
@group(1) @binding(0) var<uniform> p: P;
var<workgroup> part: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  for (var i = lid; i < p.partials; i += 256u) { s += partials[i * ${PARTIAL_STRIDE}u]; }
  part[lid] = s;
  workgroupBarrier();
  for (var stride = 128u; stride > 0u; stride /= 2u) {
    if (lid < stride) { part[lid] += part[lid + stride]; }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let inv_scale = 1.0 / state[4];
    let norm = sqrt(part[0]) * inv_scale;
    // non-finite: NaN fails every comparison; inf is above f32 max
    let finite = norm <= 3.4e38;
    var clip = 1.0;
    if (p.max_norm > 0.0 && finite) { clip = min(1.0, p.max_norm / (norm + 1e-6)); }
    state[0] = clip * inv_scale;
    state[1] = select(1.0, 0.0, finite);
    state[3] = norm;
  }
}`;

/**
 * Records: squared norm partials → step state [0], [1], [3]. `partials` holds `count` values at stride
 * {@link PARTIAL_STRIDE}. `maxNorm` ≤ 0 disables clipping.
 */
export function runGradCoefficient(
  gpu: Gpu,
  partials: BufferRange,
  count: number,
  state: BufferRange,
  maxNorm: number,
): void {
  const kernel = gpu.kernel("optim:coef", () => ({
    name: "optim_grad_coefficient",
    code: coefSource,
    storage: ["read", "read_write"],
    uniform: true,
  }));
  gpu.dispatch(kernel, [partials, state], new Params().u32(count).f32(maxNorm), 1);
}

const stepEndSource = /* wgsl */ `
struct P { dynamic: u32, growth_interval: u32, growth: f32, backoff: f32 }
@group(0) @binding(0) var<storage, read_write> state: array<f32>;
@group(1) @binding(0) var<uniform> p: P;
@compute @workgroup_size(1)
fn main() {
  if (state[1] != 0.0) {
    state[6] += 1.0;
    state[5] = 0.0;
    if (p.dynamic != 0u) { state[4] = max(state[4] * p.backoff, 1.0); }
  } else {
    state[2] += 1.0;
    state[5] += 1.0;
    if (p.dynamic != 0u && state[5] >= f32(p.growth_interval)) {
      state[4] = min(state[4] * p.growth, 16777216.0);
      state[5] = 0.0;
    }
  }
}`;

/** Loss-scale policy applied at the end of each step. */
export interface LossScalePolicy {
  dynamic: boolean;
  growthInterval: number;
  growth: number;
  backoff: number;
}

/** Records the end of a step: step count, skip count, and the dynamic loss-scale update. */
export function runStepEnd(gpu: Gpu, state: BufferRange, policy: LossScalePolicy): void {
  const kernel = gpu.kernel("optim:step_end", () => ({
    name: "optim_step_end",
    code: stepEndSource,
    storage: ["read_write"],
    uniform: true,
  }));
  const params = new Params().u32(policy.dynamic ? 1 : 0).u32(policy.growthInterval).f32(policy.growth)
    .f32(policy.backoff);
  gpu.dispatch(kernel, [state], params, 1);
}

const sgdSource = /* wgsl */ `
struct P { n: u32, nesterov: u32, lr: f32, momentum: f32, weight_decay: f32 }
@group(0) @binding(0) var<storage, read> state: array<f32>;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read_write> buf: array<f32>;
@group(1) @binding(0) var<uniform> p: P;
${LINEAR_INDEX}
@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = linear_workgroup(wid, nwg) * {{WG}}u + lid;
  if (i >= p.n || state[1] != 0.0) { return; }
  // torch.optim.SGD: d_p = g + wd·p; buf = momentum·buf + d_p; d_p = nesterov ? d_p + momentum·buf : buf
  let w = param[i];
  var d = grad[i] * state[0] + p.weight_decay * w;
  let b = p.momentum * buf[i] + d;
  buf[i] = b;
  if (p.nesterov != 0u) { d = d + p.momentum * b; } else { d = b; }
  param[i] = w - p.lr * d;
}`;

/** SGD hyperparameters of one group. */
export interface SgdHyper {
  lr: number;
  momentum: number;
  nesterov: boolean;
  weightDecay: number;
}

/** Records one SGD update of a chunk: `param`, `grad`, `momentum` are ranges of `n` f32. */
export function runSgd(
  gpu: Gpu,
  state: BufferRange,
  grad: BufferRange,
  param: BufferRange,
  momentum: BufferRange,
  n: number,
  h: SgdHyper,
): void {
  const kernel = gpu.kernel("optim:sgd", () => ({
    name: "optim_sgd",
    code: specialize(sgdSource, { WG: ELEMENTWISE_WORKGROUP }),
    storage: ["read", "read", "read_write", "read_write"],
    uniform: true,
  }));
  const params = new Params().u32(n).u32(h.nesterov ? 1 : 0).f32(h.lr).f32(h.momentum).f32(h.weightDecay);
  gpu.dispatch(kernel, [state, grad, param, momentum], params, Math.ceil(n / ELEMENTWISE_WORKGROUP));
}

const adamwSource = /* wgsl */ `
struct P {
  n: u32, lr: f32, beta1: f32, beta2: f32, one_minus_beta1: f32, one_minus_beta2: f32,
  log_beta1: f32, log_beta2: f32, eps: f32, weight_decay: f32,
}
@group(0) @binding(0) var<storage, read> state: array<f32>;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(1) @binding(0) var<uniform> p: P;
${LINEAR_INDEX}
// e^x − 1 without cancellation for small |x| (bias corrections 1 − β^t with β near 1): Taylor to x^12
// below |x| = 0.5, where the truncation error is < 1e-12.
fn expm1_accurate(x: f32) -> f32 {
  if (abs(x) >= 0.5) { return exp(x) - 1.0; }
  var term = x;
  var sum = x;
  for (var k = 2.0; k <= 12.0; k += 1.0) {
    term = term * x / k;
    sum += term;
  }
  return sum;
}
@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = linear_workgroup(wid, nwg) * {{WG}}u + lid;
  if (i >= p.n || state[1] != 0.0) { return; }
  // torch.optim.AdamW (single tensor): decoupled decay, then bias-corrected Adam step
  let step = state[2] + 1.0;
  let g = grad[i] * state[0];
  let w = param[i] * (1.0 - p.lr * p.weight_decay);
  // 1 − β and log β come from the host in float64 (PyTorch computes these scalars in double)
  let mi = p.beta1 * m[i] + p.one_minus_beta1 * g;
  let vi = p.beta2 * v[i] + p.one_minus_beta2 * g * g;
  m[i] = mi;
  v[i] = vi;
  let bias_correction1 = -expm1_accurate(step * p.log_beta1);
  let bias_correction2 = -expm1_accurate(step * p.log_beta2);
  let step_size = p.lr / bias_correction1;
  let denom = sqrt(vi) / sqrt(bias_correction2) + p.eps;
  param[i] = w - step_size * mi / denom;
}`;

/** AdamW hyperparameters of one group. */
export interface AdamwHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

/** Records one AdamW update of a chunk of `n` f32. */
export function runAdamw(
  gpu: Gpu,
  state: BufferRange,
  grad: BufferRange,
  param: BufferRange,
  m: BufferRange,
  v: BufferRange,
  n: number,
  h: AdamwHyper,
): void {
  const kernel = gpu.kernel("optim:adamw", () => ({
    name: "optim_adamw",
    code: specialize(adamwSource, { WG: ELEMENTWISE_WORKGROUP }),
    storage: ["read", "read", "read_write", "read_write", "read_write"],
    uniform: true,
  }));
  const params = new Params().u32(n).f32(h.lr).f32(h.beta1).f32(h.beta2).f32(1 - h.beta1).f32(1 - h.beta2)
    .f32(Math.log(h.beta1)).f32(Math.log(h.beta2)).f32(h.eps).f32(h.weightDecay);
  gpu.dispatch(kernel, [state, grad, param, m, v], params, Math.ceil(n / ELEMENTWISE_WORKGROUP));
}
