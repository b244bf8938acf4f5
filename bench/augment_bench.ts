/**
 * Augmentation on the GPU against the CPU path (issue 18), in one run:
 *
 * - each transform on one patch: the GPU kernel(s) (timestamp queries, or wall clock around a sync)
 *   against the CPU function on one core;
 * - whole presets (nnssl-mae, nnunet) on batches drawn from the seed: the GPU path (raw crops uploaded and
 *   augmented, waited for) against the CPU path (cutSample per patch), and the CPU time a worker spends per
 *   sample on either path (the GPU path's worker only cuts the raw crop);
 * - the workers a ResEnc-L step needs on each path, for assumed step times (no GPU step has been measured);
 * - the methods' own per-crop pipelines (SimCLR, VoCo, VolumeFusion): crops per second on either side.
 *
 * Patches are 160³ with the "gpu" preset and 64³ with "lavapipe" (160³ takes minutes per row there), plus
 * the CPU rows at 160³ with "lavapipe" (the worker counts of a ResEnc-L step); the volume is a random array
 * in memory (the cache's read and zstd cost per patch is in the data benchmark).
 */
import { gaussianBlur } from "../core/data/augment/blur.ts";
import { resolveAugmentation } from "../core/data/augment/config.ts";
import { applyAugmentation, planAugmentation } from "../core/data/augment/pipeline.ts";
import { adjustContrast, adjustGamma, scaleBrightness } from "../core/data/augment/intensity.ts";
import { simulateLowResolution } from "../core/data/augment/lowres.ts";
import { mirrorInPlace } from "../core/data/augment/mirror.ts";
import { addGaussianNoise } from "../core/data/augment/noise.ts";
import { sourceBox, spatialMatrix, warpPatch } from "../core/data/augment/spatial.ts";
import { resampleTaps } from "../core/data/resample.ts";
import { createRng } from "../core/data/rng.ts";
import { cutRawCrop, cutSample, type SampleSpec } from "../core/data/sample.ts";
import type { LoadTimings, VolumeReader } from "../core/data/sources.ts";
import { extractBox, type Shape3 } from "../core/data/volume.ts";
import { empty, type Tensor, tensor } from "../core/tensor/mod.ts";
import { augmentBatchOnGpu, augmentViewsOnGpu, type GpuView } from "../core/train/gpu_augment.ts";
import { CONTRASTIVE_AUGMENTATION } from "../plugins/ssl/simclr/mod.ts";
import { VOLUME_FUSION_AUGMENTATION } from "../plugins/ssl/volume-fusion/mod.ts";
import {
  packLowresTaps,
  runAugmentBlurAxis,
  runAugmentIntensity,
  runAugmentLowresAxis,
  runAugmentMirror,
  runAugmentNoise,
  runAugmentSpatial,
  runAugmentStats,
  statsWorkWords,
} from "../kernels/augment.ts";
import { type BenchContext, type BenchSuite, measure } from "./harness.ts";

const SIZE = { lavapipe: 64, gpu: 160 };
/** Batch of a ResEnc-L MAE step (nnssl: 2 patches of 160³ per GPU). */
const BATCH = 2;
/** Assumed ResEnc-L step times on one GPU (A100 fp16 ≈ 0.5 s; see the data benchmark). */
const STEP_TIMES = [0.25, 0.5, 1];

function cpuMs(run: () => void, repeats: number): number {
  const times: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t = performance.now();
    run();
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

function randomVolume(n: number, seed: number): Float32Array {
  const rng = createRng(seed, "bench-volume");
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.uniform(-1, 2);
  return out;
}

async function perTransform(ctx: BenchContext, s: number): Promise<void> {
  const { gpu } = ctx;
  const patch: Shape3 = [s, s, s];
  const n = s * s * s;
  const lavapipe = ctx.preset === "lavapipe";
  const repeats = lavapipe ? 2 : 5;
  const cpuRepeats = lavapipe ? 2 : 3;
  const draw = { angles: [0.3, -0.2, 0.25] as [number, number, number], scale: 1.2 };
  const matrix = spatialMatrix(draw);
  const box = sourceBox(matrix, patch, [0, 0, 0], 2);
  const regionShape = box.size;
  const regionN = regionShape[0] * regionShape[1] * regionShape[2];
  const region = randomVolume(regionN, 1);
  const regionMask = Uint8Array.from(region, (v) => (v > 0.5 ? 1 : 0));
  const centre = box.start.map((v) => -v);
  const image = randomVolume(n, 2);
  const maskPatch = Uint8Array.from(image, (v) => (v > 0.5 ? 1 : 0));

  const tRegion = tensor(region, [regionN], { gpu });
  const tRegionMask = tensor(regionMask, [regionN], { gpu, dtype: "u8" });
  const x = tensor(image, [n], { gpu });
  const y = empty([n], { gpu });
  const z = empty([n], { gpu });
  const m = empty([n], { gpu, dtype: "u8" });
  const xm = tensor(maskPatch, [n], { gpu, dtype: "u8" });
  const work = empty([statsWorkWords(2)], { gpu });
  const small = patch.map((v) => Math.max(1, Math.round(v * 0.7)));
  const words = packLowresTaps([0, 1, 2].map((a) => {
    const down = resampleTaps(patch[a], small[a], "nearest");
    const up = resampleTaps(small[a], patch[a], "cubic");
    return { index: Int32Array.from(up.index, (i) => down.index[i]), weight: up.weight };
  }));
  const table = tensor(words, [words.length], { gpu, dtype: "u32" });
  const spatialArgs = { matrix, centre, srcShape: regionShape, srcBase: 0, patch, dstBase: 0 };
  const stats = (t: Tensor, slot: number) => runAugmentStats(gpu, t.binding, work.binding, 0, n, slot, 2);
  const noiseRng = createRng(3, "noise");

  const cases: { name: string; gpu: () => void; cpu: () => void }[] = [
    {
      name: "spatial, linear",
      gpu: () => runAugmentSpatial(gpu, "image", "linear", "zero", tRegion.binding, y.binding, spatialArgs),
      cpu: () => warpPatch(region, regionShape, centre, matrix, patch, "linear"),
    },
    {
      name: "spatial, cubic",
      gpu: () => runAugmentSpatial(gpu, "image", "cubic", "zero", tRegion.binding, y.binding, spatialArgs),
      cpu: () => warpPatch(region, regionShape, centre, matrix, patch, "cubic"),
    },
    {
      name: "spatial, mask (nearest)",
      gpu: () =>
        runAugmentSpatial(gpu, "mask", "nearest", "zero", tRegionMask.binding, m.binding, spatialArgs),
      cpu: () => warpPatch(regionMask, regionShape, centre, matrix, patch, "nearest"),
    },
    {
      name: "mirror (3 axes)",
      gpu: () => runAugmentMirror(gpu, "image", x.binding, y.binding, patch, [true, true, true], 0, 0),
      cpu: () => mirrorInPlace(image, patch, [true, true, true]),
    },
    {
      name: "mirror (3 axes), mask",
      gpu: () => runAugmentMirror(gpu, "mask", xm.binding, m.binding, patch, [true, true, true], 0, 0),
      cpu: () => mirrorInPlace(maskPatch, patch, [true, true, true]),
    },
    {
      name: "Gaussian noise",
      gpu: () => runAugmentNoise(gpu, y.binding, 0, n, 0.05, { seed: 1, step: 2, sample: 0 }),
      cpu: () => addGaussianNoise(image, 0.05, noiseRng),
    },
    {
      name: "Gaussian blur (σ 0.75)",
      gpu: () => {
        runAugmentBlurAxis(gpu, x.binding, y.binding, patch, 0, 0.75, 0, 0);
        runAugmentBlurAxis(gpu, y.binding, z.binding, patch, 1, 0.75, 0, 0);
        runAugmentBlurAxis(gpu, z.binding, y.binding, patch, 2, 0.75, 0, 0);
      },
      cpu: () => gaussianBlur(image, patch, [0.75, 0.75, 0.75]),
    },
    {
      name: "brightness",
      gpu: () => runAugmentIntensity(gpu, y.binding, work.binding, 0, n, { op: "brightness", factor: 1.01 }),
      cpu: () => scaleBrightness(image, 1.01),
    },
    {
      name: "contrast",
      gpu: () => {
        stats(y, 0);
        runAugmentIntensity(gpu, y.binding, work.binding, 0, n, { op: "contrast", factor: 0.9, slot: 0 });
      },
      cpu: () => adjustContrast(image, 0.9),
    },
    {
      name: "gamma",
      gpu: () => {
        stats(y, 0);
        runAugmentIntensity(gpu, y.binding, work.binding, 0, n, {
          op: "gammaPow",
          gamma: 0.9,
          invert: false,
          slot: 0,
        });
        stats(y, 1);
        runAugmentIntensity(gpu, y.binding, work.binding, 0, n, {
          op: "gammaRestore",
          invert: false,
          slotBefore: 0,
          slotAfter: 1,
        });
      },
      cpu: () => adjustGamma(image, 0.9, false),
    },
    {
      name: "low resolution (zoom 0.7)",
      gpu: () => {
        runAugmentLowresAxis(gpu, x.binding, table.binding, y.binding, patch, 0, 0, 0, 0);
        runAugmentLowresAxis(gpu, y.binding, table.binding, z.binding, patch, 1, 0, 0, 0);
        runAugmentLowresAxis(gpu, z.binding, table.binding, y.binding, patch, 2, 0, 0, 0);
      },
      cpu: () => simulateLowResolution(image, patch, 0.7),
    },
  ];
  for (const c of cases) {
    const g = await measure(gpu, c.gpu, { warmup: 1, repeats });
    const cpu = cpuMs(c.cpu, cpuRepeats);
    ctx.report({
      suite: "augment",
      name: c.name,
      shape: `${s}³${c.name.startsWith("spatial") ? ` from ${regionShape.join("×")}` : ""}`,
      medianMs: g.medianMs,
      peer: { name: "CPU, 1 core", medianMs: cpu },
      note: `GPU ${(1000 / g.medianMs).toFixed(1)} patches/s (${g.source}), CPU ${(1000 / cpu).toFixed(1)}`,
    });
  }
  for (const t of [tRegion, tRegionMask, x, y, z, m, xm, work, table]) t.dispose();
}

async function presets(ctx: BenchContext, s: number, withGpu: boolean): Promise<void> {
  const { gpu } = ctx;
  const patch: Shape3 = [s, s, s];
  const shape: Shape3 = [Math.round(1.5 * s), Math.round(1.5 * s), Math.round(1.5 * s)];
  const volume = randomVolume(shape[0] * shape[1] * shape[2], 4);
  const deface = Uint8Array.from(volume, (v) => (v > 1.8 ? 0 : 1));
  const reader: VolumeReader = {
    label: "random",
    shape,
    has: (a) => a === "image" || a === "anonymization",
    readRegion: (a, start, size, t) => {
      const t0 = performance.now();
      const out = extractBox(a === "image" ? volume : deface, shape, start, size);
      if (t) t.copyMs += performance.now() - t0;
      return out;
    },
    bytes: 0,
    close() {},
  };
  const load = (): LoadTimings => ({ readMs: 0, decompressMs: 0, copyMs: 0, preprocessMs: 0 });
  const steps = ctx.preset === "lavapipe" ? 6 : 12;
  for (const preset of ["nnssl-mae", "nnunet"] as const) {
    for (const masks of [[], ["deface"]] as ("deface")[][]) {
      const spec = (interpolation: "linear" | "cubic"): SampleSpec => ({
        patch,
        augmentation: resolveAugmentation(preset),
        anatomyProbability: 0,
        masks,
        interpolation,
      });
      const label = `${preset}${masks.length ? " + deface mask" : ""}`;
      // CPU path: a worker cuts and augments each patch
      for (const interpolation of ["linear", "cubic"] as const) {
        let total = 0;
        for (let step = 0; step < steps; step++) {
          for (let b = 0; b < BATCH; b++) {
            const t = performance.now();
            cutSample(reader, createRng(9, step, b), spec(interpolation), load());
            total += performance.now() - t;
          }
        }
        const ms = total / (steps * BATCH);
        ctx.report({
          suite: "augment",
          name: `${label}, CPU path (${interpolation})`,
          shape: `${BATCH}×${s}³, ${steps} batches`,
          medianMs: ms,
          note: `CPU-ms per patch; one core: ${(1000 / ms).toFixed(1)} patches/s; workers for a step of ${
            STEP_TIMES.map((t) => `${t} s: ${Math.ceil((BATCH * ms) / (1000 * t))}`).join(", ")
          }`,
        });
      }
      // GPU path: a worker only cuts the raw crop; the GPU augments the batch (upload included)
      let cutMs = 0, gpuMs = 0;
      for (let step = 0; step < steps + 1; step++) {
        const t0 = performance.now();
        const crops = Array.from(
          { length: BATCH },
          (_, b) => cutRawCrop(reader, createRng(9, step, b), spec("cubic"), load()),
        );
        const t1 = performance.now();
        if (withGpu) {
          const out = augmentBatchOnGpu(gpu, crops, {
            patch,
            interpolation: "cubic",
            padding: "zero",
            seed: 9,
            step,
          });
          await gpu.sync();
          out.image.dispose();
          out.masks.forEach((t) => t.dispose());
        }
        const t2 = performance.now();
        if (step === 0) continue; // warm-up: pipelines compile
        cutMs += t1 - t0;
        gpuMs += t2 - t1;
      }
      const cut = cutMs / (steps * BATCH);
      const onGpu = gpuMs / (steps * BATCH);
      const workers = STEP_TIMES.map((t) => `${t} s: ${Math.ceil((BATCH * cut) / (1000 * t))}`).join(", ");
      ctx.report({
        suite: "augment",
        name: `${label}, GPU path (cubic)${withGpu ? "" : ", worker side only"}`,
        shape: `${BATCH}×${s}³, ${steps} batches`,
        medianMs: withGpu ? onGpu : cut,
        note: (withGpu
          ? `GPU-ms per patch (upload + kernels, waited for): ${(1000 / onGpu).toFixed(1)} patches/s; `
          : "") +
          `the worker's raw crop ${cut.toFixed(1)} CPU-ms (${(1000 / cut).toFixed(1)} patches/s per core); ` +
          `workers for a step of ${workers}`,
      });
    }
  }
}

/**
 * The methods' own per-crop pipelines (issue 18, part 1): views already cut, augmented on the CPU
 * (`applyAugmentation` per crop, one core) or on the GPU in place in their batch array
 * (`augmentViewsOnGpu`, upload included, waited for). Views per step as the methods cut them at batch 2.
 */
async function pipelines(ctx: BenchContext): Promise<void> {
  const { gpu } = ctx;
  const lavapipe = ctx.preset === "lavapipe";
  const steps = lavapipe ? 2 : 8;
  const cases = [
    { name: "SimCLR (contrastive pipeline)", pipeline: CONTRASTIVE_AUGMENTATION, size: 64, views: 2 * 4 },
    { name: "VoCo (contrastive pipeline)", pipeline: CONTRASTIVE_AUGMENTATION, size: 64, views: 2 * 20 },
    { name: "VolumeFusion", pipeline: VOLUME_FUSION_AUGMENTATION, size: lavapipe ? 64 : 160, views: 2 * 2 },
  ];
  for (const c of cases) {
    const shape: Shape3 = [c.size, c.size, c.size];
    const n = c.size ** 3;
    const config = resolveAugmentation(c.pipeline);
    const data = randomVolume(c.views * n, 11);
    let cpuTotal = 0, gpuTotal = 0;
    for (let step = 0; step < steps + 1; step++) {
      const views: GpuView[] = Array.from({ length: c.views }, (_, i) => ({
        base: i * n,
        shape,
        plan: planAugmentation(config, createRng(3, step, i).fork("augment")),
        sample: i % 2,
        view: 1 + (i >> 1),
      }));
      const t0 = performance.now();
      for (const v of views) {
        applyAugmentation(data.slice(v.base, v.base + n), shape, v.plan, createRng(3, step, v.view, "noise"));
      }
      const t1 = performance.now();
      const t = tensor(data, [2, c.views / 2, 1, ...shape], { gpu });
      augmentViewsOnGpu(gpu, t, views, { seed: 3, step });
      await gpu.sync();
      t.dispose();
      const t2 = performance.now();
      if (step === 0) continue; // warm-up: pipelines compile
      cpuTotal += t1 - t0;
      gpuTotal += t2 - t1;
    }
    const cpu = cpuTotal / (steps * c.views), onGpu = gpuTotal / (steps * c.views);
    ctx.report({
      suite: "augment",
      name: `${c.name}, per crop`,
      shape: `${c.views} crops of ${c.size}³ per step, ${steps} steps`,
      medianMs: onGpu,
      peer: { name: "CPU, 1 core", medianMs: cpu },
      note: `GPU ${(1000 / onGpu).toFixed(1)} crops/s (upload + kernels, waited for), CPU ${
        (1000 / cpu).toFixed(1)
      } crops/s per core`,
    });
  }
}

/** The "augment" suite. */
export const augmentSuite: BenchSuite = {
  name: "augment",
  gpuSeconds: 20,
  async run(ctx) {
    const s = SIZE[ctx.preset];
    ctx.log(`patch ${s}³, batch ${BATCH}; CPU rows on one core of this machine`);
    await perTransform(ctx, s);
    await presets(ctx, s, true);
    // the worker side at ResEnc-L's 160³ whatever the preset: CPU work only (lavapipe is too slow for the
    // GPU side at 160³)
    if (s !== 160) await presets(ctx, 160, false);
  },
};

/** The "augment-pipelines" suite: the methods' own per-crop pipelines on either side. */
export const augmentPipelinesSuite: BenchSuite = {
  name: "augment-pipelines",
  gpuSeconds: 10,
  async run(ctx) {
    ctx.log(
      "per-crop pipelines of SimCLR, VoCo and VolumeFusion, batch 2; CPU rows on one core of this machine",
    );
    await pipelines(ctx);
  },
};
