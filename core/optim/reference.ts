/**
 * CPU reference (float64) of the fused optimizers, written as torch.optim's update formulas read, one
 * parameter tensor at a time. Tests run both over several steps and compare.
 */
import type { OptimizerConfig } from "./optimizer.ts";

/** Host-side optimizer state for the reference. */
export interface RefOptimizerState {
  step: number;
  moments: Float64Array[][]; // per parameter: [buf] or [m, v]
}

/** torch.nn.utils.clip_grad_norm_'s coefficient: min(1, max / (‖g‖ + 1e-6)). */
export function clipCoefficient(
  grads: readonly Float64Array[],
  maxNorm: number,
): { norm: number; coef: number } {
  let s = 0;
  for (const g of grads) for (const v of g) s += v * v;
  const norm = Math.sqrt(s);
  return { norm, coef: maxNorm > 0 ? Math.min(1, maxNorm / (norm + 1e-6)) : 1 };
}

/** One reference step in place. `weightDecay[i]` overrides the config per parameter. */
export function referenceStep(
  config: OptimizerConfig,
  params: Float64Array[],
  grads: Float64Array[],
  state: RefOptimizerState,
  lr: number,
  { maxGradNorm = 0, weightDecay = [] as (number | undefined)[] } = {},
): void {
  const { coef } = clipCoefficient(grads, maxGradNorm);
  state.step++;
  params.forEach((p, i) => {
    const wd = weightDecay[i] ?? config.weightDecay;
    state.moments[i] ??= config.name === "sgd"
      ? [new Float64Array(p.length)]
      : [new Float64Array(p.length), new Float64Array(p.length)];
    const [a, b] = state.moments[i];
    for (let j = 0; j < p.length; j++) {
      const g = grads[i][j] * coef;
      if (config.name === "sgd") {
        let d = g + wd * p[j];
        a[j] = config.momentum * a[j] + d;
        d = config.nesterov ? d + config.momentum * a[j] : a[j];
        p[j] -= lr * d;
      } else {
        const [b1, b2] = config.betas;
        p[j] *= 1 - lr * wd;
        a[j] = b1 * a[j] + (1 - b1) * g;
        b[j] = b2 * b[j] + (1 - b2) * g * g;
        const stepSize = lr / (1 - b1 ** state.step);
        const denom = Math.sqrt(b[j]) / Math.sqrt(1 - b2 ** state.step) + config.eps;
        p[j] -= stepSize * a[j] / denom;
      }
    }
  });
}
