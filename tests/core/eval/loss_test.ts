/**
 * Dice + CE against a float64 reference of nnU-Net's formula (tests/_helpers/dice_ce_ref.ts: softmax, CE
 * mean over voxels, MemoryEfficientSoftDiceLoss without background, smooth 1e-5), and its gradient against
 * central finite differences of that reference.
 */
import { assert } from "../../assert.ts";
import { diceCeLoss } from "../../../core/eval/mod.ts";
import { backward, scope, tensor } from "../../../mod.ts";
import { assertClose, gpuTest, randomArray } from "../../helpers.ts";
import { diceCeReference } from "../../_helpers/dice_ce_ref.ts";

const B = 2, C = 3, S = 4 * 3 * 2;

/** The reference at this test's shape. */
const reference = (x: ArrayLike<number>, y: ArrayLike<number>, batchDice: boolean) =>
  diceCeReference(x, y, B, C, { batchDice });

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
