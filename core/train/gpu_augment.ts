/**
 * Augmentation on the GPU: a batch of raw crops (core/data/sample.ts: each the source region its
 * patch's spatial transform reads, with the sample's augmentation plan drawn on the host) becomes the
 * augmented batch, in the CPU pipeline's order (core/data/augment/pipeline.ts): spatial (rotation +
 * scaling + crop in one resampling: linear or cubic for the image, nearest for masks), Gaussian noise,
 * blur, brightness, contrast, low resolution, inverted gamma, gamma, mirroring. The per-voxel noise comes
 * from the in-kernel Philox keyed by (seed, step, sample), so a batch is a pure function of the crops,
 * plans and those keys: reproducible, and the same after a resume. Quarter turns follow mirroring in the
 * same kernel. A method's own crops (views), already cut, get the same chain in place
 * ({@link augmentViewsOnGpu}).
 *
 * Binding limits: when a batch tensor is larger than `maxStorageBufferBindingSize`, each launch binds only
 * the launch planner's window over its sample's part of it (kernels/launch_plan.ts `windowOf`); a source region
 * larger than one binding is resampled in slabs of D planes, each uploading only the part of the region
 * its planes read. Only one sample's patch (plus the alignment) must fit a binding.
 *
 * @module
 */
import { sourceBox, spatialMatrix } from "../data/augment/spatial.ts";
import { resampleTaps } from "../data/resample.ts";
import type { AugmentPlan } from "../data/augment/pipeline.ts";
import type { RawCrop } from "../data/sample.ts";
import { extractBox, type Shape3 } from "../data/volume.ts";
import { BindingTooLargeError, type BufferRange, type Gpu } from "../gpu/mod.ts";
import { empty, type Tensor, tensor } from "../tensor/mod.ts";
import {
  type NoiseKey,
  packLowresTaps,
  runAugmentBlurAxis,
  runAugmentIntensity,
  runAugmentLowresAxis,
  runAugmentMirror,
  runAugmentNoise,
  runAugmentSpatial,
  runAugmentStats,
  statsWorkWords,
} from "../../kernels/augment.ts";
import { windowOf } from "../../kernels/launch_plan.ts";

/** How a batch is augmented on the GPU. */
export interface GpuAugmentOptions {
  /** Patch size `[D, H, W]`. */
  patch: Shape3;
  /** Image interpolation of the spatial transform. */
  interpolation: "linear" | "cubic";
  /** Values outside the source region. */
  padding: "zero" | "border";
  /** Run seed: the Philox key of the noise. */
  seed: number;
  /** Training step: a Philox counter word of the noise. */
  step: number;
  /** Global index of the batch's first sample (a data-parallel rank's offset); default 0. */
  firstSample?: number;
}

/** The augmented batch: the image `[B, 1, D, H, W]` (f32) and one u8 tensor `[B, 1, D, H, W]` per mask. */
export interface GpuAugmentedBatch {
  image: Tensor;
  masks: Tensor[];
}

const IDENTITY = { angles: [0, 0, 0] as [number, number, number], scale: 1 };
const NO_FLIP = [false, false, false];

/** Low-resolution taps per axis: nearest to the small grid composed with cubic back to full size. */
function lowresTable(shape: Shape3, zoom: number): Uint32Array | undefined {
  const small = shape.map((n) => Math.max(1, Math.round(n * zoom)));
  if (small.every((n, i) => n === shape[i])) return undefined;
  return packLowresTaps([0, 1, 2].map((a) => {
    const down = resampleTaps(shape[a], small[a], "nearest");
    const up = resampleTaps(small[a], shape[a], "cubic");
    return { index: Int32Array.from(up.index, (i) => down.index[i]), weight: up.weight };
  }));
}

/** Whether the plan's last step moves voxels (mirroring or quarter turns). */
function reorients(plan: AugmentPlan): boolean {
  return plan.mirror.some(Boolean) || (plan.rot90 !== undefined && plan.rot90.turns % 4 !== 0);
}

/** Where one sample lives: a binding and the element offset of the sample in it. */
interface Slot {
  binding: BufferRange;
  base: number;
}

/**
 * The slot of `count` elements at element `first` of `t`: the whole tensor when it fits one binding,
 * otherwise the launch planner's window over those elements (kernels/launch_plan.ts).
 * @throws BindingTooLargeError when the window does not fit a binding either.
 */
function slotOf(gpu: Gpu, t: Tensor, first: number, count: number): Slot {
  const whole = t.binding;
  const limit = gpu.limits.maxStorageBufferBindingSize;
  if (whole.size <= limit) return { binding: whole, base: first };
  const w = windowOf(gpu.limits, whole, t.dtype === "u8" ? 1 : 4, first, first + count);
  if (w.binding.size > limit) {
    throw new BindingTooLargeError(
      `a sample of ${count} elements needs a binding of ${w.binding.size} bytes, above the adapter's ` +
        `maxStorageBufferBindingSize (${limit})`,
    );
  }
  return { binding: w.binding, base: first - w.first };
}

/** Buffers one chain run borrows: two scratch tensors of at least the sample's voxels and a stats buffer. */
interface ChainResources {
  scratch: Slot[];
  work: Tensor;
  /** Tensors made on the way, disposed by the caller after the work is recorded. */
  temporaries: Tensor[];
}

const STAT_SLOTS = 2;

/**
 * Records everything of `plan` after the spatial transform on one `[D, H, W]` sample that lives in `home`
 * at element `homeBase` and ends there: noise, blur, brightness, contrast, low resolution, inverted gamma,
 * gamma, then mirroring and quarter turns. `key` gives the Philox noise its counter words.
 */
function runChain(
  gpu: Gpu,
  res: ChainResources,
  home: Slot,
  shape: Shape3,
  plan: AugmentPlan,
  key: NoiseKey,
): void {
  const { scratch, work } = res;
  const n = shape[0] * shape[1] * shape[2];
  // the sample lives in `cur` at `base`; out-of-place steps move it between home and the scratches
  let cur = home, base = home.base;
  const moveTo = (run: (dst: Slot, dstBase: number) => void) => {
    const dst = cur === scratch[0] ? scratch[1] : scratch[0];
    run(dst, dst.base);
    cur = dst;
    base = dst.base;
  };
  if (plan.noiseSigma !== undefined && plan.noiseSigma !== 0) {
    runAugmentNoise(gpu, cur.binding, base, n, plan.noiseSigma, key);
  }
  if (plan.blurSigma) {
    plan.blurSigma.forEach((sigma, axis) => {
      if (sigma > 0) {
        moveTo((dst, at) => runAugmentBlurAxis(gpu, cur.binding, dst.binding, shape, axis, sigma, base, at));
      }
    });
  }
  if (plan.brightness !== undefined) {
    runAugmentIntensity(gpu, cur.binding, work.binding, base, n, {
      op: "brightness",
      factor: plan.brightness,
    });
  }
  if (plan.contrast !== undefined) {
    runAugmentStats(gpu, cur.binding, work.binding, base, n, 0, STAT_SLOTS);
    runAugmentIntensity(gpu, cur.binding, work.binding, base, n, {
      op: "contrast",
      factor: plan.contrast,
      slot: 0,
    });
  }
  if (plan.lowresZoom !== undefined) {
    const words = lowresTable(shape, plan.lowresZoom);
    if (words) {
      const table = tensor(words, [words.length], { gpu, dtype: "u32" });
      res.temporaries.push(table);
      for (let axis = 0; axis < 3; axis++) {
        moveTo((dst, at) =>
          runAugmentLowresAxis(gpu, cur.binding, table.binding, dst.binding, shape, axis, base, at, 0)
        );
      }
    }
  }
  for (const [gamma, invert] of [[plan.gammaInverted, true], [plan.gamma, false]] as const) {
    if (gamma === undefined) continue;
    runAugmentStats(gpu, cur.binding, work.binding, base, n, 0, STAT_SLOTS);
    runAugmentIntensity(gpu, cur.binding, work.binding, base, n, { op: "gammaPow", gamma, invert, slot: 0 });
    runAugmentStats(gpu, cur.binding, work.binding, base, n, 1, STAT_SLOTS);
    runAugmentIntensity(gpu, cur.binding, work.binding, base, n, {
      op: "gammaRestore",
      invert,
      slotBefore: 0,
      slotAfter: 1,
    });
  }
  // mirroring and turns (a plain copy when nothing moves) bring the sample home
  if (cur !== home || reorients(plan)) {
    if (cur === home) {
      moveTo((dst, at) => runAugmentMirror(gpu, "image", cur.binding, dst.binding, shape, NO_FLIP, base, at));
    }
    runAugmentMirror(
      gpu,
      "image",
      cur.binding,
      home.binding,
      shape,
      plan.mirror,
      base,
      home.base,
      plan.rot90,
    );
  }
}

/** A slab of the patch (D planes `[rows[0], rows[1])`) and the part of the source region it reads. */
interface RegionSlab {
  rows: [number, number];
  start: Shape3;
  size: Shape3;
}

/**
 * Splits the resampling of a crop so that each slab's part of the region (f32) fits one binding: the
 * whole region when it does, otherwise slabs of halved plane counts until every slab's source box does.
 */
function regionSlabs(gpu: Gpu, crop: RawCrop, matrix: number[], patch: Shape3, margin: number): RegionSlab[] {
  const limit = gpu.limits.maxStorageBufferBindingSize;
  const bytes = (s: Shape3) => Math.max(16, s[0] * s[1] * s[2] * 4);
  if (bytes(crop.shape) <= limit) return [{ rows: [0, patch[0]], start: [0, 0, 0], size: crop.shape }];
  const slabOf = (first: number, end: number): RegionSlab => {
    // the slab's centre in the source: the patch centre moved along the matrix's first column
    const shift = (first + end - 1) / 2 - (patch[0] - 1) / 2;
    const centre = crop.centre.map((c, i) => c + matrix[3 * i] * shift);
    const box = sourceBox(matrix, [end - first, patch[1], patch[2]], centre, margin);
    const lo = box.start.map((v, i) => Math.min(Math.max(0, v), crop.shape[i] - 1));
    const hi = box.start.map((v, i) => Math.min(crop.shape[i], v + box.size[i]));
    return {
      rows: [first, end],
      start: lo as Shape3,
      size: hi.map((h, i) => Math.max(1, h - lo[i])) as Shape3,
    };
  };
  // a slab of a mask writes whole u32 words: its planes hold a multiple of 4 voxels
  const plane = patch[1] * patch[2];
  const step = plane % 4 === 0 ? 1 : plane % 2 === 0 ? 2 : 4;
  const whole = (planes: number) => Math.min(patch[0], Math.ceil(planes / step) * step);
  for (let planes = whole(Math.ceil(patch[0] / 2));; planes = whole(Math.ceil(planes / 2))) {
    const slabs: RegionSlab[] = [];
    for (let first = 0; first < patch[0]; first += planes) {
      slabs.push(slabOf(first, Math.min(patch[0], first + planes)));
    }
    if (slabs.every((s) => bytes(s.size) <= limit)) return slabs;
    if (planes <= step) {
      throw new RangeError(
        `${planes} plane(s) of a [${patch}] patch read ${
          Math.max(...slabs.map((s) => bytes(s.size)))
        } bytes of its ` +
          `source region, above the adapter's maxStorageBufferBindingSize (${limit})`,
      );
    }
  }
}

/**
 * Records the augmentation of `crops` into a new batch on `gpu` (nothing is read back). The caller owns
 * the returned tensors.
 */
export function augmentBatchOnGpu(
  gpu: Gpu,
  crops: readonly RawCrop[],
  options: GpuAugmentOptions,
): GpuAugmentedBatch {
  const { patch } = options;
  const n = patch[0] * patch[1] * patch[2];
  const B = crops.length;
  const maskCount = crops[0]?.masks.length ?? 0;
  for (const [b, c] of crops.entries()) {
    if (c.masks.length !== maskCount) {
      throw new RangeError(`sample ${b} has ${c.masks.length} masks, others ${maskCount}`);
    }
    const size = c.shape[0] * c.shape[1] * c.shape[2];
    if (c.image.length !== size || c.masks.some((m) => m.length !== size)) {
      throw new RangeError(`sample ${b}: region arrays do not match its shape [${c.shape}]`);
    }
  }
  if (maskCount > 0 && n % 4 !== 0) {
    throw new RangeError(`GPU augmentation of masks needs a patch of a multiple of 4 voxels, got [${patch}]`);
  }
  const image = empty([B, 1, ...patch], { gpu });
  const masks = Array.from({ length: maskCount }, () => empty([B, 1, ...patch], { gpu, dtype: "u8" }));
  const scratchTensors = [empty([n], { gpu }), empty([n], { gpu })];
  const scratch = scratchTensors.map((t) => ({ binding: t.binding, base: 0 }));
  const maskScratch = maskCount > 0 ? empty([n], { gpu, dtype: "u8" }) : undefined;
  const work = empty([statsWorkWords(STAT_SLOTS)], { gpu });
  const temporaries: Tensor[] = [];
  const upload = (data: Float32Array | Uint8Array) => {
    const t = data instanceof Float32Array
      ? tensor(data, [data.length], { gpu })
      : tensor(data, [data.length], { gpu, dtype: "u8" });
    temporaries.push(t);
    return t;
  };
  try {
    for (const [b, crop] of crops.entries()) {
      const { plan } = crop;
      const matrix = spatialMatrix(plan.spatial ?? IDENTITY);
      const out = slotOf(gpu, image, b * n, n);
      // without a spatial transform a raw crop is the patch box itself: a copy, no resampling
      const plain = !plan.spatial && crop.shape.every((v, i) => v === patch[i]) &&
        crop.centre.every((c, i) => c === (patch[i] - 1) / 2);
      const slabs = plain
        ? []
        : regionSlabs(gpu, crop, matrix, patch, options.interpolation === "cubic" ? 2 : 1);
      const resample = (kind: "image" | "mask", data: Float32Array | Uint8Array, to: Slot) => {
        for (const slab of slabs) {
          const whole = slab.size.every((v, i) => v === crop.shape[i]);
          const src = upload(whole ? data : extractBox(data, crop.shape, slab.start, slab.size));
          const interp = kind === "image" ? options.interpolation : "nearest";
          runAugmentSpatial(gpu, kind, interp, options.padding, src.binding, to.binding, {
            matrix,
            centre: crop.centre.map((c, i) => c - slab.start[i]),
            srcShape: slab.size,
            srcBase: 0,
            patch,
            dstBase: to.base,
            rows: slab.rows,
          });
        }
      };
      if (plain) {
        runAugmentMirror(gpu, "image", upload(crop.image).binding, out.binding, patch, NO_FLIP, 0, out.base);
      } else resample("image", crop.image, out);
      runChain(gpu, { scratch, work, temporaries }, out, patch, plan, {
        seed: options.seed,
        step: options.step,
        sample: (options.firstSample ?? 0) + b,
      });
      for (const [k, mask] of crop.masks.entries()) {
        const home = slotOf(gpu, masks[k], b * n, n);
        if (plain) {
          const src = upload(mask);
          runAugmentMirror(
            gpu,
            "mask",
            src.binding,
            home.binding,
            patch,
            plan.mirror,
            0,
            home.base,
            plan.rot90,
          );
          continue;
        }
        const flips = reorients(plan);
        resample("mask", mask, flips ? { binding: maskScratch!.binding, base: 0 } : home);
        if (flips) {
          runAugmentMirror(
            gpu,
            "mask",
            maskScratch!.binding,
            home.binding,
            patch,
            plan.mirror,
            0,
            home.base,
            plan.rot90,
          );
        }
      }
    }
  } catch (error) {
    image.dispose();
    masks.forEach((m) => m.dispose());
    throw error;
  } finally {
    for (const t of [...temporaries, ...scratchTensors, work]) t.dispose();
    maskScratch?.dispose();
  }
  return { image, masks };
}

/** One of a method's own crops, left raw in place in an uploaded batch array for the GPU to augment. */
export interface GpuView {
  /** Element offset of the crop in the array's tensor. */
  base: number;
  /** Shape `[D, H, W]` of the crop. */
  shape: Shape3;
  /** Its augmentation decisions (no spatial transform: the crop is already cut). */
  plan: AugmentPlan;
  /** The sample's index in the batch (a Philox counter word of its noise). */
  sample: number;
  /** The view of the sample (1, 2, …; the counter word of its noise stream). */
  view: number;
}

/**
 * Records the augmentation of `views` in place in `target` (f32), in the CPU pipeline's order (noise,
 * blur, brightness, contrast, low resolution, inverted gamma, gamma, mirroring, quarter turns). The noise
 * of a view is keyed by (seed, step, firstSample + sample, view). Views must not overlap.
 */
export function augmentViewsOnGpu(
  gpu: Gpu,
  target: Tensor,
  views: readonly GpuView[],
  key: { seed: number; step: number; firstSample?: number },
): void {
  if (views.length === 0) return;
  if (target.dtype !== "f32") throw new TypeError(`views to augment must be f32, got ${target.dtype}`);
  let largest = 0;
  for (const v of views) {
    if (v.plan.spatial) {
      throw new RangeError("a view is already cut: its plan cannot have a spatial transform");
    }
    const n = v.shape[0] * v.shape[1] * v.shape[2];
    if (v.base < 0 || v.base + n > target.size) {
      throw new RangeError(`a view of [${v.shape}] at ${v.base} lies outside its array of ${target.size}`);
    }
    largest = Math.max(largest, n);
  }
  const scratchTensors = [empty([largest], { gpu }), empty([largest], { gpu })];
  const scratch = scratchTensors.map((t) => ({ binding: t.binding, base: 0 }));
  const work = empty([statsWorkWords(STAT_SLOTS)], { gpu });
  const temporaries: Tensor[] = [];
  try {
    for (const v of views) {
      const home = slotOf(gpu, target, v.base, v.shape[0] * v.shape[1] * v.shape[2]);
      runChain(gpu, { scratch, work, temporaries }, home, v.shape, v.plan, {
        seed: key.seed,
        step: key.step,
        sample: (key.firstSample ?? 0) + v.sample,
        view: v.view,
      });
    }
  } finally {
    for (const t of [...temporaries, ...scratchTensors, work]) t.dispose();
  }
}
