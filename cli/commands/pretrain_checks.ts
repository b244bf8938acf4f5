/**
 * Checks of a pretraining request before anything is allocated or trained: flags given with `--resume`
 * (safe ones applied, the rest refused), the patch against the architecture, and the host memory the
 * batch, patch and data workers need against what the machine has.
 *
 * @module
 */
import type { ArchitecturePlugin } from "../../core/plugin/mod.ts";
import type { ResolvedRunConfig } from "../../core/train/mod.ts";
import { ConfigError } from "../errors.ts";
import { number } from "../flag_values.ts";

/** Flags that change what a run computes; with `--resume` they are refused (the checkpoint decides). */
const FIXED_ON_RESUME: Record<string, string> = {
  arch: "--arch",
  method: "--method",
  data: "--data",
  steps: "--steps",
  batch: "--batch",
  patch: "--patch",
  lr: "--lr",
  precision: "--precision",
  seed: "--seed",
  config: "--config",
  out: "--out",
  overwrite: "--overwrite",
};

/**
 * Applies the flags given with `--resume` to the checkpoint's config: `--epochs` (at least the epochs
 * already done; the schedule follows the new length), `--workers` and `--sample-timeout`; any flag that
 * would change what the run computes is refused, naming it. Returns notes to print.
 */
export function applyResumeFlags(
  resolved: ResolvedRunConfig,
  flags: Record<string, unknown>,
  doneEpochs: number,
): string[] {
  const refused = Object.entries(FIXED_ON_RESUME).filter(([key]) => flags[key] !== undefined).map(([, f]) =>
    f
  );
  if (refused.length > 0) {
    throw new ConfigError(
      `--resume ${resolved.out}: ${
        refused.join(", ")
      } cannot change on resume (the checkpoint fixes them); ` +
        `only --epochs, --workers and --sample-timeout can. Start a new run (--out) to change them`,
    );
  }
  const notes: string[] = [];
  const workers = number(flags.workers as string | undefined, "--workers", Number.isInteger, "an integer");
  if (workers !== undefined) resolved.workers = workers;
  const timeout = number(
    flags.sampleTimeout as string | undefined,
    "--sample-timeout",
    (x) => x > 0,
    "seconds > 0",
  );
  if (timeout !== undefined) resolved.sampleTimeoutSeconds = timeout;
  if (flags.epochs !== undefined) {
    const epochs = Number(flags.epochs);
    if (!Number.isInteger(epochs) || epochs <= 0) {
      throw new ConfigError(`--epochs: expected a positive integer, got "${flags.epochs}"`);
    }
    if (epochs < doneEpochs) {
      throw new ConfigError(
        `--epochs ${epochs}: the run in ${resolved.out} has already done ${doneEpochs} epochs; give at least that`,
      );
    }
    if (epochs !== resolved.epochs) {
      notes.push(
        `--epochs ${epochs}: the run continues to ${epochs} epochs (was ${resolved.epochs}); ` +
          `the learning-rate schedule follows the new length`,
      );
      resolved.epochs = epochs;
    }
  }
  return notes;
}

/** Refuses a patch the architecture cannot take (each side a multiple of its stride or patch embedding). */
export function checkPatchFitsArchitecture(resolved: ResolvedRunConfig, arch: ArchitecturePlugin): void {
  const multiple = arch.patchMultiple?.(resolved.resolvedArch.config);
  if (!multiple) return;
  const bad = resolved.patch.some((p, i) => p % multiple[i] !== 0);
  if (!bad) return;
  const fitted = resolved.patch.map((p, i) =>
    Math.max(multiple[i], Math.round(p / multiple[i]) * multiple[i])
  );
  throw new ConfigError(
    `--patch ${resolved.patch.join("×")}: ${arch.name} needs each side to be a multiple of ` +
      `${multiple.join("×")}; e.g. --patch ${fitted.join(",")}`,
  );
}

/** Memory a data worker takes before it holds any sample (a V8 isolate with voxssl's code loaded). */
export const WORKER_BASE_BYTES = 160 * 2 ** 20;

/** The host memory a run's batches and workers need (a generous estimate of the loader's peak). */
export function estimateHostBytes(
  c: { batch: number; patch: number[]; inChannels: number; workers: number },
): {
  total: number;
  perSample: number;
} {
  const voxels = c.patch.reduce((a, b) => a * b, 1);
  // image and target/mask as f32, in the worker and again on the main thread
  const perSample = voxels * c.inChannels * 4 * 2;
  // each worker: its isolate and the sample it is making; the main thread: the batch being assembled,
  // the one being uploaded and the prefetched ones
  const total = c.workers * (WORKER_BASE_BYTES + perSample) + 4 * c.batch * perSample;
  return { total, perSample };
}

const GiB = (bytes: number) => `${(bytes / 2 ** 30).toFixed(bytes < 2 ** 30 ? 2 : 1)} GiB`;

/**
 * Refuses a batch, patch or worker count whose estimated memory exceeds `available` bytes, saying what
 * would fit. `available` defaults to the machine's available memory (no check when it cannot be read,
 * e.g. inside the sandbox, whose launcher checked already).
 */
export function checkMemoryFits(
  c: { batch: number; patch: number[]; inChannels: number; workers: number },
  available: number | undefined = availableMemory(),
): void {
  if (available === undefined) return;
  const { total, perSample } = estimateHostBytes(c);
  if (total <= available) return;
  const workerCost = WORKER_BASE_BYTES + perSample;
  const maxBatch = Math.floor((available - c.workers * workerCost) / (4 * perSample));
  const maxWorkers = Math.floor((available - 4 * c.batch * perSample) / workerCost);
  const options = [
    maxBatch >= 1 ? `--batch ${maxBatch}` : undefined,
    maxWorkers >= 0 && maxWorkers !== c.workers ? `--workers ${maxWorkers}` : undefined,
  ].filter(Boolean);
  throw new ConfigError(
    `--batch ${c.batch} × --patch ${c.patch.join("×")} with --workers ${c.workers} needs about ${
      GiB(total)
    } ` +
      `of memory, ${GiB(available)} is available; ` +
      (options.length > 0
        ? `at most ${options.join(" or ")} would fit`
        : `even one sample of this patch does not fit: choose a smaller --patch`),
  );
}

function availableMemory(): number | undefined {
  try {
    return Deno.systemMemoryInfo().available;
  } catch {
    return undefined;
  }
}
