import { assertEquals } from "../../assert.ts";
import { learningRate, ScheduleSchema } from "../../../core/optim/mod.ts";

const close = (a: number, b: number) => Math.abs(a - b) < 1e-12 * Math.max(1, Math.abs(b));

Deno.test("poly schedule follows nnU-Net's lr0·(1 − e/E)^0.9", () => {
  const s = ScheduleSchema.parse({ name: "poly" });
  assertEquals(learningRate(s, 1e-2, 0, 1000), 1e-2);
  assertEquals(close(learningRate(s, 1e-2, 500, 1000), 1e-2 * 0.5 ** 0.9), true);
  assertEquals(learningRate(s, 1e-2, 1000, 1000), 0);
});

Deno.test("warm-up then poly rises linearly, then decays over the rest", () => {
  const s = ScheduleSchema.parse({ name: "warmup-poly", warmup: 50 });
  assertEquals(close(learningRate(s, 3e-4, 0, 1000), 3e-4 / 50), true);
  assertEquals(close(learningRate(s, 3e-4, 49, 1000), 3e-4), true);
  assertEquals(close(learningRate(s, 3e-4, 50, 1000), 3e-4), true);
  assertEquals(close(learningRate(s, 3e-4, 525, 1000), 3e-4 * 0.5 ** 0.9), true);
});

Deno.test("ScheduleSchema rejects unknown fields", () => {
  assertEquals(ScheduleSchema.safeParse({ name: "poly", exponent: 0.9, warmup: 3 }).success, false);
});
