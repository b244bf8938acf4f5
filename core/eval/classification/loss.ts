/**
 * Cross-entropy with label smoothing for classification heads, as PyTorch's
 * `F.cross_entropy(logits, target, label_smoothing=ε)`: the target is (1 − ε)·one-hot + ε/K, so
 * loss = mean over the batch of −Σ_k q_k·log softmax(x)_k. Composed of differentiable ops (log-softmax,
 * product, sum), so autograd gives its gradient softmax(x) − q (over N).
 *
 * @module
 */
import { logSoftmax, mul, sum, type Tensor, tensor } from "../../tensor/mod.ts";

/** Smoothed one-hot targets [N, K] for integer labels. */
export function smoothedTargets(labels: ArrayLike<number>, classes: number, smoothing: number): Float32Array {
  if (!(smoothing >= 0 && smoothing < 1)) {
    throw new RangeError(`label smoothing ${smoothing}: expected [0, 1)`);
  }
  const q = new Float32Array(labels.length * classes).fill(smoothing / classes);
  for (let i = 0; i < labels.length; i++) {
    const l = labels[i];
    if (!Number.isInteger(l) || l < 0 || l >= classes) {
      throw new RangeError(`label ${i} = ${l}: expected a class index in [0, ${classes})`);
    }
    q[i * classes + l] += 1 - smoothing;
  }
  return q;
}

/** Mean label-smoothed cross-entropy of `logits` [N, K] against integer `labels` (length N). */
export function labelSmoothingCrossEntropy(
  logits: Tensor,
  labels: ArrayLike<number>,
  smoothing: number,
): Tensor {
  if (logits.shape.length !== 2 || logits.shape[0] !== labels.length) {
    throw new RangeError(`logits [${logits.shape}]: expected [${labels.length}, classes]`);
  }
  const [n, k] = logits.shape;
  return softTargetCrossEntropy(logits, tensor(smoothedTargets(labels, k, smoothing), [n, k]));
}

/**
 * Mean cross-entropy of `logits` [N, K] against target distributions `q` [N, K] (e.g. smoothed one-hot
 * rows from {@link smoothedTargets}, uploaded with the batch so the loss needs no host labels).
 */
export function softTargetCrossEntropy(logits: Tensor, q: Tensor): Tensor {
  if (logits.shape.length !== 2 || q.shape.join() !== logits.shape.join()) {
    throw new RangeError(`softTargetCrossEntropy: logits [${logits.shape}] and targets [${q.shape}]`);
  }
  return mul(sum(mul(logSoftmax(logits, 1), q)), -1 / logits.shape[0]);
}

/** Float64 reference of {@link labelSmoothingCrossEntropy}: logits [N, K] row-major. */
export function labelSmoothingCrossEntropyRef(
  logits: ArrayLike<number>,
  labels: ArrayLike<number>,
  classes: number,
  smoothing: number,
): number {
  const n = labels.length;
  let total = 0;
  for (let i = 0; i < n; i++) {
    let max = -Infinity;
    for (let k = 0; k < classes; k++) max = Math.max(max, logits[i * classes + k]);
    let s = 0;
    for (let k = 0; k < classes; k++) s += Math.exp(logits[i * classes + k] - max);
    const lse = max + Math.log(s);
    for (let k = 0; k < classes; k++) {
      const q = (k === labels[i] ? 1 - smoothing : 0) + smoothing / classes;
      total -= q * (logits[i * classes + k] - lse);
    }
  }
  return total / n;
}
