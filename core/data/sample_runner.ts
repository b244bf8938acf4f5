/**
 * Turns sample tasks `(step, index in batch, image)` into finished samples: opens the volume (through a
 * per-worker cache), runs the SSL method's data hook (`sample(context)`, see sample_context.ts) or, without
 * one, cuts the run's standard patch, checks the arrays it returned, and hands the buffers back for
 * transfer. The loader's workers run this; with `workers: 0` the loader runs it in-process.
 *
 * A failure of the hook itself (an exception, a refused permission, a bad return value) becomes a
 * {@link SampleHookError} naming the plugin: the run stops. A bad input file stays a `DataFileError`: the
 * loader skips that image.
 *
 * @module
 */
import { DataFileError, deniedPermission, SampleHookError, type SkippedFile } from "./errors.ts";
import { emptyTimings, type MaskName, type RawCrop, type SampleSpec, type SampleTimings } from "./sample.ts";
import { checkSampleOutput, sampleArray, type SampleOutput } from "./sample_array.ts";
import { createSampleContext, type RawPatch, type RawView, type SampleHook } from "./sample_context.ts";
import {
  createVolumeCache,
  itemLabel,
  type LoadTimings,
  type ResolvedSource,
  type VolumeCacheOptions,
} from "./sources.ts";
import type { TaskResult } from "./worker_pool.ts";

/** Everything a worker needs, sent once (structured clone). */
export interface SampleRunnerInit {
  /** The resolved source (its items are cloned into each worker). */
  source: ResolvedSource;
  /** How the run's standard patch is cut and augmented. */
  spec: SampleSpec;
  /** The loader's seed. */
  seed: number;
  /** Whether batches are for training (false: validation). */
  training: boolean;
  /**
   * URL of the module whose default export is the SSL method plugin with the data hook (`sample`) and its
   * config schema (`config`). Without it every sample is the standard patch (`image`, plus `masks`).
   */
  hookModule?: string;
  /** The method's config (parsed once per worker by the plugin's schema before the hook sees it). */
  hookConfig?: unknown;
  /** Per-worker volume cache limits. */
  volumeCache?: VolumeCacheOptions;
  /**
   * Read grants (paths) and environment variables this runner's thread gives up before it imports the
   * hook module (the plugin sandbox: voxssl's code and Deno's cache are readable only until then).
   */
  revoke?: { read: string[]; env: string[] };
}

/** One sample to make. */
export interface SampleTask {
  /** The step. */
  step: number;
  /** Index within the batch. */
  index: number;
  /** Which item of the source. */
  item: number;
}

/** A finished sample. */
export interface SampleResult {
  /** The arrays of this sample (no batch axis). */
  arrays: SampleOutput;
  /** Image id. */
  id: string;
  /** File path or synthetic label. */
  source: string;
  /** Time per stage. */
  timings: SampleTimings;
  /** Other volumes that could not be read while making it (`otherVolume`). */
  skipped: SkippedFile[];
  /**
   * The standard patch as a raw crop, when it is augmented on the GPU: the crop, and the names its image
   * and masks (in `spec.masks` order; undefined where the sample does not return that mask) take in the
   * batch. `arrays` then lacks those names.
   */
  raw?: RawSample;
  /** The method's own crops left for the GPU (`context.augment(..., into)`), already in `arrays`. */
  views?: RawView[];
}

/** A sample's standard patch left for the GPU, and where its arrays go. */
export interface RawSample {
  /** The raw crop with its augmentation plan. */
  crop: RawCrop;
  /** The batch name of the augmented image. */
  image: string;
  /** The batch names of the augmented masks, in `spec.masks` order. */
  masks: (string | undefined)[];
}

/** The parts of an SSL method plugin the data side uses (duck-typed: data does not import the plugin layer). */
interface HookPlugin {
  name: string;
  config?: { parse(input: unknown): unknown };
  sample?: SampleHook;
  gpuAugmentation?: boolean;
  gpuViewAugmentation?: boolean;
}

/** Loads the method plugin of `url` (its default export) and parses its config with its own schema. */
export async function loadSampleHook(
  url: string,
  config: unknown,
): Promise<
  { name: string; hook: SampleHook; config: unknown; gpuAugmentation: boolean; gpuViewAugmentation: boolean }
> {
  let module;
  try {
    module = await import(url);
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    throw new SampleHookError(url, "importing it in a loader worker", detail, deniedPermission(error));
  }
  const plugin = module.default as HookPlugin | undefined;
  if (!plugin || typeof plugin.sample !== "function") {
    throw new Error(`${url}: its default export has no sample() hook`);
  }
  let parsed: unknown;
  try {
    parsed = plugin.config ? plugin.config.parse(config ?? {}) : config;
  } catch (error) {
    throw new SampleHookError(plugin.name, "parsing its config", (error as Error).message);
  }
  return {
    name: plugin.name,
    hook: plugin.sample.bind(plugin),
    config: parsed,
    gpuAugmentation: plugin.gpuAugmentation === true,
    gpuViewAugmentation: plugin.gpuViewAugmentation === true,
  };
}

/** The default sample: the standard patch as `image` `[1, D, H, W]` f32, and each mask as u8. */
function standardSample(
  patch: { image: Float32Array; masks: Partial<Record<MaskName, Uint8Array>> },
  size: readonly number[],
): SampleOutput {
  const shape = [1, size[0], size[1], size[2]];
  const out: SampleOutput = { image: sampleArray(patch.image, shape) };
  for (const [name, mask] of Object.entries(patch.masks)) out[name] = sampleArray(mask!, shape);
  return out;
}

/**
 * Finds the arrays that are the raw patch's placeholders, removes them from `arrays` and names them for the
 * GPU's results. A method that declares `gpuAugmentation` must return the patch's image itself.
 */
function takeRawArrays(
  arrays: SampleOutput,
  patch: RawPatch,
  masks: readonly MaskName[],
  method: string | undefined,
  where: string,
): RawSample {
  const names = Object.keys(arrays);
  const image = names.find((k) => arrays[k].data === patch.image);
  if (!image) {
    throw new SampleHookError(
      method ?? "the standard sample",
      where,
      "declares gpuAugmentation but did not return context.patch()'s image unchanged as one of its arrays",
    );
  }
  const maskNames = masks.map((m) => names.find((k) => arrays[k].data === patch.masks[m]));
  for (const k of [image, ...maskNames]) if (k) delete arrays[k];
  return { crop: patch.crop, image, masks: maskNames };
}

/**
 * Checks that each deferred view sits untouched where the hook said (`into`): an f32 array whose per-sample
 * first axis has the index and whose entries there are the crop's; the GPU augments it in place.
 */
function checkRawViews(
  arrays: SampleOutput,
  views: readonly { view: RawView; image: Float32Array }[],
  method: string,
  where: string,
): void {
  const taken = new Set<string>();
  for (const { view, image } of views) {
    const a = arrays[view.array];
    const n = image.length;
    const fail = (problem: string) => {
      throw new SampleHookError(
        method,
        where,
        `augment(..., { array: "${view.array}", index: ${view.index} }): ${problem}`,
      );
    };
    if (!a) fail(`the hook returned no array "${view.array}"`);
    const slot = `${view.array}[${view.index}]`;
    if (taken.has(slot)) fail(`a second crop promised for entry ${view.index} of "${view.array}"`);
    taken.add(slot);
    if (a.dtype !== "f32") fail(`"${view.array}" is ${a.dtype}, views must be f32`);
    const per = a.shape.slice(1).reduce((p, v) => p * v, 1);
    if (a.shape.length < 1 || view.index >= a.shape[0] || per !== n) {
      fail(`"${view.array}" [${a.shape}] has no entry ${view.index} of ${n} voxels`);
    }
    const at = (a.data as Float32Array).subarray(view.index * n, (view.index + 1) * n);
    for (let i = 0; i < n; i++) {
      if (!Object.is(at[i], image[i])) {
        fail(
          `entry ${view.index} of "${view.array}" is not the crop augment() left raw (voxel ${i} differs)`,
        );
      }
    }
  }
}

/** Builds the runner: `run(task)` makes one sample; `close()` releases open volumes. */
export async function createSampleRunner(
  init: SampleRunnerInit,
): Promise<{ run: (task: SampleTask) => Promise<TaskResult<SampleResult>>; close: () => void }> {
  for (const path of init.revoke?.read ?? []) await Deno.permissions.revoke({ name: "read", path });
  for (const variable of init.revoke?.env ?? []) await Deno.permissions.revoke({ name: "env", variable });
  const method = init.hookModule ? await loadSampleHook(init.hookModule, init.hookConfig) : undefined;
  const volumes = createVolumeCache(init.source, init.volumeCache);
  const otherBad = new Set<number>();
  const run = async (task: SampleTask): Promise<TaskResult<SampleResult>> => {
    const t0 = performance.now();
    const timings = emptyTimings();
    const load: LoadTimings = { readMs: 0, decompressMs: 0, copyMs: 0, preprocessMs: 0 };
    const reader = await volumes.get(task.item, load);
    const held: (() => void)[] = [];
    const skipped: SkippedFile[] = [];
    const source = itemLabel(init.source, task.item);
    const id = init.source.items[task.item].id;
    let arrays: SampleOutput;
    let rawPatch: RawPatch | undefined;
    let raw: RawSample | undefined;
    const rawViews: { view: RawView; image: Float32Array }[] = [];
    // the standard patch goes to the GPU raw when the run asks for it and the method allows it
    const onRawPatch = init.spec.rawCrops && (!method || method.gpuAugmentation)
      ? (r: RawPatch) => (rawPatch = r)
      : undefined;
    try {
      const context = createSampleContext({
        config: method?.config,
        seed: init.seed,
        step: task.step,
        index: task.index,
        training: init.training,
        spec: init.spec,
        reader,
        id,
        items: init.source.items.length,
        item: task.item,
        open: async (item) => {
          const other = await volumes.get(item, load);
          return { reader: other, id: init.source.items[item].id, release: () => volumes.release(other) };
        },
        label: (item) => itemLabel(init.source, item),
        load,
        bad: otherBad,
        onSkip: (s) => skipped.push(s),
        hold: (release) => held.push(release),
        onRawPatch,
        onRawView: init.spec.rawCrops && method?.gpuViewAugmentation
          ? (view, image) => rawViews.push({ view, image })
          : undefined,
      });
      if (method) {
        const where = `step ${task.step}, sample ${task.index}, ${source}`;
        try {
          arrays = checkSampleOutput(await method.hook(context), `plugin ${method.name}: sample()`);
        } catch (error) {
          if (error instanceof DataFileError || error instanceof SampleHookError) throw error;
          const detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
          throw new SampleHookError(method.name, where, detail, deniedPermission(error));
        }
      } else {
        arrays = standardSample(context.patch(), init.spec.patch);
      }
      if (rawPatch) raw = takeRawArrays(arrays, rawPatch, init.spec.masks, method?.name, source);
      if (method && rawViews.length > 0) checkRawViews(arrays, rawViews, method.name, source);
    } finally {
      volumes.release(reader);
      for (const release of held) release();
    }
    timings.readMs = load.readMs;
    timings.decompressMs = load.decompressMs;
    timings.preprocessMs = load.preprocessMs;
    timings.cropMs = load.copyMs;
    timings.totalMs = performance.now() - t0;
    timings.hookMs = method
      ? Math.max(0, timings.totalMs - load.readMs - load.decompressMs - load.preprocessMs - load.copyMs)
      : 0;
    timings.augmentMs = method
      ? 0
      : timings.totalMs - load.readMs - load.decompressMs - load.preprocessMs - load.copyMs;
    const result: SampleResult = {
      arrays,
      id,
      source,
      timings,
      skipped,
      ...(raw ? { raw } : {}),
      ...(rawViews.length > 0 ? { views: rawViews.map((v) => v.view) } : {}),
    };
    const buffers = new Set<ArrayBufferLike>(Object.values(arrays).map((a) => a.data.buffer));
    if (raw) { for (const a of [raw.crop.image, ...raw.crop.masks]) buffers.add(a.buffer); }
    return { result, transfer: [...buffers] as ArrayBuffer[] };
  };
  return { run, close: () => volumes.close() };
}
