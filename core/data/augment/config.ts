/**
 * Augmentation configuration: one entry per transform, each with its probability `p` (per sample; for
 * mirroring, per axis) and its parameter range; presets give nnssl's and nnU-Net's settings, and a
 * config may start from a preset and override single transforms. Validated with zod.
 *
 * @module
 */
import { z } from "zod";

const probability = z.number().min(0).max(1);
const range = z.tuple([z.number(), z.number()]).refine(([lo, hi]) => lo <= hi, "a range is [low, high]");

/** The full, resolved augmentation config. */
export const augmentationSchema = z.object({
  /** Rotation about each axis by an angle drawn from `degrees`. */
  rotation: z.object({ p: probability, degrees: range }),
  /** Coordinate scale (batchgenerators' convention: < 1 zooms in). */
  scale: z.object({ p: probability, range }),
  /** Flip each listed axis (0 = D, 1 = H, 2 = W) with probability p. */
  mirror: z.object({ p: probability, axes: z.array(z.number().int().min(0).max(2)) }),
  /** Additive Gaussian noise, σ drawn from `sigma`. */
  noise: z.object({ p: probability, sigma: range }),
  /** Gaussian blur, σ (voxels) drawn per axis from `sigma`. */
  blur: z.object({ p: probability, sigma: range }),
  /** Multiplicative brightness. */
  brightness: z.object({ p: probability, range }),
  /** Contrast around the mean, range preserved. */
  contrast: z.object({ p: probability, range }),
  /** Low-resolution simulation, zoom drawn from `zoom`. */
  lowres: z.object({ p: probability, zoom: range }),
  /** Gamma on the inverted image (statistics retained). */
  gammaInverted: z.object({ p: probability, range }),
  /** Gamma (statistics retained). */
  gamma: z.object({ p: probability, range }),
  /**
   * Quarter-turn rotation in the plane of `axes` (`np.rot90`), by a number of turns drawn uniformly from
   * `turns` (inclusive); odd turns need equal sizes on both axes. Applied last, to masks too.
   */
  rot90: z.object({
    p: probability,
    axes: z.tuple([z.number().int().min(0).max(2), z.number().int().min(0).max(2)])
      .refine(([a, b]) => a !== b, "two different axes"),
    turns: z.tuple([z.number().int().min(1).max(3), z.number().int().min(1).max(3)])
      .refine(([lo, hi]) => lo <= hi, "a range is [low, high]"),
  }),
});

/**
 * A resolved augmentation config: per transform, its probability `p` (per sample; for mirroring, per
 * axis) and its parameters; a range is [low, high], and a value is drawn uniformly from it.
 */
export interface Augmentation {
  /** Rotation about each axis by an angle drawn from `degrees`. */
  rotation: { p: number; degrees: [number, number] };
  /** Coordinate scale (batchgenerators' convention: < 1 zooms in). */
  scale: { p: number; range: [number, number] };
  /** Flip each listed axis (0 = D, 1 = H, 2 = W) with probability p. */
  mirror: { p: number; axes: number[] };
  /** Additive Gaussian noise, σ drawn from `sigma`. */
  noise: { p: number; sigma: [number, number] };
  /** Gaussian blur, σ (voxels) drawn per axis from `sigma`. */
  blur: { p: number; sigma: [number, number] };
  /** Multiplicative brightness. */
  brightness: { p: number; range: [number, number] };
  /** Contrast around the mean, range preserved. */
  contrast: { p: number; range: [number, number] };
  /** Low-resolution simulation, zoom drawn from `zoom`. */
  lowres: { p: number; zoom: [number, number] };
  /** Gamma on the inverted image (statistics retained). */
  gammaInverted: { p: number; range: [number, number] };
  /** Gamma (statistics retained). */
  gamma: { p: number; range: [number, number] };
  /**
   * Quarter-turn rotation in the plane of `axes`, by a number of turns drawn uniformly from `turns`
   * (inclusive). Applied last, to masks too.
   */
  rot90: { p: number; axes: [number, number]; turns: [number, number] };
}

// Augmentation is written out for the docs; this fails to compile when it and the schema drift apart.
const _augmentationIsTheSchemaOutput: [Augmentation, z.output<typeof augmentationSchema>] extends
  [z.output<typeof augmentationSchema>, Augmentation] ? true : never = true;

const OFF: Augmentation = {
  rotation: { p: 0, degrees: [-30, 30] },
  scale: { p: 0, range: [0.7, 1.4] },
  mirror: { p: 0, axes: [0, 1, 2] },
  noise: { p: 0, sigma: [0, 0.1] },
  blur: { p: 0, sigma: [0.5, 1] },
  brightness: { p: 0, range: [0.75, 1.25] },
  contrast: { p: 0, range: [0.75, 1.25] },
  lowres: { p: 0, zoom: [0.5, 1] },
  gammaInverted: { p: 0, range: [0.7, 1.5] },
  gamma: { p: 0, range: [0.7, 1.5] },
  rot90: { p: 0, axes: [0, 1], turns: [1, 3] },
};

/** Name of a preset: "none" (every transform off), "nnssl-mae" or "nnunet". */
export type AugmentationPreset = "none" | "nnssl-mae" | "nnunet";

/** Named starting points. */
export const AUGMENTATION_PRESETS: Record<AugmentationPreset, Augmentation> = {
  none: OFF,
  /** nnssl's MAE pretraining: rotation ±30° (p 0.2), scale 0.7–1.4 (p 0.2), mirror on all axes. */
  "nnssl-mae": {
    ...OFF,
    rotation: { p: 0.2, degrees: [-30, 30] },
    scale: { p: 0.2, range: [0.7, 1.4] },
    mirror: { p: 0.5, axes: [0, 1, 2] },
  },
  /** nnU-Net's default training augmentation. */
  nnunet: {
    rotation: { p: 0.2, degrees: [-30, 30] },
    scale: { p: 0.2, range: [0.7, 1.4] },
    mirror: { p: 0.5, axes: [0, 1, 2] },
    noise: { p: 0.1, sigma: [0, 0.1] },
    blur: { p: 0.2, sigma: [0.5, 1] },
    brightness: { p: 0.15, range: [0.75, 1.25] },
    contrast: { p: 0.15, range: [0.75, 1.25] },
    lowres: { p: 0.25, zoom: [0.5, 1] },
    gammaInverted: { p: 0.1, range: [0.7, 1.5] },
    gamma: { p: 0.3, range: [0.7, 1.5] },
    rot90: { p: 0, axes: [0, 1], turns: [1, 3] },
  },
};

/** What callers pass: a preset name, or a preset plus per-transform overrides. */
export type AugmentationInput =
  | AugmentationPreset
  | ({ preset?: AugmentationPreset } & { [K in keyof Augmentation]?: Partial<Augmentation[K]> });

/** Resolves and validates an augmentation input (throws with the offending key on a bad value). */
export function resolveAugmentation(input: AugmentationInput = "none"): Augmentation {
  if (typeof input === "string") {
    const preset = AUGMENTATION_PRESETS[input];
    if (!preset) {
      throw new Error(
        `unknown augmentation preset "${input}" (known: ${Object.keys(AUGMENTATION_PRESETS).join(", ")})`,
      );
    }
    return structuredClone(preset);
  }
  const { preset = "none", ...overrides } = input;
  const base = resolveAugmentation(preset);
  const merged: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(overrides)) {
    if (!(key in base)) {
      throw new Error(`unknown augmentation "${key}" (known: ${Object.keys(base).join(", ")})`);
    }
    merged[key] = { ...base[key as keyof Augmentation], ...value };
  }
  const parsed = augmentationSchema.safeParse(merged);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`augmentation.${issue.path.join(".")}: ${issue.message}`);
  }
  return parsed.data;
}
