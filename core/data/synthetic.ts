/**
 * A deterministic brain-like phantom: head and scalp, skull shell, CSF, a folded cortex (grey matter)
 * around white matter, two ventricles, random lesions, a smooth multiplicative bias field and Gaussian
 * noise, with an optional label map, anatomy (head) mask and defacing. The default `deno task pretrain`
 * trains on these, and tests build datasets from them; the same (seed, index) always gives the same
 * volume. A 64³ phantom takes a few milliseconds.
 *
 * @module
 */
import { createRng, type Rng } from "./rng.ts";
import type { Affine, Shape3 } from "./volume.ts";

/** Label values of the phantom's label map. */
export const PHANTOM_LABELS = {
  background: 0,
  scalp: 1,
  skull: 2,
  csf: 3,
  grey: 4,
  white: 5,
  ventricle: 6,
  lesion: 7,
} as const;

/** Contrasts the phantom can imitate. */
export type PhantomModality = "T1w" | "T2w" | "FLAIR";

/** Tissue intensities per modality, indexed by label (lesions get their own per-lesion value). */
const CONTRAST: Record<PhantomModality, number[]> = {
  //      bg  scalp skull csf  grey white vent lesion
  T1w: [0, 0.6, 0.1, 0.2, 0.55, 0.8, 0.2, 0.3],
  T2w: [0, 0.5, 0.05, 1.0, 0.7, 0.45, 1.0, 0.9],
  FLAIR: [0, 0.55, 0.05, 0.1, 0.65, 0.5, 0.1, 1.0],
};

/** Options of {@link generatePhantom}. */
export interface PhantomOptions {
  /** Array shape `[D, H, W]` (default 64³). */
  shape?: Shape3;
  /** Voxel size `[sd, sh, sw]` in mm for the affine (default 1 mm). */
  spacing?: Shape3;
  /** Seed of the set and index of the volume in it: the pair determines the volume (default 0). */
  seed?: number;
  /** Index of the volume in the set (default 0). */
  index?: number;
  /** Contrast of the image (default "T1w"). */
  modality?: PhantomModality;
  /** Noise standard deviation relative to white matter in T1 (default 0.03). */
  noise?: number;
  /** Bias field strength: the field spans about 1 ± this (default 0.15). */
  bias?: number;
  /** Most lesions per volume (default 4; 0 disables). */
  maxLesions?: number;
  /** Zero the face region and return its mask (default false). */
  deface?: boolean;
}

/** A generated phantom in canonical RAS orientation. */
export interface Phantom {
  /** Voxels, C-order `[D, H, W]`. */
  image: Float32Array;
  /** Array shape `[D, H, W]`. */
  shape: Shape3;
  /** Voxel size `[sd, sh, sw]` in mm. */
  spacing: Shape3;
  /** Voxel-to-world matrix: RAS axes scaled by the spacing, the volume centred on the origin. */
  affine: Affine;
  /** Tissue labels ({@link PHANTOM_LABELS}). */
  labels: Uint8Array;
  /** 1 inside the head (what is left after defacing): the anatomy/foreground mask. */
  anatomy: Uint8Array;
  /** 1 where the face was removed (all 0 unless `deface`). */
  deface: Uint8Array;
  /** The contrast the image was generated with. */
  modality: PhantomModality;
}

interface Ellipsoid {
  c: [number, number, number];
  r: [number, number, number];
}

/** Squared normalised distance of p to an ellipsoid's centre (≤ 1 inside). */
function inside(e: Ellipsoid, x: number, y: number, z: number): number {
  const a = (x - e.c[0]) / e.r[0], b = (y - e.c[1]) / e.r[1], c = (z - e.c[2]) / e.r[2];
  return a * a + b * b + c * c;
}

function randomLesions(rng: Rng, max: number): (Ellipsoid & { value: number })[] {
  const n = max > 0 ? rng.intRange(0, max) : 0;
  return Array.from({ length: n }, () => {
    const r = rng.uniform(0.03, 0.08);
    return {
      c: [rng.uniform(-0.4, 0.4), rng.uniform(-0.4, 0.4), rng.uniform(-0.2, 0.4)] as [number, number, number],
      r: [r, r * rng.uniform(0.7, 1.3), r * rng.uniform(0.7, 1.3)] as [number, number, number],
      value: rng.chance(0.5) ? rng.uniform(0.9, 1.1) : rng.uniform(0.25, 0.4),
    };
  });
}

/**
 * Generates one phantom. Coordinates are normalised to [−1, 1] over the field of view; x runs along W
 * (left→right), y along H (posterior→anterior), z along D (inferior→superior).
 */
export function generatePhantom(options: PhantomOptions = {}): Phantom {
  const shape: Shape3 = options.shape ?? [64, 64, 64];
  const spacing: Shape3 = options.spacing ?? [1, 1, 1];
  const modality = options.modality ?? "T1w";
  const rng = createRng(options.seed ?? 0, "phantom", options.index ?? 0);
  const [D, H, W] = shape;
  const head: Ellipsoid = {
    c: [rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05)],
    r: [rng.uniform(0.72, 0.85), rng.uniform(0.8, 0.92), rng.uniform(0.75, 0.88)],
  };
  const yaw = rng.uniform(-0.15, 0.15);
  const [cy, sy] = [Math.cos(yaw), Math.sin(yaw)];
  const gyri = Array.from(
    { length: 3 },
    () => ({ k: rng.intRange(5, 9), phase: rng.uniform(0, 6.283), amp: rng.uniform(0.01, 0.02) }),
  );
  const ventScale = rng.uniform(0.7, 1.4);
  const ventricles: Ellipsoid[] = [-1, 1].map((side) => ({
    c: [side * 0.11, 0.02, 0.12] as [number, number, number],
    r: [0.07 * ventScale, 0.28, 0.1 * ventScale] as [number, number, number],
  }));
  const lesions = randomLesions(rng, options.maxLesions ?? 4);
  const biasStrength = options.bias ?? 0.15;
  const bias = Array.from({ length: 6 }, () => rng.uniform(-1, 1) * biasStrength / 2);
  const noise = options.noise ?? 0.03;
  const contrast = CONTRAST[modality];
  const brightness = rng.uniform(0.8, 1.25);

  const n = D * H * W;
  const image = new Float32Array(n);
  const labels = new Uint8Array(n);
  const anatomy = new Uint8Array(n);
  const deface = new Uint8Array(n);
  const noiseRng = rng.fork("noise");
  let i = 0;
  for (let d = 0; d < D; d++) {
    const z = (2 * d + 1) / D - 1;
    for (let h = 0; h < H; h++) {
      const y0 = (2 * h + 1) / H - 1;
      for (let w = 0; w < W; w++, i++) {
        const x0 = (2 * w + 1) / W - 1;
        // head frame: yaw about the S axis
        const x = cy * x0 - sy * y0, y = sy * x0 + cy * y0;
        const r = Math.sqrt(inside(head, x, y, z));
        if (r > 1) continue;
        let label: number = PHANTOM_LABELS.scalp;
        if (r <= 0.92) label = PHANTOM_LABELS.skull;
        if (r <= 0.85) label = PHANTOM_LABELS.csf;
        let value = 0;
        if (r <= 0.8) {
          // cortex: a folded shell; its inner radius wobbles with the direction
          const theta = Math.atan2(y - head.c[1], x - head.c[0]);
          const phi = Math.atan2(z - head.c[2], Math.hypot(x - head.c[0], y - head.c[1]));
          let fold = 0;
          for (const g of gyri) fold += g.amp * Math.sin(g.k * theta + g.phase) * Math.cos(g.k * phi);
          label = r > 0.7 + 3 * fold ? PHANTOM_LABELS.grey : PHANTOM_LABELS.white;
          if (ventricles.some((v) => inside(v, x, y, z) <= 1)) label = PHANTOM_LABELS.ventricle;
          for (const l of lesions) {
            if (label === PHANTOM_LABELS.white && inside(l, x, y, z) <= 1) {
              label = PHANTOM_LABELS.lesion;
              value = l.value * (modality === "T1w" ? 0.4 : 1) * (l.value < 0.5 ? 0.8 : 1);
            }
          }
        }
        if (options.deface && r > 0.8 && y > 0.3 && z < -0.05) {
          deface[i] = 1;
          continue;
        }
        if (label !== PHANTOM_LABELS.lesion) value = contrast[label];
        const field = Math.exp(
          bias[0] * x0 + bias[1] * y0 + bias[2] * z + bias[3] * x0 * y0 + bias[4] * z * z + bias[5] * x0 * z,
        );
        image[i] = Math.max(1e-3, brightness * (value * field + noise * noiseRng.normal()));
        labels[i] = label;
        anatomy[i] = 1;
      }
    }
  }
  const affine: Affine = [
    spacing[2],
    0,
    0,
    -((W - 1) / 2) * spacing[2],
    0,
    spacing[1],
    0,
    -((H - 1) / 2) * spacing[1],
    0,
    0,
    spacing[0],
    -((D - 1) / 2) * spacing[0],
    0,
    0,
    0,
    1,
  ];
  return { image, shape, spacing, affine, labels, anatomy, deface, modality };
}
