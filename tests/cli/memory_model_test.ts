import { assert, assertEquals, assertThrows } from "../assert.ts";
import { gpuTest } from "../helpers.ts";
import { attentionBackwardPlan } from "../../kernels/mod.ts";
import { fitMemoryModel, type MemoryMeasurement, predictMemory } from "../../bench/memory_model.ts";

// Two steps made by hand from R = 1000 B resident (10 parameters, + 2 B per added parameter), F = 500 B
// fixed, c = 3 B per voxel (peak) and 5 B per voxel (reserved, fixed part 700 B).
const step = (side: number, batch: number, parameters: number): MemoryMeasurement => {
  const resting = 1000 + 2 * (parameters - 10);
  const voxels = batch * side ** 3;
  return {
    arch: "hand",
    side,
    batch,
    precision: "f32",
    parameters,
    resting,
    peak: resting + 500 + 3 * voxels,
    reserved: resting + 700 + 5 * voxels,
  };
};

Deno.test("memory model: the fit recovers hand-made R, F and c and predicts a third size and f16 activations", () => {
  const model = fitMemoryModel(step(4, 2, 10), step(8, 2, 12));
  assertEquals(model.resident, 1000);
  assertEquals(model.residentPerParameter, 2);
  assertEquals(model.fixed, { peak: 500, reserved: 700 });
  assertEquals(model.perVoxel, { peak: 3, reserved: 5 });
  // 16³ × 3 samples, 20 parameters: 1000 + 2·10 + 500 + 3·12288
  assertEquals(predictMemory(model, 16, 3, 20), {
    peak: 1020 + 500 + 3 * 12288,
    reserved: 1020 + 700 + 5 * 12288,
  });
  // f16 activations: half the per-voxel bytes, plus 64 B of f16 weight copies held whatever the size
  assertEquals(predictMemory(model, 16, 3, 20, 2, 64).peak, 1020 + 64 + 500 + 1.5 * 12288);
  assertThrows(() => fitMemoryModel(step(4, 2, 10), step(4, 2, 10)), RangeError, "different sizes");
});

gpuTest(
  "memory model: the attention backward's scratch is taken out of the fit and planned at other sizes",
  (gpu) => {
    // a ViT-like step: 2 heads per sample, one token per 8 voxels, head dim 16; its dQ scratch on top
    const vit = (side: number, batch: number): MemoryMeasurement => {
      const m = step(side, batch, 10);
      const tokens = side ** 3 / 8;
      const shape = { heads: 2 * batch, lq: tokens, lk: tokens, headDim: 16, scale: 0.25, causal: false };
      const scratch = attentionBackwardPlan(gpu, shape).dqPartials * 4;
      return {
        ...m,
        peak: m.peak + scratch,
        reserved: m.reserved + scratch,
        attention: [shape],
        attentionScratch: scratch,
      };
    };
    const model = fitMemoryModel(vit(16, 2), vit(32, 2));
    // the linear part is what it was without attention
    assertEquals(model.fixed, { peak: 500, reserved: 700 });
    assertEquals(model.perVoxel, { peak: 3, reserved: 5 });
    // 64³, batch 3: 32768 tokens, 6 heads; the planner's scratch (256 key blocks, capped) added, and more than
    // a linear extrapolation of the fit sizes' scratch would say
    const big = vit(64, 3);
    assertEquals(predictMemory(model, 64, 3, 10, 4, 0, gpu), { peak: big.peak, reserved: big.reserved });
    assertEquals(
      predictMemory(model, 64, 3, 10).peak,
      big.peak - big.attentionScratch!,
      "without a device: no scratch",
    );
    assert(big.attentionScratch! > 0);
  },
);
