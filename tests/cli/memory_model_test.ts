import { assertEquals, assertThrows } from "../assert.ts";
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
