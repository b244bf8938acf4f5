/**
 * Learning-rate schedules, evaluated per epoch as nnU-Net/nnssl step their schedulers (the Trainer
 * passes the epoch index; any other progress unit works the same way).
 *
 * - poly: lr₀ · (1 − e/E)^exponent (nnU-Net's PolyLRScheduler, exponent 0.9)
 * - linear warm-up: lr₀ · (e+1)/W for e < W
 * - warm-up then poly: linear warm-up for W, then poly over the remaining E − W
 */
import { z } from "zod";

/** Schedule configuration (zod-validated). */
export const ScheduleSchema = z.discriminatedUnion("name", [
  z.object({ name: z.literal("constant") }).strict(),
  z.object({ name: z.literal("poly"), exponent: z.number().positive().default(0.9) }).strict(),
  z.object({ name: z.literal("linear-warmup"), warmup: z.number().int().positive() }).strict(),
  z.object({
    name: z.literal("warmup-poly"),
    warmup: z.number().int().positive(),
    exponent: z.number().positive().default(0.9),
  }).strict(),
]);

/**
 * A learning-rate schedule, as the schedule schema parses it; `warmup` is in progress units (epochs in
 * the Trainer).
 */
export type Schedule =
  | {
    /** The base rate throughout. */
    name: "constant";
  }
  | {
    /** lr₀ · (1 − e/E)^exponent. */
    name: "poly";
    /** Default 0.9. */
    exponent: number;
  }
  | {
    /** lr₀ · (e+1)/W for e < W, then lr₀. */
    name: "linear-warmup";
    /** W. */
    warmup: number;
  }
  | {
    /** Linear warm-up for W, then poly over the remaining E − W. */
    name: "warmup-poly";
    /** W. */
    warmup: number;
    /** Default 0.9. */
    exponent: number;
  };

// Schedule is written out for the docs; this fails to compile when it and the schema drift apart.
const _scheduleIsTheSchemaOutput: [Schedule, z.output<typeof ScheduleSchema>] extends
  [z.output<typeof ScheduleSchema>, Schedule] ? true : never = true;

/** The learning rate at progress `e` (0-based) of `total`, for base rate `lr0`. */
export function learningRate(schedule: Schedule, lr0: number, e: number, total: number): number {
  const poly = (x: number, n: number, exponent: number) => lr0 * Math.max(0, 1 - x / n) ** exponent;
  switch (schedule.name) {
    case "constant":
      return lr0;
    case "poly":
      return poly(e, total, schedule.exponent);
    case "linear-warmup":
      return e < schedule.warmup ? lr0 * (e + 1) / schedule.warmup : lr0;
    case "warmup-poly":
      return e < schedule.warmup
        ? lr0 * (e + 1) / schedule.warmup
        : poly(e - schedule.warmup, Math.max(1, total - schedule.warmup), schedule.exponent);
  }
}
