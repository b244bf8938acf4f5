/**
 * Fine-tuning learning-rate schedules (methods.md §13), per optimizer step, with the phase boundaries as
 * fractions of the run so that a short run keeps nnssl's proportions (nnssl steps per epoch; a step here
 * is a finer grain of the same curve):
 *
 * - "warmup-poly" (nnssl's PretrainedTrainer): linear warm-up of the whole network over the first 5 %
 *   (50 of 1000 epochs), then poly (exponent 0.9) over the rest. From scratch, the same curve with the
 *   scratch learning rate.
 * - "sawtooth" (PretrainedTrainer_sawtooth, decoder first): over 2.5 % the decoder alone warms up to
 *   `lr · decoderLrFactor`, over the next 2.5 % it decays poly to ~0, then a new optimizer (moments reset)
 *   warms the whole network up over 5 % and decays poly over the rest. In the decoder phase the encoder
 *   is really frozen: no gradient and no optimizer update, its weights and moments bit-identical.
 *   `nnsslQuirk` reproduces nnssl's ResEnc variant instead, whose "decoder" parameters include the whole
 *   encoder (`decoder.encoder`): the encoder then trains at the decoder rate in that phase.
 *
 * @module
 */
import { z } from "zod";
import type { ZodSchema } from "../plugin/zod_types.ts";

/** A fine-tuning schedule (boundaries as fractions of the run's steps), as its schema parses it. */
export interface FinetuneSchedule {
  /** "warmup-poly" (default) or "sawtooth" (decoder first). */
  name: "warmup-poly" | "sawtooth";
  /** warmup-poly: warm-up fraction (default 0.05: nnssl's 50 of 1000 epochs). */
  warmup: number;
  /** Poly exponent (default 0.9). */
  exponent: number;
  /** sawtooth: decoder warm-up fraction (default 0.025). */
  decoderWarmup: number;
  /** sawtooth: decoder decay fraction (default 0.025). */
  decoderDecay: number;
  /** sawtooth: whole-network warm-up fraction (default 0.05). */
  wholeWarmup: number;
  /** sawtooth: the decoder phase's peak rate as a factor of lr (default 1; ViTs 0.01 as nnssl's Primus). */
  decoderLrFactor?: number;
  /** sawtooth: train the encoder in the decoder phase too, as nnssl's ResEnc variant does (default false). */
  nnsslQuirk: boolean;
}

/** The schedule's zod schema (unknown keys are errors), with the defaults of {@link FinetuneSchedule}. */
export const FinetuneScheduleSchema: ZodSchema<FinetuneSchedule, Partial<FinetuneSchedule>> = z.object({
  name: z.enum(["warmup-poly", "sawtooth"]).default("warmup-poly"),
  /** warmup-poly: warm-up fraction (nnssl: 50 of 1000 epochs). */
  warmup: z.number().min(0).max(1).default(0.05),
  /** Poly exponent. */
  exponent: z.number().positive().default(0.9),
  /** sawtooth: decoder warm-up fraction (nnssl: 25 of 1000 epochs). */
  decoderWarmup: z.number().min(0).max(1).default(0.025),
  /** sawtooth: decoder decay fraction (nnssl: 25 of 1000 epochs). */
  decoderDecay: z.number().min(0).max(1).default(0.025),
  /** sawtooth: whole-network warm-up fraction (nnssl: 50 of 1000 epochs). */
  wholeWarmup: z.number().min(0).max(1).default(0.05),
  /** sawtooth: the decoder phase's peak rate as a factor of lr (nnssl: 1 for ResEnc, 0.01 for Primus). */
  decoderLrFactor: z.number().positive().optional(),
  /** sawtooth: train the encoder in the decoder phase too, as nnssl's ResEnc variant does. */
  nnsslQuirk: z.boolean().default(false),
}).strict();

/** The rates of one step. */
export interface StepRates {
  /** Rate of the encoder group; null: frozen this step. */
  encoder: number | null;
  /** Rate of the decoder group (decoder, head, and the input projection when it was repeated). */
  decoder: number;
  /** The phase, for logs. */
  phase: "warmup" | "poly" | "decoder-warmup" | "decoder-decay" | "whole-warmup";
  /** True on the step where the whole-network phase starts: reset the optimizer's moments first. */
  resetOptimizer: boolean;
}

/** Step boundaries of the sawtooth: decoder warm-up ends, decoder decay ends, whole warm-up ends. */
export function sawtoothBoundaries(s: FinetuneSchedule, total: number): [number, number, number] {
  const b1 = Math.round(s.decoderWarmup * total);
  const b2 = b1 + Math.round(s.decoderDecay * total);
  const b3 = Math.min(total, b2 + Math.round(s.wholeWarmup * total));
  return [b1, b2, b3];
}

const poly = (lr: number, done: number, span: number, exponent: number) =>
  lr * Math.max(0, 1 - done / Math.max(1, span)) ** exponent;

/** The rates of step `step` (0-based) of `total`, for base rate `lr`. */
export function finetuneRates(s: FinetuneSchedule, lr: number, step: number, total: number): StepRates {
  if (s.name === "warmup-poly") {
    const w = Math.round(s.warmup * total);
    const rate = step < w ? lr * (step + 1) / w : poly(lr, step - w, total - w, s.exponent);
    return { encoder: rate, decoder: rate, phase: step < w ? "warmup" : "poly", resetOptimizer: false };
  }
  const [b1, b2, b3] = sawtoothBoundaries(s, total);
  const peak = lr * (s.decoderLrFactor ?? 1);
  if (step < b2) {
    const rate = step < b1 ? peak * (step + 1) / b1 : poly(peak, step - b1, b2 - b1, s.exponent);
    return {
      encoder: s.nnsslQuirk ? rate : null,
      decoder: rate,
      phase: step < b1 ? "decoder-warmup" : "decoder-decay",
      resetOptimizer: false,
    };
  }
  const rate = step < b3 ? lr * (step - b2 + 1) / (b3 - b2) : poly(lr, step - b3, total - b3, s.exponent);
  return {
    encoder: rate,
    decoder: rate,
    phase: step < b3 ? "whole-warmup" : "poly",
    resetOptimizer: step === b2 && b2 > 0,
  };
}
