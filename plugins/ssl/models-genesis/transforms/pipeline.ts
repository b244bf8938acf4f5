/**
 * The Models Genesis pair of one sample, in nnssl's order (`generate_pair`): flip (input and target
 * alike), local pixel shuffle, non-linear intensity, painting. Each transform draws from its own fork of
 * the sample's generator (`flip`, `shuffle`, `intensity`, `paint`), so the pair is a pure function of the
 * patch and the generator's key.
 *
 * @module
 */
import type { Rng } from "@voxssl/core";
import { applyFlips, drawFlips } from "./flip.ts";
import { type IntensityCurve, nonlinearIntensity } from "./intensity.ts";
import { localPixelShuffle } from "./local_shuffle.ts";
import { paint, type PaintBox, type PaintKind } from "./painting.ts";

/** Probabilities and sizes of the transforms (nnssl's `ModelGenesisConfig` and constants by default). */
export interface GenesisOptions {
  /** Probability of each further flip, at most 3 (nnssl: 0.4). */
  flipRate: number;
  /** Probability of the local pixel shuffle (nnssl: 0.5). */
  localShuffleRate: number;
  /** Windows of the local pixel shuffle (nnssl: 10 000). */
  shuffleWindows: number;
  /** Probability of the non-linear intensity transform (nnssl: 0.9). */
  nonlinearRate: number;
  /** Probability of painting (nnssl: 0.9). */
  paintRate: number;
  /** Probability that painting is in-painting rather than out-painting (nnssl: 0.2). */
  inpaintRate: number;
  /** Samples of the Bézier intensity curve (nnssl: 100 000). */
  curveSamples: number;
}

/** nnssl's (and the original Models Genesis') probabilities and sizes. */
export const NNSSL_GENESIS: Readonly<GenesisOptions> = Object.freeze({
  flipRate: 0.4,
  localShuffleRate: 0.5,
  shuffleWindows: 10_000,
  nonlinearRate: 0.9,
  paintRate: 0.9,
  inpaintRate: 0.2,
  curveSamples: 100_000,
});

/** What was done to one sample. */
export interface GenesisTrace {
  /** The flips drawn (nnssl's axes: 0 channel, 1 X = D, 2 Y = H). */
  flips: number[];
  /** Whether the local pixel shuffle ran. */
  shuffled: boolean;
  /** The intensity curve, when the transform ran. */
  curve?: IntensityCurve;
  /** The painting, when it ran. */
  painting?: { kind: PaintKind; boxes: PaintBox[] };
}

/** A Models Genesis pair. */
export interface GenesisPair {
  /** The transformed patch (the network's input). */
  input: Float32Array;
  /** The clean patch, flipped like the input (the reconstruction target). */
  target: Float32Array;
  /** What was done. */
  trace: GenesisTrace;
}

/**
 * Makes the pair of one patch (`[D, H, W]`): `image` is flipped in place and becomes the target; the input
 * is a transformed copy. `masks` (e.g. a deface mask) are flipped alike, in place.
 */
export function genesisPair(
  image: Float32Array,
  shape: readonly [number, number, number],
  rng: Rng,
  options: Partial<GenesisOptions> = {},
  masks: readonly Uint8Array[] = [],
): GenesisPair {
  const r = { ...NNSSL_GENESIS, ...options };
  const flips = drawFlips(rng.fork("flip"), { p: r.flipRate });
  applyFlips(image, shape, flips);
  for (const mask of masks) applyFlips(mask, shape, flips);
  const trace: GenesisTrace = { flips, shuffled: false };

  const shuffleRng = rng.fork("shuffle");
  let input: Float32Array;
  if (shuffleRng.next() < r.localShuffleRate) {
    input = localPixelShuffle(image, shape, shuffleRng, { windows: r.shuffleWindows });
    trace.shuffled = true;
  } else {
    input = image.slice();
  }

  const intensityRng = rng.fork("intensity");
  if (intensityRng.next() < r.nonlinearRate) {
    trace.curve = nonlinearIntensity(input, intensityRng, { samples: r.curveSamples });
  }

  const paintRng = rng.fork("paint");
  if (paintRng.next() < r.paintRate) {
    const painted = paint(input, shape, paintRng, r.inpaintRate);
    input = painted.data;
    trace.painting = { kind: painted.kind, boxes: painted.boxes };
  }
  return { input, target: image, trace };
}
