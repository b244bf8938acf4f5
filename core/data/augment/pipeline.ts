/**
 * The augmentation pipeline of one sample, in nnU-Net's order: spatial (rotation + scaling, done while
 * cropping), Gaussian noise, Gaussian blur, brightness, contrast, low resolution, inverted gamma, gamma,
 * mirroring, quarter turns. Every random decision is drawn first, in a fixed order, by {@link planAugmentation}, so a
 * plan is a pure function of the config and the sample's generator.
 *
 * @module
 */
import type { Rng } from "../rng.ts";
import type { Shape3 } from "../volume.ts";
import { gaussianBlur } from "./blur.ts";
import type { Augmentation } from "./config.ts";
import { adjustContrast, adjustGamma, scaleBrightness } from "./intensity.ts";
import { simulateLowResolution } from "./lowres.ts";
import { mirrorInPlace } from "./mirror.ts";
import { addGaussianNoise } from "./noise.ts";
import { rot90 } from "./rot90.ts";
import type { SpatialParams } from "./spatial.ts";

/** The decisions for one sample: a transform is present when it fires. */
export interface AugmentPlan {
  /** Rotation and scaling, applied while cropping. */
  spatial?: SpatialParams;
  /** Standard deviation of the added noise. */
  noiseSigma?: number;
  /** Blur σ per axis (voxels). */
  blurSigma?: [number, number, number];
  /** Brightness factor. */
  brightness?: number;
  /** Contrast factor. */
  contrast?: number;
  /** Zoom of the low-resolution simulation. */
  lowresZoom?: number;
  /** γ applied to the inverted image. */
  gammaInverted?: number;
  /** γ applied to the image. */
  gamma?: number;
  /** Axes to flip (D, H, W). */
  mirror: [boolean, boolean, boolean];
  /** Quarter turns in a plane, applied after mirroring. */
  rot90?: { axes: [number, number]; turns: number };
}

/** Draws the plan of one sample (the draw order is fixed: changing it changes every seeded run). */
export function planAugmentation(config: Augmentation, rng: Rng): AugmentPlan {
  const plan: AugmentPlan = { mirror: [false, false, false] };
  const deg = Math.PI / 180;
  const rotate = rng.chance(config.rotation.p);
  const angles: [number, number, number] = [0, 0, 0];
  if (rotate) {
    for (let a = 0; a < 3; a++) {
      angles[a] = rng.uniform(config.rotation.degrees[0], config.rotation.degrees[1]) * deg;
    }
  }
  const scale = rng.chance(config.scale.p) ? rng.uniform(config.scale.range[0], config.scale.range[1]) : 1;
  if (rotate || scale !== 1) plan.spatial = { angles, scale };
  if (rng.chance(config.noise.p)) plan.noiseSigma = rng.uniform(config.noise.sigma[0], config.noise.sigma[1]);
  if (rng.chance(config.blur.p)) {
    plan.blurSigma = [0, 1, 2].map(() => rng.uniform(config.blur.sigma[0], config.blur.sigma[1])) as [
      number,
      number,
      number,
    ];
  }
  if (rng.chance(config.brightness.p)) {
    plan.brightness = rng.uniform(config.brightness.range[0], config.brightness.range[1]);
  }
  if (rng.chance(config.contrast.p)) {
    plan.contrast = rng.uniform(config.contrast.range[0], config.contrast.range[1]);
  }
  if (rng.chance(config.lowres.p)) {
    plan.lowresZoom = rng.uniform(config.lowres.zoom[0], config.lowres.zoom[1]);
  }
  const gammaOf = (range: [number, number]) =>
    // batchgenerators: half of the draws below 1, half above, when the range straddles 1
    range[0] < 1 && rng.chance(0.5)
      ? rng.uniform(range[0], Math.min(1, range[1]))
      : rng.uniform(Math.max(range[0], 1), range[1]);
  if (rng.chance(config.gammaInverted.p)) plan.gammaInverted = gammaOf(config.gammaInverted.range);
  if (rng.chance(config.gamma.p)) plan.gamma = gammaOf(config.gamma.range);
  for (const axis of config.mirror.axes) plan.mirror[axis] = rng.chance(config.mirror.p);
  // drawn last, so that plans of configs without rot90 are what they were before it existed
  if (config.rot90.p > 0 && rng.chance(config.rot90.p)) {
    plan.rot90 = {
      axes: [config.rot90.axes[0], config.rot90.axes[1]],
      turns: rng.intRange(config.rot90.turns[0], config.rot90.turns[1]),
    };
  }
  return plan;
}

/** Milliseconds per transform of one application (for the benchmark's split). */
export type AugmentTimings = Partial<
  Record<"noise" | "blur" | "brightness" | "contrast" | "lowres" | "gamma" | "mirror" | "rot90", number>
>;

/**
 * Applies the intensity part of a plan, the mirroring and the quarter turns to `image` (mirroring and
 * turns to `masks` too, in place: `masks[i]` is replaced when turned). Returns the image (a new array when
 * blur, low resolution or a turn ran). `rng` supplies the noise values.
 */
export function applyAugmentation(
  image: Float32Array,
  shape: Shape3,
  plan: AugmentPlan,
  rng: Rng,
  masks: Uint8Array[] = [],
  timings?: AugmentTimings,
): Float32Array {
  let t = performance.now();
  const lap = (name: keyof AugmentTimings) => {
    const now = performance.now();
    if (timings) timings[name] = (timings[name] ?? 0) + now - t;
    t = now;
  };
  let out = image;
  if (plan.noiseSigma !== undefined) {
    addGaussianNoise(out, plan.noiseSigma, rng);
    lap("noise");
  }
  if (plan.blurSigma) {
    out = gaussianBlur(out, shape, plan.blurSigma);
    lap("blur");
  }
  if (plan.brightness !== undefined) {
    scaleBrightness(out, plan.brightness);
    lap("brightness");
  }
  if (plan.contrast !== undefined) {
    adjustContrast(out, plan.contrast);
    lap("contrast");
  }
  if (plan.lowresZoom !== undefined) {
    out = simulateLowResolution(out, shape, plan.lowresZoom);
    lap("lowres");
  }
  if (plan.gammaInverted !== undefined) adjustGamma(out, plan.gammaInverted, true);
  if (plan.gamma !== undefined) adjustGamma(out, plan.gamma, false);
  if (plan.gammaInverted !== undefined || plan.gamma !== undefined) lap("gamma");
  if (plan.mirror.some(Boolean)) {
    mirrorInPlace(out, shape, plan.mirror);
    for (const m of masks) mirrorInPlace(m, shape, plan.mirror);
    lap("mirror");
  }
  if (plan.rot90) {
    out = rot90(out, shape, plan.rot90.axes, plan.rot90.turns);
    for (let i = 0; i < masks.length; i++) {
      masks[i] = rot90(masks[i], shape, plan.rot90.axes, plan.rot90.turns);
    }
    lap("rot90");
  }
  return out;
}
