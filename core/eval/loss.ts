/**
 * nnU-Net's segmentation loss (`DC_and_CE_loss`): cross-entropy plus soft Dice on the softmax, each
 * weighted 1. The Dice term is nnU-Net v2's `MemoryEfficientSoftDiceLoss`: background excluded
 * (`do_bg = False`), smooth 1e-5 in numerator and denominator, one Dice per sample and class or, with
 * batch Dice, per class over the whole batch; it enters negated (−mean Dice), so a perfect prediction
 * scores CE − 1. Built from the fused `crossEntropy` and `softDiceLoss` ops, which carry their own
 * float64 references and gradient checks; tests/core/eval/loss_test.ts checks the sum against a float64
 * reference of the whole formula.
 *
 * @module
 */
import { add, crossEntropy, mulScalar, softDiceLoss, softmax, type Tensor } from "../tensor/mod.ts";

/** Options of {@link diceCeLoss}. */
export interface DiceCeOptions {
  /** One Dice per class over the batch instead of per sample and class (nnU-Net plans' `batch_dice`). */
  batchDice?: boolean;
  /** Added to the Dice's numerator and denominator (default 1e-5, nnU-Net's). */
  smooth?: number;
  /** Weight of the cross-entropy (default 1). */
  weightCe?: number;
  /** Weight of the Dice term (default 1). */
  weightDice?: number;
}

/** The loss and its two terms (each a scalar tensor). */
export interface DiceCeTerms {
  /** weightCe · ce + weightDice · dice. */
  loss: Tensor;
  /** Cross-entropy (mean over voxels). */
  ce: Tensor;
  /** −mean soft Dice over foreground classes (in [−1, 0]). */
  dice: Tensor;
}

/** Dice + CE of logits [B, C, D, H, W] against integer labels [B, D, H, W] (i32 or u32, values in [0, C)). */
export function diceCeLoss(logits: Tensor, labels: Tensor, options: DiceCeOptions = {}): DiceCeTerms {
  const ce = crossEntropy(logits, labels);
  const dice = softDiceLoss(softmax(logits, 1), labels, {
    smooth: options.smooth ?? 1e-5,
    batchDice: options.batchDice ?? false,
    includeBackground: false,
  });
  const loss = add(mulScalar(ce, options.weightCe ?? 1), mulScalar(dice, options.weightDice ?? 1));
  return { loss, ce, dice };
}
