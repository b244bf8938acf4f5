/** Checks of a pretraining request made before anything is allocated: resume flags, patch, memory. */
import { assert, assertEquals, assertThrows } from "../assert.ts";
import { ConfigError } from "../../cli/errors.ts";
import {
  applyResumeFlags,
  checkMemoryFits,
  checkPatchFitsArchitecture,
  estimateHostBytes,
  WORKER_BASE_BYTES,
} from "../../cli/commands/pretrain_checks.ts";
import type { ResolvedRunConfig } from "../../core/train/mod.ts";
import { builtinRegistry } from "../../cli/builtins.ts";

const resolved = (extra: Partial<ResolvedRunConfig> = {}) =>
  ({ out: "runs/x", epochs: 4, workers: 1, patch: [64, 64, 64], ...extra }) as ResolvedRunConfig;

Deno.test("--resume: more epochs are applied (with a note), fewer than done are refused, other flags are refused by name", () => {
  const config = resolved();
  const notes = applyResumeFlags(config, { epochs: "6", resume: "runs/x" }, 2);
  assertEquals(config.epochs, 6);
  assert(notes[0].includes("--epochs 6") && notes[0].includes("was 4"), notes[0]);
  const fewer = assertThrows(() => applyResumeFlags(resolved(), { epochs: "1" }, 2), ConfigError);
  assert(fewer.message.includes("already done 2 epochs"), fewer.message);
  const refused = assertThrows(
    () => applyResumeFlags(resolved(), { lr: "1", batch: "4", epochs: "5" }, 0),
    ConfigError,
  );
  assert(refused.message.includes("--batch, --lr cannot change on resume"), refused.message);
  assert(refused.message.includes("only --epochs, --workers and --sample-timeout"), refused.message);
  assertEquals(applyResumeFlags(resolved(), { workers: "3", plugin: ["p.ts"] }, 0), []);
});

Deno.test("--resume: --workers and --sample-timeout apply to the resumed run; bad values are refused by flag", () => {
  const config = resolved({ sampleTimeoutSeconds: 120 });
  assertEquals(applyResumeFlags(config, { workers: "3", sampleTimeout: "600" }, 1), []);
  assertEquals([config.workers, config.sampleTimeoutSeconds], [3, 600]);
  const zero = assertThrows(() => applyResumeFlags(resolved(), { sampleTimeout: "0" }, 0), ConfigError);
  assert(zero.message.includes('--sample-timeout: expected seconds > 0, got "0"'), zero.message);
  const half = assertThrows(() => applyResumeFlags(resolved(), { workers: "1.5" }, 0), ConfigError);
  assert(half.message.includes("--workers: expected an integer"), half.message);
});

Deno.test("--patch: a side that is not a multiple of the architecture's stride or patch embedding is refused with a fitting patch", () => {
  const registry = builtinRegistry();
  const resenc = registry.architecture("resenc-l");
  const config = (patch: [number, number, number], plugin = resenc) =>
    resolved({
      patch,
      resolvedArch: {
        plugin: plugin.plugin.name,
        version: "",
        size: null,
        config: plugin.plugin.config.parse(plugin.size ? plugin.plugin.sizes![plugin.size] : {}),
        family: plugin.plugin.family,
      },
    });
  checkPatchFitsArchitecture(config([160, 160, 160]), resenc.plugin); // 160 = 5 × 32
  const error = assertThrows(
    () => checkPatchFitsArchitecture(config([100, 160, 90]), resenc.plugin),
    ConfigError,
  );
  assert(
    error.message.includes("multiple of 32×32×32") && error.message.includes("--patch 96,160,96"),
    error.message,
  );
  const primus = registry.architecture("primus-tiny");
  checkPatchFitsArchitecture(config([64, 64, 64], primus), primus.plugin);
  const p = assertThrows(
    () => checkPatchFitsArchitecture(config([64, 60, 64], primus), primus.plugin),
    ConfigError,
  );
  assert(p.message.includes("multiple of 8×8×8"), p.message);
});

Deno.test("memory: --batch, --patch and --workers that cannot fit are refused saying what would", () => {
  const GiB = 2 ** 30;
  const base = { batch: 2, patch: [160, 160, 160], inChannels: 1, workers: 2 };
  checkMemoryFits(base, 8 * GiB); // the reference setting fits in 8 GiB
  // 160³ × 4 bytes × 2 (image and target) per sample
  assertEquals(estimateHostBytes(base).perSample, 160 ** 3 * 8);
  const batch = assertThrows(() => checkMemoryFits({ ...base, batch: 100000 }, 8 * GiB), ConfigError);
  assert(
    batch.message.includes("--batch 100000") && batch.message.includes("8.0 GiB is available"),
    batch.message,
  );
  // the largest batch that fits: (8 GiB − 2 workers × (base + sample)) / (4 × sample)
  const sample = 160 ** 3 * 8;
  const fits = Math.floor((8 * GiB - 2 * (WORKER_BASE_BYTES + sample)) / (4 * sample));
  assert(batch.message.includes(`at most --batch ${fits}`), batch.message);
  checkMemoryFits({ ...base, batch: fits }, 8 * GiB);
  assertThrows(() => checkMemoryFits({ ...base, batch: fits + 1 }, 8 * GiB), ConfigError);
  const workers = assertThrows(() => checkMemoryFits({ ...base, workers: 300 }, 8 * GiB), ConfigError);
  assert(/--workers 300 needs about [\d.]+ GiB/.test(workers.message), workers.message);
  assert(/--workers \d+ would fit/.test(workers.message), workers.message);
  const patch = assertThrows(() => checkMemoryFits({ ...base, patch: [100000, 100000, 100000] }, 8 * GiB));
  assert(patch.message.includes("choose a smaller --patch"), patch.message);
});
