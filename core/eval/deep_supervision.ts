/**
 * Deep supervision as nnU-Net v2 trains it (optional in `voxssl finetune`; nnssl's fine-tuning trainers
 * run without it): the loss is a weighted sum of Dice + CE at every decoder resolution.
 *
 * - Outputs: the network's 1×1×1 seg heads at each decoder stage, full resolution first
 *   (`Network.forwardDeepSupervision`); prediction uses the full-resolution output alone.
 * - Weights (`nnUNetTrainer._build_loss`): 1/2^i for output i, the lowest resolution's set to 0, then
 *   normalised to sum 1. Outputs of weight 0 are not scored (`DeepSupervisionWrapper` skips them).
 * - Targets (batchgeneratorsv2 `DownsampleSegForDSTransform`): the label map resized to each output's
 *   size with `F.interpolate(mode="nearest-exact")`: output voxel o reads input ⌊(o + ½)·in/out⌋, which
 *   for the integer factors of a CNN's strides is o·f + ⌊f/2⌋ (factor 2: the odd voxels).
 *
 * @module
 */
import { add, mulScalar, reshape, slice, type Tensor } from "../tensor/mod.ts";
import { diceCeLoss, type DiceCeOptions, type DiceCeTerms } from "./loss.ts";

/**
 * nnU-Net's deep-supervision loss weights for `outputs` outputs (full resolution first): 1/2^i, the last
 * 0, normalised to sum 1. One output: [1].
 */
export function deepSupervisionWeights(outputs: number): number[] {
  if (!Number.isInteger(outputs) || outputs < 1) {
    throw new RangeError(`deepSupervisionWeights(): expected a positive number of outputs, got ${outputs}`);
  }
  if (outputs === 1) return [1];
  const weights = Array.from({ length: outputs }, (_, i) => 1 / 2 ** i);
  weights[outputs - 1] = 0;
  const sum = weights.reduce((a, b) => a + b, 0);
  return weights.map((w) => w / sum);
}

/**
 * Label maps [B, D, H, W] (integer) resized to `size` [d, h, w] by nearest-exact, nnU-Net's target rule
 * for deep supervision: voxel o of an axis reads voxel o·f + ⌊f/2⌋ of the input, f = input ÷ output. Each
 * factor must be a whole number (a CNN's patch is a multiple of its total stride).
 */
export function downsampleLabels(labels: Tensor, size: readonly number[]): Tensor {
  if (labels.rank !== 4 || size.length !== 3) {
    throw new RangeError(
      `downsampleLabels(): expected labels [B, D, H, W] and a size [d, h, w], got [${labels.shape}] and [${size}]`,
    );
  }
  const [B, D, H, W] = labels.shape;
  const factors = [D, H, W].map((n, i) => n / size[i]);
  if (factors.some((f) => !Number.isInteger(f) || f < 1)) {
    throw new RangeError(
      `downsampleLabels(): ${D}×${H}×${W} is not a whole multiple of ${size.join("×")}`,
    );
  }
  if (factors.every((f) => f === 1)) return labels;
  const [fd, fh, fw] = factors;
  // [B, d, fd, h, fh, w, fw]: the wanted voxel of each block is at offset ⌊f/2⌋ along its f axis
  const blocks = reshape(labels, [B, size[0], fd, size[1], fh, size[2], fw]);
  const o = factors.map((f) => Math.floor(f / 2));
  const picked = slice(
    blocks,
    [0, 0, o[0], 0, o[1], 0, o[2]],
    [B, size[0], o[0] + 1, size[1], o[1] + 1, size[2], o[2] + 1],
  );
  return reshape(picked, [B, size[0], size[1], size[2]]);
}

/**
 * Dice + CE under deep supervision: Σᵢ wᵢ · (Dice + CE)(outputᵢ, labels resized to outputᵢ), weights from
 * {@link deepSupervisionWeights}, outputs of weight 0 skipped. `ce` and `dice` are the full-resolution
 * output's terms (comparable with a run without deep supervision).
 */
export function deepSupervisionLoss(
  outputs: readonly Tensor[],
  labels: Tensor,
  options: DiceCeOptions = {},
): DiceCeTerms {
  if (outputs.length === 0) throw new RangeError("deepSupervisionLoss(): no outputs");
  const weights = deepSupervisionWeights(outputs.length);
  let full: DiceCeTerms | undefined;
  let loss: Tensor | undefined;
  outputs.forEach((logits, i) => {
    if (weights[i] === 0) return;
    const terms = diceCeLoss(logits, downsampleLabels(labels, logits.shape.slice(2)), options);
    if (i === 0) full = terms;
    const weighted = mulScalar(terms.loss, weights[i]);
    loss = loss ? add(loss, weighted) : weighted;
  });
  return { loss: loss!, ce: full!.ce, dice: full!.dice };
}
