/**
 * nnU-Net's DC_and_CE_loss in float64, the reference of the Dice + CE tests (tests/core/eval/loss_test.ts)
 * and of deep supervision's per-scale terms (deep_supervision_test.ts): softmax, CE mean over voxels, and
 * MemoryEfficientSoftDiceLoss without background, (2·I + smooth) / max(G + P + smooth, 1e-8), averaged over
 * the foreground classes and, without batch Dice, the samples.
 */

/**
 * The loss of logits `x` ([B, C, S] row-major) against labels `y` ([B, S], values 0…C−1); `batchDice`
 * pools every sample's voxels into one Dice per class; `smooth` is nnU-Net's 1e-5.
 */
export function diceCeReference(
  x: ArrayLike<number>,
  y: ArrayLike<number>,
  B: number,
  C: number,
  { batchDice = false, smooth = 1e-5 }: { batchDice?: boolean; smooth?: number } = {},
): number {
  const S = y.length / B;
  const p = new Float64Array(B * C * S);
  let ce = 0;
  for (let b = 0; b < B; b++) {
    for (let s = 0; s < S; s++) {
      let m = -Infinity;
      for (let c = 0; c < C; c++) m = Math.max(m, x[(b * C + c) * S + s]);
      let z = 0;
      for (let c = 0; c < C; c++) z += Math.exp(x[(b * C + c) * S + s] - m);
      for (let c = 0; c < C; c++) p[(b * C + c) * S + s] = Math.exp(x[(b * C + c) * S + s] - m) / z;
      ce += -(x[(b * C + y[b * S + s]) * S + s] - m - Math.log(z));
    }
  }
  ce /= B * S;
  const dc = (samples: number[], c: number) => {
    let inter = 0, pred = 0, gt = 0;
    for (const b of samples) {
      for (let s = 0; s < S; s++) {
        const onehot = y[b * S + s] === c ? 1 : 0;
        inter += p[(b * C + c) * S + s] * onehot;
        pred += p[(b * C + c) * S + s];
        gt += onehot;
      }
    }
    return (2 * inter + smooth) / Math.max(gt + pred + smooth, 1e-8);
  };
  const all = Array.from({ length: B }, (_, b) => b);
  const dcs: number[] = [];
  for (let c = 1; c < C; c++) {
    if (batchDice) dcs.push(dc(all, c));
    else for (let b = 0; b < B; b++) dcs.push(dc([b], c));
  }
  return ce - dcs.reduce((a, v) => a + v, 0) / dcs.length;
}
