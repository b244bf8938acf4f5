/**
 * Dice + CE against a float64 reference of nnU-Net's formula written here (softmax, CE mean over voxels,
 * MemoryEfficientSoftDiceLoss without background, smooth 1e-5), and its gradient against central finite
 * differences of that reference.
 */
import { assert } from "../../assert.ts";
import { diceCeLoss } from "../../../core/eval/mod.ts";
import { backward, scope, tensor } from "../../../mod.ts";
import { assertClose, gpuTest, randomArray } from "../../helpers.ts";

const B = 2, C = 3, S = 4 * 3 * 2;

/** nnU-Net's DC_and_CE_loss in float64 (logits [B, C, S] row-major, labels [B, S]). */
function reference(x: ArrayLike<number>, y: ArrayLike<number>, batchDice: boolean, smooth = 1e-5): number {
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
  const dcs: number[] = [];
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
  for (let c = 1; c < C; c++) {
    if (batchDice) dcs.push(dc([0, 1], c));
    else for (let b = 0; b < B; b++) dcs.push(dc([b], c));
  }
  return ce - dcs.reduce((a, v) => a + v, 0) / dcs.length;
}

for (const batchDice of [false, true]) {
  gpuTest(
    `Dice + CE (batchDice ${batchDice}) matches a float64 reference, value and finite-difference gradient`,
    async () => {
      const x = randomArray(B * C * S, batchDice ? 11 : 12, -2, 2);
      // sample 1 has no voxel of class 2: the smooth terms decide its Dice (≈ 0 for a non-empty prediction)
      const y = Array.from({ length: B * S }, (_, i) => (i < S ? i % C : i % 2));
      assert(y.slice(0, S).includes(2) && !y.slice(S).includes(2));
      const logits = tensor(x, [B, C, 4, 3, 2], { requiresGrad: true });
      const loss = scope(() => {
        const labels = tensor(y, [B, 4, 3, 2], { dtype: "i32" });
        const { loss } = diceCeLoss(logits, labels, { batchDice });
        backward(loss);
        return loss;
      });
      const value = await loss.item(), grad = await logits.grad!.toArray();
      loss.dispose();
      logits.dispose();
      const expected = reference(x, y, batchDice);
      assertClose([value], [expected], { rtol: 1e-5, atol: 1e-6, label: "loss" });
      const h = 1e-5;
      const fd = Array.from({ length: x.length }, (_, i) => {
        const plus = Float64Array.from(x), minus = Float64Array.from(x);
        plus[i] += h;
        minus[i] -= h;
        return (reference(plus, y, batchDice) - reference(minus, y, batchDice)) / (2 * h);
      });
      assertClose(grad, fd, { rtol: 1e-3, atol: 2e-6, label: "d loss / d logits" });
    },
  );
}
