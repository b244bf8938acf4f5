/**
 * The autotuner (kernels/autotune.ts, kernels/autotune_cache.ts) without timing anything real: the
 * search against an injected fake timer, the reasoned plan when no tuner is attached, the disk cache
 * (round trip, keying by adapter and driver, a corrupt file, concurrent writers, clearing), all on a
 * device that records dispatches instead of running them. The numerics of every candidate are checked
 * on lavapipe in autotune_candidates_test.ts.
 */
import { assert, assertEquals, assertThrows } from "../assert.ts";
import type { Gpu } from "../../core/gpu/mod.ts";
import {
  adapterIdentity,
  attachAutotuner,
  autotuneApplies,
  Autotuner,
  autotunerOf,
  autotuneSwitch,
  chooseTile,
  clearCache,
  type Conv3dGeometry,
  convCandidates,
  convChoiceKey,
  convOutputSize,
  detachAutotuner,
  matmulCandidates,
  mergeClasses,
  readCacheFile,
  runConv3dForward,
  runMatmul,
  tileKey,
  type TuneTimer,
} from "../../kernels/mod.ts";
import { startAutotune, tuneNewShapes } from "../../core/train/autotune_step.ts";
import { currentActivity } from "../../core/plugin/activity.ts";
import {
  bufferRange as range,
  H100_LIMITS as LIMITS,
  recordingGpu as recordingDevice,
} from "../_helpers/recording_gpu.ts";

const INFO = { vendor: "nvidia", architecture: "hopper", device: "h100", description: "NVIDIA H100" };

/** A device that records the names of the kernels it is asked to dispatch. */
function recordingGpu(log: string[], info: Partial<GPUAdapterInfo> = INFO): Gpu {
  return recordingDevice({ adapterInfo: info, backend: "vulkan", dispatch: (name) => log.push(name) });
}

const t3 = (v: number) => [v, v, v] as [number, number, number];
const G: Conv3dGeometry = {
  batch: 2,
  cin: 64,
  cout: 64,
  in: t3(12),
  out: t3(convOutputSize(12, 3, 1, 1)),
  kernel: t3(3),
  stride: t3(1),
  padding: t3(1),
};
const forward = (gpu: Gpu) => {
  const sx = G.batch * G.cin * 12 ** 3;
  runConv3dForward(gpu, G, { x: range(sx), w: range(64 * 64 * 27), y: range(sx) });
};

const noWarnings = (message: string) => {
  throw new Error(`unexpected warning: ${message}`);
};

Deno.test("autotune: the search keeps the candidate an injected fake timer finds fastest, and launches use it", async () => {
  const log: string[] = [];
  const gpu = recordingGpu(log);
  const m = G.batch * 12 ** 3;
  const candidates = convCandidates(LIMITS, m, 64, 64 * 27, "m").map(convChoiceKey);
  assert(candidates.length >= 4, `few candidates: ${candidates}`);
  // a made-up time per candidate whose minimum is neither the first nor the last
  const fastest = candidates[2];
  const fake: Record<string, number> = Object.fromEntries(
    candidates.map((c, i) => [c, c === fastest ? 0.5 : 3 + i]),
  );
  const timed: string[] = [];
  const timer: TuneTimer = (record, candidate) => {
    log.length = 0;
    record();
    // the probe replays the launcher with the candidate forced: its tile is in the kernel's name
    const tile = candidate.split("|")[0];
    assert(log.some((name) => name.includes(tile)), `${candidate} not dispatched: ${log}`);
    timed.push(candidate);
    return Promise.resolve({ ms: fake[candidate], source: "fake" });
  };
  const tuner = new Autotuner(gpu, { cachePath: null, timer, warn: noWarnings });
  attachAutotuner(gpu, tuner);
  try {
    forward(gpu);
    const pending = tuner.pending;
    assertEquals(pending.length, 1);
    assertEquals(pending[0].candidates, candidates);
    const [result] = await tuner.tunePending();
    assertEquals(timed, candidates, "every candidate timed once, in order");
    assertEquals(result.record.choice, fastest);
    assertEquals(result.defaultChoice, candidates[0]);
    assertEquals(result.record.ms, fake);
    assertEquals(tuner.pending.length, 0);
    log.length = 0;
    forward(gpu);
    assert(log[0].includes(fastest.split("|")[0]), `launch after tuning uses ${fastest}: ${log[0]}`);
    assertEquals(tuner.pending.length, 0, "a tuned class is not pending again");
  } finally {
    detachAutotuner(gpu);
  }
});

Deno.test("autotune: without a tuner (disabled) launchers use the reasoned plan, and a cached choice that is not a candidate is ignored", async () => {
  const log: string[] = [];
  const gpu = recordingGpu(log);
  const m = G.batch * 12 ** 3;
  const reasoned = tileKey(chooseTile(LIMITS, m, 64, "m"));
  forward(gpu);
  assert(log[0].includes(reasoned), `${log[0]} uses ${reasoned}`);
  // a tuner whose cache holds an unknown choice for this class falls back to the reasoned tile
  const dir = await Deno.makeTempDir();
  const path = `${dir}/autotune.json`;
  try {
    const tuner = new Autotuner(gpu, { cachePath: path, warn: noWarnings });
    const cls = `conv3d_fwd|3,3,3/1,1,1/1,1,1:scalar11:m4096:n64:k2048`;
    await mergeClasses(path, tuner.identity, {
      [cls]: { choice: "999x999x16/8x8m|s512", ms: {}, source: "fake", at: "" },
    }, noWarnings);
    await tuner.load();
    assert(tuner.choices.has(cls));
    attachAutotuner(gpu, tuner);
    log.length = 0;
    forward(gpu);
    assert(log[0].includes(reasoned), `${log[0]} uses ${reasoned}`);
    assertEquals(tuner.pending.length, 0, "the cached class is not re-tuned");
  } finally {
    detachAutotuner(gpu);
    await Deno.remove(dir, { recursive: true });
  }
  // the environment switch: VOXSSL_AUTOTUNE=0 (or off/false/no) disables, 1 forces, unset means auto
  for (const off of ["0", "off", "FALSE", " no "]) assertEquals(autotuneSwitch(off), "off", off);
  for (const on of ["1", "on", "Yes"]) assertEquals(autotuneSwitch(on), "on", on);
  for (const auto of [undefined, "", "auto"]) assertEquals(autotuneSwitch(auto), "auto", String(auto));
  assertThrows(() => autotuneSwitch("sometimes"), RangeError, "VOXSSL_AUTOTUNE");
  const cpu = { adapterInfo: { isFallbackAdapter: true } as GPUAdapterInfo };
  const hardware = { adapterInfo: { isFallbackAdapter: false } as GPUAdapterInfo };
  assertEquals([autotuneApplies("auto", cpu), autotuneApplies("auto", hardware)], [false, true]);
  assertEquals([autotuneApplies("on", cpu), autotuneApplies("off", hardware)], [true, false]);
});

Deno.test("autotune: the cache round-trips through its file, keyed by adapter and driver", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/sub/autotune.json`;
  try {
    const gpu = recordingGpu([]);
    const timer: TuneTimer = (record, candidate) => {
      record();
      return Promise.resolve({ ms: candidate === "32x64" ? 1 : 2, source: "fake" });
    };
    const tuner = new Autotuner(gpu, { cachePath: path, timer, warn: noWarnings });
    attachAutotuner(gpu, tuner);
    try {
      const s = {
        batch: 1,
        m: 100,
        n: 90,
        k: 80,
        transA: false,
        transB: false,
        aBatchStride: 0,
        bBatchStride: 0,
      };
      runMatmul(gpu, "f32", range(8000), range(7200), range(9000), s);
      const [r] = await tuner.tunePending();
      assertEquals(r.record.choice, "32x64");
      assertEquals(r.defaultChoice, "64x64");
      assertEquals(Object.keys(r.record.ms), matmulCandidates(LIMITS).map((t) => `${t.bm}x${t.bn}`));
    } finally {
      detachAutotuner(gpu);
    }
    const file = await readCacheFile(path, noWarnings);
    const entry = file.adapters[tuner.identity.key];
    assertEquals(entry.adapter, INFO);
    assert(entry.driver.includes("backend vulkan") && entry.driver.includes(Deno.version.deno), entry.driver);
    assertEquals(Object.keys(entry.classes), ["matmul|f32:00:100:b1:m128:n128:k128"]);
    // a new process on the same adapter reads it back; another adapter or driver does not see it
    const again = new Autotuner(recordingGpu([]), { cachePath: path, warn: noWarnings });
    await again.load();
    assertEquals(again.choices.get("matmul|f32:00:100:b1:m128:n128:k128")?.choice, "32x64");
    for (const other of [{ description: "NVIDIA A100" }, { device: "h200" }, { vendor: "amd" }]) {
      const elsewhere = new Autotuner(recordingGpu([], { ...INFO, ...other }), { cachePath: path });
      await elsewhere.load();
      assertEquals(elsewhere.choices.size, 0, JSON.stringify(other));
    }
    const metal = { ...recordingGpu([]), backend: "metal" } as Gpu;
    assert(adapterIdentity(metal).key !== tuner.identity.key, "the backend is part of the driver key");
    // clearing one adapter's entry, then the whole file
    await mergeClasses(path, adapterIdentity(metal), {
      "matmul|x": { choice: "64x64", ms: {}, source: "fake", at: "" },
    }, noWarnings);
    assertEquals(await clearCache(path, noWarnings, tuner.identity.key), 1);
    const left = await readCacheFile(path, noWarnings);
    assertEquals(Object.keys(left.adapters), [adapterIdentity(metal).key]);
    assertEquals(await clearCache(path, noWarnings), 1);
    assertEquals((await readCacheFile(path, noWarnings)).adapters, {});
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("autotune: a corrupt cache is ignored with a warning and replaced; concurrent writers and a stale lock leave a whole file", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/autotune.json`;
  try {
    const identity = adapterIdentity(recordingGpu([]));
    for (const garbage of ['{"version": 1, "adapters": {"a": {"cla', '{"version": 7}', "[]"]) {
      await Deno.writeTextFile(path, garbage);
      const warnings: string[] = [];
      const read = await readCacheFile(path, (m) => warnings.push(m));
      assertEquals(read.adapters, {});
      assertEquals(warnings.length, 1, garbage);
      assert(warnings[0].includes(path), warnings[0]);
    }
    // writers racing (as MPI ranks would) each merge their own class through the lock
    const writers = Array.from({ length: 8 }, (_, i) =>
      mergeClasses(path, identity, {
        [`conv3d_fwd|class${i}`]: { choice: `c${i}`, ms: { [`c${i}`]: i }, source: "fake", at: "" },
      }, () => {}));
    assertEquals(await Promise.all(writers), Array(8).fill(true));
    const merged = await readCacheFile(path, noWarnings);
    assertEquals(
      Object.keys(merged.adapters[identity.key].classes).sort(),
      [0, 1, 2, 3, 4, 5, 6, 7].map((i) => `conv3d_fwd|class${i}`),
    );
    // a lock left behind by a killed process is taken over once it is older than a minute
    const lock = `${path}.lock`;
    await Deno.writeTextFile(lock, "");
    const old = new Date(Date.now() - 120_000);
    await Deno.utime(lock, old, old);
    assert(
      await mergeClasses(
        path,
        identity,
        { "matmul|y": { choice: "64x64", ms: {}, source: "f", at: "" } },
        noWarnings,
      ),
    );
    assertEquals(
      Object.keys((await readCacheFile(path, noWarnings)).adapters[identity.key].classes).length,
      9,
    );
    const leftovers = [...Deno.readDirSync(dir)].map((e) => e.name);
    assertEquals(leftovers, ["autotune.json"], "no temporary or lock files left");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("autotune: the trainer's hooks attach a tuner only where the mode applies, and tune the classes a step met", async () => {
  const lines: string[] = [];
  const log = (line: string) => lines.push(line);
  const timer: TuneTimer = (record, candidate) => {
    record();
    return Promise.resolve({ ms: candidate.length, source: "fake" });
  };
  const cpu = recordingGpu([], { ...INFO, isFallbackAdapter: true });
  await startAutotune(cpu, "auto", log, { cachePath: null, timer });
  assertEquals(autotunerOf(cpu), undefined, "auto leaves a CPU adapter untuned");
  assert(lines[0].includes("off on a CPU adapter"), lines[0]);
  const gpu = recordingGpu([], { ...INFO, isFallbackAdapter: false });
  try {
    await startAutotune(gpu, "auto", log, { cachePath: null, timer });
    assert(autotunerOf(gpu) !== undefined, "auto tunes a hardware adapter");
    assert(lines[1].startsWith("autotune: on (0 shape classes cached"), lines[1]);
    assertEquals(await tuneNewShapes(gpu, log), false, "nothing met yet");
    forward(gpu); // the step
    assertEquals(await tuneNewShapes(gpu, log), true);
    assert(lines[2].startsWith("autotune: timed 1 new shape classes"), lines[2]);
    // each class timed moved the activity record the stall watchdog reads
    assert(currentActivity().startsWith("autotuning conv3d_fwd|") && currentActivity().endsWith("(1/1)"));
    forward(gpu);
    assertEquals(await tuneNewShapes(gpu, log), false, "a tuned class is not timed again");
  } finally {
    detachAutotuner(gpu);
  }
});

Deno.test("autotune: a candidate that fails counts as slowest with a warning; a class that cannot be replayed keeps its default", async () => {
  const gpu = recordingGpu([]);
  const warnings: string[] = [];
  const timer: TuneTimer = (record, candidate, shapeClass) => {
    if (shapeClass.startsWith("matmul")) throw new Error("probe should not get here");
    record();
    if (candidate === "128x64x16/8x8m|s512") {
      return Promise.reject(new Error("out of memory"));
    }
    return Promise.resolve({ ms: 10 - candidate.length / 10, source: "fake" });
  };
  const tuner = new Autotuner(gpu, { cachePath: null, timer, warn: (m) => warnings.push(m) });
  attachAutotuner(gpu, tuner);
  try {
    forward(gpu);
    const s = { batch: 1, m: 8, n: 8, k: 8, transA: false, transB: false, aBatchStride: 0, bBatchStride: 0 };
    // a matmul whose probe cannot take its buffers (the pool refuses)
    const refusing = {
      ...gpu,
      pool: {
        acquire: () => {
          throw new Error("pool refuses");
        },
        release: () => {},
      },
    } as unknown as Gpu;
    attachAutotuner(refusing, tuner);
    runMatmul(refusing, "f32", range(64), range(64), range(64), s);
    const results = await tuner.tunePending();
    assertEquals(results.length, 1, "the conv class is tuned, the matmul class is not");
    const failed = Object.entries(results[0].record.ms).filter(([, ms]) => ms === null).map(([c]) => c);
    assertEquals(failed, ["128x64x16/8x8m|s512"]);
    assert(results[0].record.choice !== "128x64x16/8x8m|s512");
    assertEquals(warnings.length, 2, warnings.join("\n"));
    assert(
      warnings.some((w) => w.includes("out of memory")) && warnings.some((w) => w.includes("pool refuses")),
    );
    runMatmul(refusing, "f32", range(64), range(64), range(64), s);
    assertEquals(tuner.pending.length, 0, "a class that failed is not retried in this process");
    detachAutotuner(refusing);
  } finally {
    detachAutotuner(gpu);
  }
});
