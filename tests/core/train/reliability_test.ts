/**
 * The reliability rules that need no subprocess: divergence and skipped-step verdicts, the run folder
 * guard, the cut-short metrics line, strict plugin configs, and atomic writes on a full disk (/dev/full).
 */
import { join } from "node:path";
import { z } from "zod";
import { assert, assertEquals, assertThrows } from "../../assert.ts";
import { checkKnownKeys, PluginConfigError } from "../../../core/plugin/mod.ts";
import {
  appendMetrics,
  DEFAULT_HEALTH,
  HealthMonitor,
  type MetricsRecord,
  prepareRunFolder,
  readMetrics,
  RunFolderError,
  truncateMetrics,
} from "../../../core/train/mod.ts";
import { writeFileAtomic } from "../../../core/nn/mod.ts";
import { userErrorMessage } from "../../../cli/user_errors.ts";

const train = (step: number, loss: number, skippedSteps = 0): MetricsRecord => ({
  kind: "train",
  step,
  epoch: 0,
  loss,
  skippedSteps,
});

Deno.test("health: a NaN or infinite interval loss is divergence, at the first log line", () => {
  for (const loss of [NaN, Infinity, -Infinity]) {
    const verdict = new HealthMonitor(DEFAULT_HEALTH, "mae").check(train(1, loss), 1);
    assertEquals(verdict?.kind, "diverged");
    assert(verdict!.message.includes(`the loss is ${loss}`) && verdict!.message.includes("mae"));
  }
});

Deno.test("health: a loss far above the median of its window is divergence; noise within it is not", () => {
  const settings = { ...DEFAULT_HEALTH, divergenceFactor: 10, divergenceWindow: 4 };
  const monitor = new HealthMonitor(settings, "mae");
  // losses that wander (0.5 .. 3): never a verdict
  const wander = [1.2, 0.9, 3, 0.5, 1.1, 2.4, 0.8];
  wander.forEach((l, i) => assertEquals(monitor.check(train(i + 1, l), 1), undefined));
  // the median of the last 4 logged (0.5, 1.1, 2.4, 0.8) is 0.95: 0.95 + 10 × 0.95 = 10.45 is the limit
  assertEquals(monitor.check(train(8, 10.4), 1), undefined);
  const verdict = new HealthMonitor(settings, "mae", wander.map((l, i) => train(i + 1, l))).check(
    train(8, 10.5),
    1,
  );
  assertEquals(verdict?.kind, "diverged");
  assert(verdict!.message.includes("10.50") && verdict!.message.includes("median 0.9500"), verdict!.message);
  // below-zero losses: the distance counts, not the ratio (median -2, limit -2 + 10 × 2 = 18)
  const negative = new HealthMonitor(settings, "x", [-2, -2.5, -1.5].map((l, i) => train(i + 1, l)));
  assertEquals(negative.check(train(4, 17), 1), undefined);
  assertEquals(negative.check(train(5, 40), 1)?.kind, "diverged");
  // factor 0 turns the ratio rule off
  const off = new HealthMonitor(
    { ...settings, divergenceFactor: 0 },
    "x",
    [1, 1, 1].map((l, i) => train(i, l)),
  );
  assertEquals(off.check(train(4, 1e12), 1), undefined);
});

Deno.test("health: consecutive skipped steps stop the run at the limit; one applied step resets the count", () => {
  const settings = { ...DEFAULT_HEALTH, maxConsecutiveSkippedSteps: 6 };
  const monitor = new HealthMonitor(settings, "mae");
  assertEquals(monitor.check(train(2, 1, 2), 2), undefined); // 2 of 2 skipped
  assertEquals(monitor.check(train(4, 1, 3), 2), undefined); // 1 of 2: the run is moving again
  assertEquals(monitor.check(train(6, 1, 5), 2), undefined); // 2 in a row
  assertEquals(monitor.check(train(8, 1, 7), 2), undefined); // 4 in a row
  const verdict = monitor.check(train(10, 1, 9), 2); // 6 in a row
  assertEquals(verdict?.kind, "skipped-steps");
  assert(verdict!.message.includes("last 6 steps") && verdict!.message.includes("9 skipped in all"));
  assertEquals(monitor.skipped, 9);
});

Deno.test("run folder: an earlier run is refused naming --resume and --overwrite; --overwrite clears it", async () => {
  const dir = await Deno.makeTempDir();
  const out = join(dir, "run");
  assertEquals(await prepareRunFolder(out, { resume: false }), []); // not there yet: fine
  await Deno.mkdir(join(out, "checkpoints"), { recursive: true });
  assertEquals(await prepareRunFolder(out, { resume: false }), []); // an empty folder is not a run
  await Deno.writeTextFile(join(out, "config.json"), "{}");
  await Deno.writeTextFile(join(out, "checkpoints", "latest.safetensors"), "x");
  const error = await prepareRunFolder(out, { resume: false }).then(() => undefined, (e) => e);
  assert(error instanceof RunFolderError, String(error));
  for (const part of [`--out ${out}`, `--resume ${out}`, "--overwrite", "config.json", "checkpoints/"]) {
    assert(error.message.includes(part), `${part} in ${error.message}`);
  }
  const removed = await prepareRunFolder(out, { resume: false, overwrite: true });
  assert(removed.includes("config.json") && removed.includes("checkpoints"), removed.join());
  assertEquals([...Deno.readDirSync(out)].length, 0);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("run folder: --out naming a file is refused; stale *.tmp-* files are removed on start and resume", async () => {
  const dir = await Deno.makeTempDir();
  const file = join(dir, "notes.txt");
  await Deno.writeTextFile(file, "x");
  const error = await prepareRunFolder(file, { resume: false }).then(() => undefined, (e) => e);
  assert(error instanceof RunFolderError && error.message.includes("is a file"), String(error));
  const out = join(dir, "run");
  await Deno.mkdir(join(out, "checkpoints"), { recursive: true });
  await Deno.writeTextFile(join(out, "checkpoints", "latest.safetensors"), "kept");
  await Deno.writeTextFile(join(out, "checkpoints", "latest.safetensors.tmp-123-456"), "half");
  await Deno.writeTextFile(join(out, "loss_curve.svg.tmp-9-10"), "half");
  const removed = await prepareRunFolder(out, { resume: true });
  assertEquals(removed.sort(), ["checkpoints/latest.safetensors.tmp-123-456", "loss_curve.svg.tmp-9-10"]);
  assertEquals(await Deno.readTextFile(join(out, "checkpoints", "latest.safetensors")), "kept");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("metrics: a cut-short last line is dropped (and truncation on resume rewrites the file); a bad middle line is an error", async () => {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "metrics.jsonl");
  const good = [train(1, 0.5), train(2, 0.4)];
  await Deno.writeTextFile(path, good.map((r) => JSON.stringify(r)).join("\n") + '\n{"kind":"train","st');
  assertEquals(await readMetrics(path), good);
  await truncateMetrics(path, 2);
  assertEquals(await Deno.readTextFile(path), good.map((r) => JSON.stringify(r)).join("\n") + "\n");
  await Deno.writeTextFile(path, `${JSON.stringify(good[0])}\nnot json\n${JSON.stringify(good[1])}\n`);
  const error = await readMetrics(path).then(() => undefined, (e) => e as Error);
  assert(error?.message.includes(`${path}: line 2 is not JSON`), String(error));
  await Deno.remove(dir, { recursive: true });
});

Deno.test(
  "full disk: writes to /dev/full fail naming the file, and an atomic write leaves no temporary file",
  {
    ignore: !(() => {
      try {
        return Deno.statSync("/dev/full").isCharDevice;
      } catch {
        return false;
      }
    })(),
  },
  async () => {
    const error = await appendMetrics("/dev/full", [train(1, 1)]).then(() => undefined, (e) => e as Error);
    assert(error?.message.includes("/dev/full"), String(error));
    assertEquals((error as unknown as { code?: string }).code, "ENOSPC");
    // what the user sees: one line naming the file and the cause, no stack
    const shown = userErrorMessage(error)!;
    assert(shown.includes("/dev/full") && shown.includes("no space left on the device"), shown);
    assert(!shown.includes("\n"), shown);
    // an atomic write that fails names its file (OS errors for the temporary file do not) and leaves nothing
    const dir = await Deno.makeTempDir();
    const target = join(dir, "latest.safetensors");
    const missing = join(dir, "missing-folder", "x.bin");
    const failing = await writeFileAtomic(missing, "data").then(() => undefined, (e) => e as Error);
    assert(failing?.message.startsWith(`${missing}: cannot write:`), String(failing));
    await writeFileAtomic(target, "ok");
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["latest.safetensors"]);
    await Deno.remove(dir, { recursive: true });
  },
);

Deno.test("strict plugin configs: an unknown key (also nested) is an error naming it and the plugin", () => {
  const schema = z.object({
    block: z.number().default(16),
    mask: z.object({ ratio: z.number() }).optional(),
  });
  const input = { blok: 8, mask: { ratoi: 0.5, ratio: 0.5 } };
  const error = assertThrows(
    () => checkKnownKeys(input, schema.parse(input), "methodConfig for mae"),
    PluginConfigError,
  );
  assert(error.message.includes('methodConfig for mae: unknown keys "blok", "mask.ratoi"'), error.message);
  assert(error.message.includes("known: block, mask"), error.message);
  const fine = { block: 8 };
  checkKnownKeys(fine, schema.parse(fine), "methodConfig for mae"); // no error
  const loose = z.object({ block: z.number() }).passthrough();
  checkKnownKeys({ block: 1, extra: 2 }, loose.parse({ block: 1, extra: 2 }), "x"); // opted in
});
