/**
 * The autotuner's cache on disk: one JSON file (default `~/.cache/voxssl/autotune.json`, or
 * `$XDG_CACHE_HOME/voxssl/autotune.json`, or the path in `VOXSSL_AUTOTUNE_CACHE`) holding, per adapter,
 * the choice measured for each shape class.
 *
 * Keyed by adapter: vendor, architecture, device and description as WebGPU reports them, and the driver.
 * WebGPU does not expose the driver's version, so the driver part is the backend, Deno's version (which
 * pins wgpu) and, on Linux with NVIDIA's driver, the first line of /proc/driver/nvidia/version (Mesa's
 * software adapter puts its LLVM version into the description).
 *
 * Safe under concurrency (MPI ranks tuning at once): a writer takes a lock file (created exclusively;
 * one older than a minute is taken as stale), re-reads the file, merges its classes into it and writes it
 * through a temporary file and a rename, so a reader sees the old or the new file, never a torn one. A
 * file that does not parse, or has another layout, is ignored with a warning (and replaced on the next
 * write).
 */
import type { Gpu } from "../core/gpu/mod.ts";

/** What was measured for one shape class. */
export interface TuneRecord {
  /** Key of the chosen candidate. */
  choice: string;
  /** Median time of each candidate, in milliseconds (Infinity as null in JSON: it failed). */
  ms: Record<string, number | null>;
  /** How the times were taken ("timestamp-query", "wall-clock", or a test's fake timer). */
  source: string;
  /** ISO date of the measurement. */
  at: string;
}

/** The identity an entry of the cache belongs to. */
export interface AdapterIdentity {
  /** The whole identity in one string: the key of the cache entry. */
  key: string;
  adapter: { vendor: string; architecture: string; device: string; description: string };
  driver: string;
}

/** One adapter's entry. */
export interface AdapterEntry {
  adapter: AdapterIdentity["adapter"];
  driver: string;
  /** Tuned shape classes, by "op|class". */
  classes: Record<string, TuneRecord>;
}

/** The file's layout. */
export interface CacheFile {
  version: 1;
  adapters: Record<string, AdapterEntry>;
}

const LOCK_STALE_MS = 60_000;
const LOCK_WAIT_MS = 10_000;

function envVar(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

/** The cache path: `VOXSSL_AUTOTUNE_CACHE`, else under `XDG_CACHE_HOME` or `~/.cache`. */
export function defaultCachePath(): string {
  const explicit = envVar("VOXSSL_AUTOTUNE_CACHE");
  if (explicit) return explicit;
  const base = envVar("XDG_CACHE_HOME") || `${envVar("HOME") ?? "."}/.cache`;
  return `${base}/voxssl/autotune.json`;
}

function driverOf(gpu: Pick<Gpu, "backend" | "adapterInfo">): string {
  const parts = [`backend ${gpu.backend}`, `Deno ${Deno.version.deno}`];
  if (gpu.adapterInfo.vendor === "nvidia" || gpu.adapterInfo.vendor === "4318") {
    try {
      const line = Deno.readTextFileSync("/proc/driver/nvidia/version").split("\n")[0].trim();
      if (line) parts.push(line);
    } catch {
      // not Linux, or no read permission: the key goes without it
    }
  }
  return parts.join("; ");
}

/** The adapter and driver identity of `gpu` (the key of its cache entry). */
export function adapterIdentity(gpu: Pick<Gpu, "backend" | "adapterInfo">): AdapterIdentity {
  const i = gpu.adapterInfo;
  const adapter = {
    vendor: i.vendor ?? "",
    architecture: i.architecture ?? "",
    device: i.device ?? "",
    description: i.description ?? "",
  };
  const driver = driverOf(gpu);
  const key = [adapter.vendor, adapter.architecture, adapter.device, adapter.description, driver].join(" | ");
  return { key, adapter, driver };
}

function emptyCache(): CacheFile {
  return { version: 1, adapters: {} };
}

function isCacheFile(v: unknown): v is CacheFile {
  if (typeof v !== "object" || v === null) return false;
  const c = v as Partial<CacheFile>;
  if (c.version !== 1 || typeof c.adapters !== "object" || c.adapters === null) return false;
  return Object.values(c.adapters).every((e) =>
    typeof e === "object" && e !== null && typeof e.classes === "object" && e.classes !== null &&
    Object.values(e.classes).every((r) => typeof r === "object" && r !== null && typeof r.choice === "string")
  );
}

/**
 * Reads the cache file. A missing file is an empty cache; one that does not parse or has another layout
 * is reported through `warn` and read as empty.
 */
export async function readCacheFile(path: string, warn: (message: string) => void): Promise<CacheFile> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return emptyCache();
    warn(`autotune cache ${path} cannot be read (${(error as Error).message}); tuning without it`);
    return emptyCache();
  }
  try {
    const parsed = JSON.parse(text);
    if (isCacheFile(parsed)) return parsed;
    warn(`autotune cache ${path} is not a voxssl autotune cache (version 1); ignoring it`);
  } catch (error) {
    warn(`autotune cache ${path} is corrupt (${(error as Error).message}); ignoring it`);
  }
  return emptyCache();
}

async function takeLock(lock: string): Promise<boolean> {
  const deadline = Date.now() + LOCK_WAIT_MS;
  while (true) {
    try {
      const file = await Deno.open(lock, { createNew: true, write: true });
      file.close();
      return true;
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
    }
    const stat = await Deno.stat(lock).catch(() => undefined);
    if (stat?.mtime && Date.now() - stat.mtime.getTime() > LOCK_STALE_MS) {
      await Deno.remove(lock).catch(() => {});
      continue;
    }
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20 + Math.random() * 30));
  }
}

/**
 * Changes the file under its lock: reads it (a corrupt file reads as empty), applies `change`, writes
 * it atomically. Returns false, after a warning, when the lock stays taken for 10 s.
 */
export async function updateCacheFile(
  path: string,
  change: (cache: CacheFile) => void,
  warn: (message: string) => void,
): Promise<boolean> {
  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : ".";
  await Deno.mkdir(dir || "/", { recursive: true });
  const lock = `${path}.lock`;
  if (!(await takeLock(lock))) {
    warn(`autotune cache ${path}: ${lock} stayed locked for ${LOCK_WAIT_MS / 1000} s; results not saved`);
    return false;
  }
  try {
    const cache = await readCacheFile(path, warn);
    change(cache);
    const tmp = `${path}.${Deno.pid}.${crypto.randomUUID()}.tmp`;
    await Deno.writeTextFile(tmp, JSON.stringify(cache, null, 1) + "\n");
    await Deno.rename(tmp, path);
    return true;
  } finally {
    await Deno.remove(lock).catch(() => {});
  }
}

/** Merges `classes` into the entry of `identity` (new measurements replace old ones of the same class). */
export function mergeClasses(
  path: string,
  identity: AdapterIdentity,
  classes: Record<string, TuneRecord>,
  warn: (message: string) => void,
): Promise<boolean> {
  return updateCacheFile(path, (cache) => {
    const entry = cache.adapters[identity.key] ??= {
      adapter: identity.adapter,
      driver: identity.driver,
      classes: {},
    };
    Object.assign(entry.classes, classes);
  }, warn);
}

/**
 * Clears the cache: only the entry of `adapterKey` when given, else the whole file (removed). Returns the
 * number of shape classes removed.
 */
export async function clearCache(
  path: string,
  warn: (message: string) => void,
  adapterKey?: string,
): Promise<number> {
  let removed = 0;
  if (adapterKey === undefined) {
    const cache = await readCacheFile(path, warn);
    removed = Object.values(cache.adapters).reduce((s, e) => s + Object.keys(e.classes).length, 0);
    await Deno.remove(path).catch((error) => {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    });
    return removed;
  }
  await updateCacheFile(path, (cache) => {
    removed = Object.keys(cache.adapters[adapterKey]?.classes ?? {}).length;
    delete cache.adapters[adapterKey];
  }, warn);
  return removed;
}
