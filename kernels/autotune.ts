/**
 * The autotuner: tile and split-K choices of the convolution and matmul launchers measured on the device
 * instead of reasoned.
 *
 * Data flow: a launcher asks {@link tuned} for its choice, giving the op, a shape class (the parts of
 * the shape the choice depends on, with large sizes bucketed to powers of two), its candidates (the
 * reasoned choice first) and a probe (how to replay the call on scratch buffers of the same sizes).
 * Launchers record synchronously and timing needs the GPU to finish, so the first use of a class runs
 * the reasoned choice and leaves the class pending; at the next point that may wait (the trainer after
 * a step, `voxssl autotune --run`, a benchmark), {@link Autotuner.tunePending} replays each pending
 * class once per candidate under a timer (timestamp queries when the device has them, else wall-clock
 * around `queue.onSubmittedWorkDone`: `Gpu.time`), keeps the fastest, and saves the choices to the
 * disk cache (kernels/autotune_cache.ts) keyed by adapter and driver. Later calls, and later processes
 * on the same adapter, use the choice directly.
 *
 * Off unless an {@link Autotuner} is attached to the device ({@link attachAutotuner}; the pretrain
 * command does it on hardware adapters unless `VOXSSL_AUTOTUNE=0` or `--no-autotune`, and on CPU
 * adapters only with `VOXSSL_AUTOTUNE=1`), so library calls and tests run the reasoned choices and stay
 * deterministic. A cached choice that is not among the current candidates
 * (another version's tiles, other limits) is ignored.
 */
import type { Gpu } from "../core/gpu/mod.ts";
import {
  type AdapterIdentity,
  adapterIdentity,
  defaultCachePath,
  mergeClasses,
  readCacheFile,
  type TuneRecord,
} from "./autotune_cache.ts";

/** Buffers and a recording of one replayed launcher call, for timing. */
export interface TuneProbe {
  /** Records the call (dispatches only). */
  record(): void;
  /** Returns the probe's scratch buffers. */
  dispose(): void;
}

/** What a launcher asks the autotuner. */
export interface TuneRequest<C> {
  /** The kernel family, e.g. "conv3d_fwd". */
  op: string;
  /** The shape class within the family (what the best choice depends on). */
  shapeClass: string;
  /** The choices to time; the first is the reasoned default. */
  candidates: C[];
  /** A stable key of a choice (the cache stores keys). */
  keyOf(choice: C): string;
  /** Replays the call on fresh buffers of the same sizes (called only when the class is tuned). */
  probe(): TuneProbe;
}

/** Times `record` on the device; `candidate` and `shapeClass` name what is timed (for fake timers). */
export type TuneTimer = (
  record: () => void,
  candidate: string,
  shapeClass: string,
) => Promise<{ ms: number; source: string }>;

/** Options of an {@link Autotuner}. */
export interface AutotunerOptions {
  /** Cache file; null keeps the measurements in memory only. Default {@link defaultCachePath}. */
  cachePath?: string | null;
  /** Timer; default: one untimed run, then the median of `repeats` runs of `Gpu.time`. */
  timer?: TuneTimer;
  /** Timed runs per candidate for the default timer; default 3. */
  repeats?: number;
  /** Warnings (a corrupt cache, a candidate that failed); default console.warn. */
  warn?: (message: string) => void;
}

/** One class tuned by {@link Autotuner.tunePending}. */
export interface TuneResult {
  /** "op|shapeClass". */
  key: string;
  record: TuneRecord;
  /** Key of the reasoned default choice. */
  defaultChoice: string;
}

interface Pending {
  candidates: string[];
  probe: () => TuneProbe;
}

/** When the pretrain command tunes: always, never, or on hardware adapters only ("auto"). */
export type AutotuneMode = "on" | "off" | "auto";

/**
 * The mode a value of `VOXSSL_AUTOTUNE` asks for: 0, off, false, no → "off"; 1, on, true, yes → "on";
 * unset or empty → "auto" (on, except on CPU adapters such as lavapipe, where compiling the candidates
 * costs minutes and the times say nothing about a GPU).
 * @throws RangeError on any other value.
 */
export function autotuneSwitch(value: string | undefined): AutotuneMode {
  const v = (value ?? "").trim().toLowerCase();
  if (["0", "off", "false", "no"].includes(v)) return "off";
  if (["1", "on", "true", "yes"].includes(v)) return "on";
  if (v === "" || v === "auto") return "auto";
  throw new RangeError(`VOXSSL_AUTOTUNE: expected 0/off, 1/on or auto, got "${value}"`);
}

/** The mode `VOXSSL_AUTOTUNE` asks for ({@link autotuneSwitch}); "off" without env access (sandbox). */
export function autotuneModeFromEnvironment(): AutotuneMode {
  let value: string | undefined;
  try {
    value = Deno.env.get("VOXSSL_AUTOTUNE");
  } catch {
    return "off";
  }
  return autotuneSwitch(value);
}

/** Whether `mode` tunes on `gpu` ("auto": not on a CPU fallback adapter). */
export function autotuneApplies(mode: AutotuneMode, gpu: Pick<Gpu, "adapterInfo">): boolean {
  return mode === "on" || (mode === "auto" && !gpu.adapterInfo.isFallbackAdapter);
}

/** The smallest power of two ≥ v (shape-class buckets of large sizes). */
export function bucket(v: number): number {
  return v <= 1 ? 1 : 2 ** Math.ceil(Math.log2(v));
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Measured tile choices of one device, their pending shape classes and their cache. */
export class Autotuner {
  /** The adapter and driver this tuner's choices belong to. */
  readonly identity: AdapterIdentity;
  /** The cache file (null: memory only). */
  readonly cachePath: string | null;
  readonly #timer: TuneTimer;
  readonly #warn: (message: string) => void;
  readonly #choices = new Map<string, TuneRecord>();
  readonly #pending = new Map<string, Pending>();
  readonly #failed = new Set<string>();
  #forced: { key: string; choice: string } | undefined;
  #tuning = false;

  constructor(gpu: Gpu, options: AutotunerOptions = {}) {
    this.identity = adapterIdentity(gpu);
    this.cachePath = options.cachePath === undefined ? defaultCachePath() : options.cachePath;
    this.#warn = options.warn ?? ((m) => console.warn(`voxssl: ${m}`));
    const repeats = options.repeats ?? 3;
    this.#timer = options.timer ?? (async (record) => {
      record(); // compiles the variant and warms caches
      await gpu.sync();
      const runs: number[] = [];
      let source = "wall-clock";
      for (let i = 0; i < repeats; i++) {
        const t = await gpu.time(record);
        runs.push(t.ms);
        source = t.source;
      }
      return { ms: median(runs), source };
    });
  }

  /** Loads this adapter's entry of the cache file (a corrupt file is ignored with a warning). */
  async load(): Promise<void> {
    if (this.cachePath === null) return;
    const cache = await readCacheFile(this.cachePath, this.#warn);
    const entry = cache.adapters[this.identity.key];
    for (const [key, record] of Object.entries(entry?.classes ?? {})) this.#choices.set(key, record);
  }

  /** The choice for a request: forced (while timing), measured, or the reasoned default. */
  choose<C>(req: TuneRequest<C>): C {
    const key = `${req.op}|${req.shapeClass}`;
    const candidates = req.candidates;
    const wanted = this.#forced?.key === key ? this.#forced.choice : this.#choices.get(key)?.choice;
    if (wanted !== undefined) {
      const hit = candidates.find((c) => req.keyOf(c) === wanted);
      if (hit !== undefined) return hit; // a choice may be falsy (0 slabs: the 7-pass backward)
    } else if (!this.#tuning && !this.#pending.has(key) && !this.#failed.has(key)) {
      this.#pending.set(key, { candidates: candidates.map((c) => req.keyOf(c)), probe: req.probe });
    }
    return candidates[0];
  }

  /** Shape classes met but not measured yet, with their candidates' keys. */
  get pending(): { key: string; candidates: string[] }[] {
    return [...this.#pending].map(([key, p]) => ({ key, candidates: [...p.candidates] }));
  }

  /** The measured choices (of the cache and of this process), by "op|shapeClass". */
  get choices(): ReadonlyMap<string, TuneRecord> {
    return this.#choices;
  }

  /** Runs `fn` with `choice` forced for the class `key` ("op|shapeClass"): tests and benchmarks. */
  withForced<T>(key: string, choice: string, fn: () => T): T {
    const saved = this.#forced;
    this.#forced = { key, choice };
    try {
      return fn();
    } finally {
      this.#forced = saved;
    }
  }

  /**
   * Times every candidate of every pending class, keeps the fastest, and saves the new choices to the
   * cache file. `onClass` hears of each class before it is timed (progress for a watchdog). A candidate that fails (it does not compile, the device runs out of memory) counts as
   * infinitely slow, with a warning; a class whose probe cannot be built is left to its default.
   */
  async tunePending(onClass?: (key: string, index: number, total: number) => void): Promise<TuneResult[]> {
    const results: TuneResult[] = [];
    const work = [...this.#pending];
    this.#pending.clear();
    this.#tuning = true;
    try {
      for (const [index, [key, pending]] of work.entries()) {
        onClass?.(key, index, work.length);
        let probe: TuneProbe;
        try {
          probe = pending.probe();
        } catch (error) {
          this.#failed.add(key);
          this.#warn(`autotune ${key}: cannot replay it (${(error as Error).message}); keeping the default`);
          continue;
        }
        const ms: Record<string, number | null> = {};
        let best = pending.candidates[0];
        let bestMs = Infinity;
        let source = "";
        try {
          for (const candidate of pending.candidates) {
            try {
              const record = () => this.withForced(key, candidate, () => probe.record());
              const t = await this.#timer(record, candidate, key);
              ms[candidate] = t.ms;
              source = t.source;
              if (t.ms < bestMs) {
                best = candidate;
                bestMs = t.ms;
              }
            } catch (error) {
              ms[candidate] = null;
              this.#warn(`autotune ${key}: candidate ${candidate} failed (${(error as Error).message})`);
            }
          }
        } finally {
          probe.dispose();
        }
        if (bestMs === Infinity) {
          this.#failed.add(key);
          continue;
        }
        const record: TuneRecord = { choice: best, ms, source, at: new Date().toISOString() };
        this.#choices.set(key, record);
        results.push({ key, record, defaultChoice: pending.candidates[0] });
      }
    } finally {
      this.#tuning = false;
    }
    if (results.length > 0 && this.cachePath !== null) {
      // a cache that cannot be written (permissions, a full disk) costs re-tuning later, never the run
      await mergeClasses(
        this.cachePath,
        this.identity,
        Object.fromEntries(results.map((r) => [r.key, r.record])),
        this.#warn,
      ).catch((error) =>
        this.#warn(`autotune cache ${this.cachePath} not saved: ${(error as Error).message}`)
      );
    }
    return results;
  }
}

const tuners = new WeakMap<Gpu, Autotuner>();

/** Makes `gpu`'s launchers ask `tuner` for their choices (until {@link detachAutotuner}). */
export function attachAutotuner(gpu: Gpu, tuner: Autotuner): void {
  tuners.set(gpu, tuner);
}

/** Returns `gpu`'s launchers to the reasoned choices. */
export function detachAutotuner(gpu: Gpu): void {
  tuners.delete(gpu);
}

/** The autotuner attached to `gpu`, if any. */
export function autotunerOf(gpu: Gpu): Autotuner | undefined {
  return tuners.get(gpu);
}

/**
 * Creates an autotuner for `gpu` with its cache loaded and attaches it; returns the one already attached
 * when there is one.
 */
export async function enableAutotune(gpu: Gpu, options: AutotunerOptions = {}): Promise<Autotuner> {
  const existing = tuners.get(gpu);
  if (existing) return existing;
  const tuner = new Autotuner(gpu, options);
  await tuner.load();
  tuners.set(gpu, tuner);
  return tuner;
}

/** The launchers' entry: the choice for `req` from `gpu`'s autotuner, or the reasoned default without one. */
export function tuned<C>(gpu: Gpu, req: TuneRequest<C>): C {
  const tuner = tuners.get(gpu);
  return tuner ? tuner.choose(req) : req.candidates[0];
}
