/**
 * Data-pipeline benchmark: what the CPU side can feed a GPU.
 *
 * - per-transform cost on one 160³ patch, one core (decides CPU vs GPU per transform), the Models Genesis
 *   transforms (plugins/ssl/models-genesis, run in the `sample` hook) included;
 * - 160³ patches per second through the patch loader for 1, 2, … workers, from the chunked cache and
 *   from raw `.nii.gz` (decoded and preprocessed on every read), with the per-patch time split into
 *   read, decompress, preprocess (raw only), crop and augment;
 * - the SSL methods' data hooks (`SAMPLED_METHODS`, each at its default patch): samples per second per
 *   worker from the cache;
 * - the number of workers one GPU step needs, for a few assumed step times.
 *
 * The data are brain-sized synthetic phantoms written to a temp folder (raw `.nii.gz`, int16 like most
 * scanners) and preprocessed into a cache first. Run alone:
 * `./deno run -A bench/data_bench.ts [--preset lavapipe|gpu] [--json FILE]`; or call {@link runDataBench}.
 */
import { join } from "node:path";
import process from "node:process";
import { Command } from "@commander-js/extra-typings";
import {
  addGaussianNoise,
  adjustContrast,
  adjustGamma,
  buildFolderIndex,
  createPatchLoader,
  createRng,
  extractBox,
  gaussianBlur,
  listImages,
  type MaskName,
  mirrorInPlace,
  openCacheFile,
  preprocessDataset,
  readCacheManifest,
  type SampleTimings,
  scaleBrightness,
  type Shape3,
  simulateLowResolution,
  sourceBox,
  spatialMatrix,
  warpPatch,
  writePretrainIndex,
  writeSyntheticDataset,
} from "../core/data/mod.ts";
import { builtinRegistry, pluginModule } from "../cli/builtins.ts";
import {
  applyFlips,
  applyIntensityCurve,
  curveTable,
  drawIntensityCurve,
  genesisPair,
  localPixelShuffle,
  paint,
} from "../plugins/ssl/models-genesis/mod.ts";
import type { BenchSuite } from "./harness.ts";

/** SSL methods whose data hook (`sample`) gets a row: samples per second per worker, 160³ patches. */
const SAMPLED_METHODS: { name: string; patch: Shape3 }[] = [
  { name: "mae", patch: [160, 160, 160] },
  { name: "spark", patch: [160, 160, 160] },
  { name: "models-genesis", patch: [160, 160, 160] },
  { name: "volume-fusion", patch: [160, 160, 160] },
  { name: "swinunetr-pretext", patch: [160, 160, 160] },
  // the contrastive methods' crops are the run's patch (64³); a sample holds 4 (SimCLR) or 20 (VoCo) of them
  { name: "simclr", patch: [64, 64, 64] },
  { name: "voco", patch: [64, 64, 64] },
];

/** What {@link runDataBench} takes. */
export interface DataBenchOptions {
  preset: "lavapipe" | "gpu";
  log: (line: string) => void;
}

const PATCH: Shape3 = [160, 160, 160];
/** A brain at 1 mm after cropping is about 140×170×140; the phantoms' field of view is a bit larger. */
const VOLUME: Shape3 = [176, 208, 176];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function timeIt(repeats: number, fn: () => void): number {
  const ms: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t = performance.now();
    fn();
    ms.push(performance.now() - t);
  }
  return median(ms);
}

/** One-core cost of each transform on a 160³ patch (ms). */
function transformCosts(volume: Float32Array, cachePath: string, repeats: number): Record<string, number> {
  const n = PATCH[0] * PATCH[1] * PATCH[2];
  const patch = () => extractBox(volume, VOLUME, [8, 24, 8], PATCH);
  const base = patch();
  const rng = createRng(1, "bench");
  const centre = VOLUME.map((s) => (s - 1) / 2);
  const matrix = spatialMatrix({ angles: [0.3, -0.2, 0.4], scale: 1.2 });
  const box = sourceBox(matrix, PATCH, centre);
  const region = extractBox(volume, VOLUME, box.start, box.size);
  const local = centre.map((c, i) => c - box.start[i]);
  const file = openCacheFile(cachePath);
  const mask = new Uint8Array(base.length);
  for (let i = 0; i < base.length; i++) mask[i] = base[i] > 0 ? 1 : 0;
  const regionMask = new Uint8Array(region.length);
  for (let i = 0; i < region.length; i++) regionMask[i] = region[i] > 0 ? 1 : 0;
  // Models Genesis: the local shuffle has 10 000 windows; the curve (100 000 samples and the lookup table)
  // is applied to a scratch copy (after the first repeat its values lie in [0, 1], every voxel
  // interpolated: the slower case); the pair forces every transform, with out-painting
  const scratch = base.slice();
  const curve = drawIntensityCurve(createRng(1, "curve"));
  const table = curveTable(curve);
  const everything = { localShuffleRate: 1, nonlinearRate: 1, paintRate: 1, inpaintRate: 0 };
  try {
    return {
      "crop from memory": timeIt(repeats, () => patch()),
      "crop from cache (read + zstd + copy)": timeIt(
        repeats,
        () => file.readRegion("image", [8, 24, 8], PATCH),
      ),
      "spatial: rotation + scale (trilinear)": timeIt(
        repeats,
        () => warpPatch(region, box.size, local, matrix, PATCH, "linear"),
      ),
      "spatial on a mask (nearest)": timeIt(
        repeats,
        () => warpPatch(regionMask, box.size, local, matrix, PATCH, "nearest"),
      ),
      "mirror (3 axes)": timeIt(repeats, () => mirrorInPlace(base, PATCH, [true, true, true])),
      "mirror a mask (3 axes)": timeIt(repeats, () => mirrorInPlace(mask, PATCH, [true, true, true])),
      "gaussian noise": timeIt(repeats, () => addGaussianNoise(base, 0.05, rng)),
      "gaussian blur (σ 0.5–1)": timeIt(repeats, () => gaussianBlur(base, PATCH, [0.7, 1.0, 0.5])),
      brightness: timeIt(repeats, () => scaleBrightness(base, 1.01)),
      contrast: timeIt(repeats, () => adjustContrast(base, 1.1)),
      gamma: timeIt(repeats, () => adjustGamma(base, 1.2, false)),
      "low resolution (zoom 0.7)": timeIt(repeats, () => simulateLowResolution(base, PATCH, 0.7)),
      "copy into the batch (memcpy)": timeIt(repeats, () => new Float32Array(n).set(base)),
      "models genesis: flip (D and H)": timeIt(repeats, () => applyFlips(scratch, PATCH, [1, 2])),
      "models genesis: local shuffle": timeIt(
        repeats,
        () => localPixelShuffle(scratch, PATCH, rng),
      ),
      "models genesis: Bezier curve + table": timeIt(
        repeats,
        () => curveTable(drawIntensityCurve(rng)),
      ),
      "models genesis: Bezier intensity": timeIt(
        repeats,
        () => applyIntensityCurve(scratch, curve, table),
      ),
      "models genesis: in-painting": timeIt(repeats, () => paint(scratch, PATCH, rng, 1)),
      "models genesis: out-painting": timeIt(repeats, () => paint(scratch, PATCH, rng, 0)),
      "models genesis: pair, every transform": timeIt(
        repeats,
        () => genesisPair(base.slice(), PATCH, rng.fork("pair"), everything),
      ),
    };
  } finally {
    file.close();
  }
}

interface LoaderRun {
  patchesPerSecond: number;
  /** Process CPU time (all threads) per patch, and the cores it kept busy on average. */
  cpuMsPerPatch: number;
  coresUsed: number;
  /** Mean worker time per patch, per stage (ms). */
  perPatch: SampleTimings;
}

/** An SSL method's data hook, by its module (its default export is the plugin). */
interface Sampler {
  /** The method's name (for error messages). */
  name: string;
  /** The module URL. */
  module: string;
}

async function measureLoader(
  source: string,
  workers: number,
  batches: number,
  augmentation: "none" | "nnssl-mae" | "nnunet",
  raw: boolean,
  sampler?: Sampler,
  patch: Shape3 = PATCH,
): Promise<LoaderRun> {
  const batchSize = 2;
  const loader = await createPatchLoader({
    source,
    patchSize: patch,
    batchSize,
    seed: 1,
    augmentation,
    masks: [] as MaskName[],
    workers,
    prefetch: Math.max(2, workers),
    volumeCache: raw ? { maxBytes: 0 } : undefined,
    ...(sampler ? { hookModule: sampler.module, hookName: sampler.name, hookConfig: {} } : {}),
  });
  try {
    await loader.batch(0); // worker start-up and JIT warm-up are not part of the figure
    const before = loader.stats();
    const cpu = process.cpuUsage();
    const t = performance.now();
    for (let s = 1; s <= batches; s++) await loader.batch(s);
    const seconds = (performance.now() - t) / 1000;
    const used = process.cpuUsage(cpu);
    const cpuMs = (used.user + used.system) / 1000;
    const after = loader.stats();
    const samples = after.samples - before.samples;
    const perPatch = Object.fromEntries(
      Object.entries(after.timings).map((
        [k, v],
      ) => [k, (v - before.timings[k as keyof SampleTimings]) / samples]),
    ) as unknown as SampleTimings;
    return {
      patchesPerSecond: samples / seconds,
      cpuMsPerPatch: cpuMs / samples,
      coresUsed: cpuMs / 1000 / seconds,
      perPatch,
    };
  } finally {
    loader.close();
  }
}

/**
 * How much parallel CPU the machine really gives: the same spin loop in 1 and in `w` Workers at once;
 * returns the speed-up of w over 1 (w on an idle machine with w free cores, less when others share it).
 */
async function parallelSpeedup(w: number): Promise<number> {
  const code =
    "self.onmessage = () => { let x = 0; for (let i = 0; i < 6e7; i++) x += Math.sqrt(i); self.postMessage(x); };";
  const url = URL.createObjectURL(new Blob([code], { type: "application/javascript" }));
  const spin = async (count: number) => {
    const workers = Array.from({ length: count }, () => new Worker(url, { type: "module" }));
    try {
      const round = () =>
        Promise.all(workers.map((worker) =>
          new Promise((done) => {
            worker.onmessage = done;
            worker.postMessage(0);
          })
        ));
      await round(); // start-up and JIT
      const t = performance.now();
      await round();
      return performance.now() - t;
    } finally {
      workers.forEach((worker) => worker.terminate());
    }
  };
  const one = await spin(1);
  const many = await spin(w);
  URL.revokeObjectURL(url);
  return (w * one) / many;
}

function cpuModel(): string {
  try {
    const line = Deno.readTextFileSync("/proc/cpuinfo").split("\n").find((l) => l.startsWith("model name"));
    return line?.split(":")[1].trim() ?? "unknown";
  } catch {
    return "unknown";
  }
}

/**
 * Runs the data benchmark and returns flat figures (keys like `cache.w2.patches_per_s`,
 * `transform.gaussian_blur_ms`). The lavapipe preset takes under a minute on two cores.
 */
export async function runDataBench(options: DataBenchOptions): Promise<Record<string, number>> {
  const { preset, log } = options;
  const cores = navigator.hardwareConcurrency;
  const gpu = preset === "gpu";
  const volumes = gpu ? 8 : 3;
  const batches = gpu ? 12 : 5;
  const repeats = gpu ? 5 : 3;
  const workerCounts = (gpu ? [1, 2, 4, 8, 16, 32] : [1, 2]).filter((w) => w <= Math.max(2, cores));
  const figures: Record<string, number> = { cores, volumes };
  const dir = await Deno.makeTempDir({ prefix: "voxssl-data-bench-" });
  try {
    log(
      `data pipeline: ${cores} cores (${cpuModel()}), ${volumes} synthetic volumes of ${
        VOLUME.join("×")
      }, patch ${PATCH.join("×")}`,
    );
    let t = performance.now();
    await writeSyntheticDataset(join(dir, "raw"), { count: volumes, shape: VOLUME, seed: 1, layout: "flat" });
    const { index } = await buildFolderIndex(join(dir, "raw"));
    const indexPath = join(dir, "index.json");
    await writePretrainIndex(indexPath, index);
    figures["setup.write_ms"] = performance.now() - t;
    t = performance.now();
    await preprocessDataset(listImages(index, dir), join(dir, "cache"), {
      workers: Math.min(cores, volumes),
    });
    figures["setup.preprocess_ms_per_volume"] = (performance.now() - t) / volumes;
    const manifest = await readCacheManifest(join(dir, "cache"));
    log(
      `setup: wrote ${volumes} .nii.gz in ${
        (figures["setup.write_ms"] / 1000).toFixed(1)
      } s, preprocessed at ${(figures["setup.preprocess_ms_per_volume"] / 1000).toFixed(2)} s per volume`,
    );

    const cacheFile = join(dir, "cache", manifest.images[0].key + ".vxc");
    const file = openCacheFile(cacheFile);
    const cached = file.readArray<Float32Array>("image");
    const cachedShape = manifest.images[0].shape;
    file.close();
    const volume = extractBox(cached, cachedShape, [0, 0, 0], VOLUME); // padded to the nominal size
    log(`\nper-transform cost on one ${PATCH.join("×")} patch, one core (median of ${repeats}):`);
    for (const [name, ms] of Object.entries(transformCosts(volume, cacheFile, repeats))) {
      figures[`transform.${name.replace(/[^a-z0-9]+/gi, "_").replace(/_+$/, "").toLowerCase()}_ms`] = ms;
      log(`  ${name.padEnd(40)} ${ms.toFixed(1).padStart(7)} ms`);
    }

    log(`\nparallel CPU actually available (a spin loop in w Workers at once vs one):`);
    for (const w of workerCounts.filter((w) => w > 1)) {
      figures[`machine.w${w}.parallel_speedup`] = await parallelSpeedup(w);
      log(
        `  ${w} workers: ×${figures[`machine.w${w}.parallel_speedup`].toFixed(2)} (×${w} on ${w} idle cores)`,
      );
    }

    const runs: {
      name: string;
      source: string;
      raw: boolean;
      augmentation: "nnssl-mae" | "nnunet";
      workers: number[];
    }[] = [
      {
        name: "cache",
        source: join(dir, "cache"),
        raw: false,
        augmentation: "nnssl-mae",
        workers: workerCounts,
      },
      { name: "raw", source: indexPath, raw: true, augmentation: "nnssl-mae", workers: workerCounts },
      {
        name: "cache_nnunet",
        source: join(dir, "cache"),
        raw: false,
        augmentation: "nnunet",
        workers: [1, gpu ? Math.min(cores, 8) : 2],
      },
    ];
    for (const { name, source, raw, augmentation, workers } of runs) {
      const from = raw ? "raw .nii.gz (decoded on every read)" : "the cache";
      log(`\nloader from ${from}, augmentation ${augmentation}, batch 2:`);
      for (const w of workers) {
        // enough batches that the prefetch ramp-up of many workers does not dominate
        const run = await measureLoader(source, w, Math.max(batches, gpu ? 3 * w : 0), augmentation, raw);
        figures[`${name}.w${w}.patches_per_s`] = run.patchesPerSecond;
        figures[`${name}.w${w}.cpu_ms_per_patch`] = run.cpuMsPerPatch;
        figures[`${name}.w${w}.cores_used`] = run.coresUsed;
        const p = run.perPatch;
        for (
          const k of ["readMs", "decompressMs", "preprocessMs", "cropMs", "augmentMs", "totalMs"] as const
        ) {
          figures[`${name}.w${w}.${k.replace("Ms", "")}_ms_per_patch`] = p[k];
        }
        log(
          `  ${String(w).padStart(2)} worker${w > 1 ? "s" : " "}: ${
            run.patchesPerSecond.toFixed(2).padStart(6)
          } patches/s,` +
            ` ${run.coresUsed.toFixed(2)} cores busy, ${run.cpuMsPerPatch.toFixed(0)} CPU-ms per patch` +
            ` | per patch: read ${p.readMs.toFixed(0)} ms, decompress ${p.decompressMs.toFixed(0)} ms` +
            (raw ? `, preprocess ${p.preprocessMs.toFixed(0)} ms` : "") +
            `, crop ${p.cropMs.toFixed(0)} ms, augment ${p.augmentMs.toFixed(0)} ms, total ${
              p.totalMs.toFixed(0)
            } ms`,
        );
      }
    }

    // the SSL methods' own data hooks (their default config, the run's standard patch without augmentation)
    const registry = builtinRegistry();
    for (const { name, patch } of SAMPLED_METHODS) {
      const sampler = { name, module: pluginModule(registry, "ssl-method", name) };
      log(
        `\nsamples of ${name} (its sample hook, default config, ${
          patch.join("×")
        } patch) from the cache, batch 2:`,
      );
      for (const w of gpu ? [1, Math.min(cores, 8)] : [1]) {
        const run = await measureLoader(
          join(dir, "cache"),
          w,
          Math.max(batches, 2 * w),
          "none",
          false,
          sampler,
          patch,
        );
        figures[`sampler.${name}.w${w}.samples_per_s`] = run.patchesPerSecond;
        figures[`sampler.${name}.w${w}.samples_per_s_per_worker`] = run.patchesPerSecond / w;
        figures[`sampler.${name}.w${w}.cpu_ms_per_sample`] = run.cpuMsPerPatch;
        // wall time of one worker per sample (reported by the suite, like the other *_ms figures)
        figures[`sampler.${name}.w${w}.sample_ms`] = (1000 * w) / run.patchesPerSecond;
        log(
          `  ${String(w).padStart(2)} worker${w > 1 ? "s" : " "}: ${
            run.patchesPerSecond.toFixed(2).padStart(6)
          } samples/s` +
            ` (${(run.patchesPerSecond / w).toFixed(2)} per worker), ${
              run.cpuMsPerPatch.toFixed(0)
            } CPU-ms per sample`,
        );
      }
    }

    // workers one GPU step needs: batch × CPU time per patch / step time (one core per worker)
    for (const [name, label] of [["cache", "nnssl-mae"], ["cache_nnunet", "nnunet"]] as const) {
      const perPatch = figures[`${name}.w1.cpu_ms_per_patch`];
      log(
        `\nworkers one GPU step needs (batch 2 of 160³ from the cache, ${label} augmentation, ${
          perPatch.toFixed(0)
        } CPU-ms per patch):`,
      );
      for (const stepSeconds of [0.25, 0.5, 1]) {
        const need = Math.ceil((2 * perPatch) / (stepSeconds * 1000));
        figures[`${name}.workers_needed.step_${stepSeconds}s`] = need;
        log(`  GPU step ${stepSeconds} s → ${need} worker${need > 1 ? "s" : ""}`);
      }
    }
    return figures;
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** The data benchmark as a suite of `deno task bench` (the GPU context is not used). */
export const dataSuite: BenchSuite = {
  name: "data",
  gpuSeconds: 25,
  async run(ctx) {
    const figures = await runDataBench({ preset: ctx.preset, log: ctx.log });
    for (const [name, value] of Object.entries(figures)) {
      if (name.endsWith("_ms") || name.endsWith("_ms_per_patch")) {
        ctx.report({ suite: "data", name, shape: PATCH.join("×"), medianMs: value });
      }
    }
  },
};

if (import.meta.main) {
  const options = new Command()
    .name("data_bench")
    .option("--preset <preset>", "lavapipe (short, 2 cores) | gpu (more workers and batches)", "lavapipe")
    .option("--json <file>", "also write the figures as JSON")
    .parse(Deno.args, { from: "user" })
    .opts();
  if (options.preset !== "lavapipe" && options.preset !== "gpu") {
    throw new Error(`--preset: expected lavapipe or gpu, got ${options.preset}`);
  }
  const t = performance.now();
  const figures = await runDataBench({ preset: options.preset, log: (line) => console.log(line) });
  console.log(`\ndone in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  if (options.json) {
    const meta = {
      date: new Date().toISOString(),
      preset: options.preset,
      cores: navigator.hardwareConcurrency,
      cpu: cpuModel(),
      deno: Deno.version.deno,
    };
    await Deno.writeTextFile(options.json, JSON.stringify({ ...meta, figures }, null, 2) + "\n");
    console.log(`wrote ${options.json}`);
  }
}
