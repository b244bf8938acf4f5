/**
 * The data side of an SSL method: what its `sample(context)` hook sees for one training sample, in a
 * loader worker. The hook may take the run's standard patch (`context.patch()`), cut any number of crops of
 * any size from the preprocessed volume (`context.volume.crop(...)`), ask for a second volume
 * (`context.otherVolume()`), and augment each crop with its own pipeline (`context.augment(...)`). It
 * returns named, typed arrays ({@link SampleArray}) that reach the GPU in that dtype and shape.
 *
 * Every random choice comes from the sample's generators, so a sample is a pure function of (seed, step,
 * index in the batch, data): whichever worker makes it, and after a resume.
 *
 * @module
 */
import { type AugmentationInput, resolveAugmentation } from "./augment/config.ts";
import type { Augmentation } from "./augment/config.ts";
import { applyAugmentation, type AugmentPlan, planAugmentation } from "./augment/pipeline.ts";
import { asDataFileError, DataFileError, type SkippedFile } from "./errors.ts";
import { createRng, type Rng } from "./rng.ts";
import { cutRawCrop, cutRegion, cutSample, type MaskName, type RawCrop, type SampleSpec } from "./sample.ts";
import type { SampleOutput } from "./sample_array.ts";
import { randomCropStart } from "./sampling.ts";
import type { LoadTimings, VolumeReader } from "./sources.ts";
import type { Shape3 } from "./volume.ts";

/** A region cut from a volume (channel-first with C = 1, stored `[D, H, W]`). */
export interface Crop {
  /** Intensities, `prod(shape)` of them. */
  image: Float32Array;
  /** `[D, H, W]`. */
  shape: Shape3;
  /** Where the region starts in the volume (before any spatial transform); may be negative. */
  start: Shape3;
  /** Requested masks, transformed like the image (1 = anatomy / defaced voxel). */
  masks: Partial<Record<MaskName, Uint8Array>>;
}

/** Options of {@link SampleVolume.crop}. */
export interface CropOptions {
  /** Masks to cut along (default none). */
  masks?: readonly MaskName[];
  /**
   * Augmentation applied while cutting, including the spatial transform (rotation and scaling read a
   * larger source region around the crop's centre). Default none.
   */
  augmentation?: AugmentationInput | Augmentation;
  /** Generator of the augmentation's draws (default: the sample's, forked by the crop's start and size). */
  rng?: Rng;
}

/** Options of {@link SampleVolume.patch}. */
export interface PatchOptions {
  /** Patch size (default the run's patch). */
  size?: Shape3;
  /** Augmentation (default the run's; "none" in validation). */
  augmentation?: AugmentationInput | Augmentation;
  /** Masks (default the ones the method declares with `masks(config)`). */
  masks?: readonly MaskName[];
  /** Probability of centring on an anatomy voxel (default the run's `anatomyProbability`). */
  anatomyProbability?: number;
  /** Generator (default the sample's: the standard patch of (seed, step, index)). */
  rng?: Rng;
}

/** One preprocessed volume, as a data hook reads it. */
export interface SampleVolume {
  /** Image id (or synthetic label). */
  readonly id: string;
  /** File path (or synthetic label). */
  readonly source: string;
  /** `[D, H, W]` of the preprocessed volume. */
  readonly shape: Shape3;
  /** Whether the volume carries this mask (an absent anatomy mask reads as 1 inside the volume). */
  hasMask(name: MaskName): boolean;
  /** Cuts `size` at `start` (zero outside the volume), optionally augmented. */
  crop(start: readonly number[], size: Shape3, options?: CropOptions): Crop;
  /**
   * A uniformly random start for a crop of `size` inside `within` (default the whole volume), nnssl's rule:
   * where the region is smaller than the crop, the crop sticks out by up to half the difference on each side.
   */
  randomStart(size: Shape3, rng: Rng, within?: { start: readonly number[]; size: Shape3 }): Shape3;
  /** A patch as the run cuts it: random or anatomy-centred start, the run's augmentation and masks. */
  patch(options?: PatchOptions): Crop;
}

/** What a method's data hook receives for one sample. */
export interface SampleContext<C = unknown> {
  /** The method's config, parsed by its zod schema once per worker. */
  readonly config: C;
  /** This sample's generator for the hook's own draws (independent of the standard patch's). */
  readonly rng: Rng;
  /** The loader's seed. */
  readonly seed: number;
  /** The step the sample belongs to. */
  readonly step: number;
  /** Index of the sample in its batch. */
  readonly index: number;
  /** False for validation batches (the run's augmentation is then "none"). */
  readonly training: boolean;
  /**
   * True when `augment(crop, pipeline, rng, into)` leaves crops without masks for the GPU in this sample
   * (the run augments on the GPU and the method declares `gpuViewAugmentation`): the hook must then put
   * each such crop's image at `into` unchanged, and combine crops only after the loss receives them.
   */
  readonly gpuViews?: boolean;
  /** The run's patch size. */
  readonly patchSize: Shape3;
  /** The volume this sample was drawn from. */
  readonly volume: SampleVolume;
  /** `volume.patch(options)`: the run's standard patch of this sample. */
  patch(options?: PatchOptions): Crop;
  /**
   * Another volume of the dataset, chosen from (seed, step, index, `key`), different from this sample's
   * when the dataset has more than one; unreadable ones are skipped (and reported) like bad images.
   */
  otherVolume(key?: number): Promise<SampleVolume>;
  /**
   * Augments a crop in place with a pipeline of intensity transforms, mirroring and quarter turns drawn
   * from `rng` (masks follow). Spatial transforms need the volume: pass `augmentation` to `volume.crop`.
   *
   * `into` names where the hook puts the crop's image in its arrays (`array`, at `index` along the
   * sample's first axis). A method that declares `gpuViewAugmentation` passes it so that, when the run
   * augments on the GPU, the crop (without masks) is left unchanged here, the hook copies it into
   * `into` as it is, and the GPU applies the same plan there before the loss (its noise from Philox
   * keyed by (seed, step, sample, view), views numbered 1, 2, … in call order). On the CPU path `into`
   * changes nothing.
   */
  augment(crop: Crop, pipeline: AugmentationInput | Augmentation, rng: Rng, into?: AugmentTarget): Crop;
}

/** Where {@link SampleContext.augment}'s crop goes in the sample's arrays. */
export interface AugmentTarget {
  /** Name of the f32 array the hook returns. */
  array: string;
  /** Index of the crop along the array's first (per-sample) axis. */
  index: number;
}

/** A crop whose augmentation was left for the GPU: where it is, its plan and its noise view. */
export interface RawView {
  /** The array the hook promised to put the crop in. */
  array: string;
  /** The crop's index along that array's per-sample first axis. */
  index: number;
  /** Shape `[D, H, W]` of the crop. */
  shape: Shape3;
  /** The augmentation decisions (drawn from the same forks as the CPU path). */
  plan: AugmentPlan;
  /** View number of the noise (1, 2, … in the order of the sample's `augment` calls). */
  view: number;
}

/** A method's data hook: one sample's arrays from its context (pure in the context's generators and data). */
export type SampleHook<C = unknown> = (context: SampleContext<C>) => SampleOutput | Promise<SampleOutput>;

/** What {@link createSampleContext} needs. */
export interface SampleContextInit<C> {
  config: C;
  seed: number;
  step: number;
  index: number;
  training: boolean;
  spec: SampleSpec;
  reader: VolumeReader;
  id: string;
  /** Number of items of the source, and how to open one (for `otherVolume`). */
  items: number;
  item: number;
  open: (item: number) => Promise<{ reader: VolumeReader; id: string; release: () => void }>;
  label: (item: number) => string;
  load: LoadTimings;
  /** Items known to be unreadable; `otherVolume` adds the ones it finds and reports them. */
  bad: Set<number>;
  onSkip: (skipped: SkippedFile) => void;
  /** Called with each opened other volume's release function when the sample is done. */
  hold: (release: () => void) => void;
  /**
   * Set when the run augments on the GPU (`spec.rawCrops`) and the hook may take part: the first
   * `patch()` with the run's defaults then cuts a raw crop, hands it here, and returns placeholders
   * (zeros) that the runner replaces by the GPU's result.
   */
  onRawPatch?: (raw: RawPatch) => void;
  /**
   * Set when the run augments on the GPU and the method declares `gpuViewAugmentation`: `augment(...,
   * into)` on a crop without masks then draws the plan, hands it here with the untouched image, and
   * applies nothing.
   */
  onRawView?: (view: RawView, image: Float32Array) => void;
}

/** A standard patch left for the GPU: the raw crop and the placeholder arrays `patch()` returned. */
export interface RawPatch {
  /** The raw crop with its augmentation plan. */
  crop: RawCrop;
  /** The placeholder image returned in the crop. */
  image: Float32Array;
  /** The placeholder masks, by name. */
  masks: Partial<Record<MaskName, Uint8Array>>;
}

function resolvePipeline(pipeline: AugmentationInput | Augmentation): Augmentation {
  return typeof pipeline === "object" && "rotation" in pipeline && "rot90" in pipeline &&
      !("preset" in pipeline)
    ? pipeline as Augmentation
    : resolveAugmentation(pipeline as AugmentationInput);
}

function volumeView(
  reader: VolumeReader,
  id: string,
  base: Rng,
  spec: SampleSpec,
  load: LoadTimings,
  onRawPatch?: (raw: RawPatch) => void,
): SampleVolume {
  let rawTaken = false;
  const view: SampleVolume = {
    id,
    source: reader.label,
    shape: reader.shape,
    hasMask: (name) => reader.has(name === "deface" ? "anonymization" : "anatomy"),
    crop(start, size, options = {}) {
      checkSize(size, "crop");
      if (start.length !== 3 || !start.every(Number.isInteger)) {
        throw new RangeError(`crop(): start must be three integers, got [${start}]`);
      }
      const rng = options.rng ?? base.fork("crop", start[0], start[1], start[2], size[0], size[1], size[2]);
      const plan = planAugmentation(resolvePipeline(options.augmentation ?? "none"), rng.fork("augment"));
      const cut = reading(
        reader,
        () => cutRegion(reader, start, size, plan, options.masks ?? [], rng.fork("noise"), load),
      );
      return { image: cut.image, shape: [...size], start: cut.start, masks: cut.masks };
    },
    randomStart(size, rng, within) {
      checkSize(size, "randomStart");
      if (!within) return randomCropStart(reader.shape, size, rng);
      const inner = randomCropStart(within.size, size, rng);
      return [0, 1, 2].map((a) => within.start[a] + inner[a]) as Shape3;
    },
    patch(options = {}) {
      const size = options.size ?? spec.patch;
      checkSize(size, "patch");
      const standard = options.size === undefined && options.augmentation === undefined &&
        options.anatomyProbability === undefined && options.masks === undefined && options.rng === undefined;
      if (onRawPatch && spec.rawCrops && standard && !rawTaken) {
        // the GPU augments it: the same draws as cutSample below, nothing applied here
        rawTaken = true;
        const { start, centred: _c, ...crop } = reading(reader, () => cutRawCrop(reader, base, spec, load));
        const n = size[0] * size[1] * size[2];
        const masks: Partial<Record<MaskName, Uint8Array>> = {};
        for (const m of spec.masks) masks[m] = new Uint8Array(n);
        const image = new Float32Array(n);
        onRawPatch({ crop, image, masks });
        return { image, shape: [...size], start, masks };
      }
      const patchSpec: SampleSpec = {
        patch: size,
        augmentation: options.augmentation === undefined
          ? spec.augmentation
          : resolvePipeline(options.augmentation),
        anatomyProbability: options.anatomyProbability ?? spec.anatomyProbability,
        masks: [...(options.masks ?? spec.masks)],
        interpolation: spec.interpolation,
        padding: spec.padding,
      };
      const cut = reading(reader, () => cutSample(reader, options.rng ?? base, patchSpec, load));
      return { image: cut.image, shape: [...size], start: cut.start, masks: cut.masks };
    },
  };
  return view;
}

/** Runs a read of `reader`: any failure is the file's (a DataFileError naming it), not the hook's. */
function reading<T>(reader: VolumeReader, read: () => T): T {
  try {
    return read();
  } catch (error) {
    throw asDataFileError(reader.label, error);
  }
}

/** The CPU's rot90 check for a deferred plan: odd turns need equal sizes on the two axes. */
function checkTurns(plan: AugmentPlan, shape: Shape3): void {
  if (!plan.rot90 || plan.rot90.turns % 2 === 0) return;
  const [a, b] = plan.rot90.axes;
  if (shape[a] !== shape[b]) {
    throw new RangeError(
      `rot90(): an odd number of quarter turns needs equal sizes on axes ${a} and ${b}, got [${shape}]`,
    );
  }
}

function checkSize(size: readonly number[], where: string): void {
  if (size.length !== 3 || !size.every((s) => Number.isInteger(s) && s >= 1)) {
    throw new RangeError(`${where}(): size must be three positive integers [D, H, W], got [${size}]`);
  }
}

/** Builds the context of one sample (the loader's runner calls this; hooks receive it). */
export function createSampleContext<C>(init: SampleContextInit<C>): SampleContext<C> {
  const base = createRng(init.seed, init.step, init.index);
  const volume = volumeView(init.reader, init.id, base, init.spec, init.load, init.onRawPatch);
  let views = 0;
  return {
    config: init.config,
    rng: base.fork("hook"),
    seed: init.seed,
    step: init.step,
    index: init.index,
    training: init.training,
    gpuViews: init.onRawView !== undefined,
    patchSize: init.spec.patch,
    volume,
    patch: (options) => volume.patch(options),
    async otherVolume(key = 0) {
      for (let attempt = 0; attempt < 64; attempt++) {
        const pick = createRng(init.seed, "other", init.step, init.index, key, attempt);
        let item = pick.int(init.items);
        if (init.items > 1 && item === init.item) item = (item + 1 + pick.int(init.items - 1)) % init.items;
        if (init.bad.has(item)) continue;
        try {
          const opened = await init.open(item);
          init.hold(opened.release);
          const rng = base.fork("other", key);
          return volumeView(opened.reader, opened.id, rng, init.spec, init.load);
        } catch (error) {
          if (!(error instanceof DataFileError)) throw error;
          init.bad.add(item);
          init.onSkip({ path: init.label(item), reason: error.problem });
        }
      }
      throw new Error(
        `otherVolume(): no readable volume found in 64 attempts (${init.bad.size} of ${init.items} failed)`,
      );
    },
    augment(crop, pipeline, rng, into) {
      const config = resolvePipeline(pipeline);
      if (config.rotation.p > 0 || config.scale.p > 0) {
        throw new RangeError(
          "augment(): rotation and scaling need the volume around the crop: pass the pipeline as " +
            "volume.crop(start, size, { augmentation }) instead",
        );
      }
      const plan = planAugmentation(config, rng.fork("augment"));
      const names = Object.keys(crop.masks) as MaskName[];
      if (into && init.onRawView && names.length === 0) {
        // the GPU applies the plan where the hook puts the crop; the same checks as the CPU path first
        if (typeof into.array !== "string" || !Number.isInteger(into.index) || into.index < 0) {
          throw new RangeError(
            `augment(): into must be { array: name, index: integer >= 0 }, got ${JSON.stringify(into)}`,
          );
        }
        checkTurns(plan, crop.shape);
        views++;
        init.onRawView(
          { array: into.array, index: into.index, shape: [...crop.shape], plan, view: views },
          crop.image,
        );
        return crop;
      }
      const masks = names.map((n) => crop.masks[n]!);
      crop.image = applyAugmentation(crop.image, crop.shape, plan, rng.fork("noise"), masks);
      names.forEach((n, k) => (crop.masks[n] = masks[k]));
      return crop;
    },
  };
}
