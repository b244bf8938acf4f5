/**
 * Faults met the way an unlucky user meets them (docs/reliability.md lists each with its test): a
 * diverging learning rate, misbehaving plugins (NaN loss, non-scalar loss, Deno.exit, an endless loop),
 * SIGKILL to the top of `deno task pretrain` (plain and sandboxed), a kill -9 then `--resume` over a
 * cut-short metrics line and a stale temporary file, and bad flags, configs, data and run folders. Each
 * must end non-zero with a message (no stack trace) or, for the kills, leave no process behind.
 */
import { join } from "node:path";
import { assert, assertEquals } from "../assert.ts";
import { loadCheckpoint, readMetrics } from "../../mod.ts";
import { ROOT, spawnVoxssl, tinyRun, voxssl, writeConfig } from "./cli.ts";

const NO_STACK = /^\s+at /m;

/** The smallest run: resenc-tiny at 8³ on synthetic 12³ volumes. */
function tiny(out: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return tinyRun(out, {
    synthetic: { volumes: 2, size: [12, 12, 12] },
    patch: [8, 8, 8],
    epochs: 1,
    stepsPerEpoch: 4,
    validationBatches: 0,
    workers: 0,
    ...extra,
  });
}

/** A copy of the hostile plugin package (tests/fixtures/hostile) with `plan` as its attack.json. */
async function hostile(dir: string, plan: Record<string, unknown>): Promise<string> {
  const pkg = join(dir, "hostile");
  await Deno.mkdir(pkg, { recursive: true });
  const fixture = new URL("../fixtures/hostile/", import.meta.url);
  for (const f of ["mod.ts", "deno.json"]) await Deno.copyFile(new URL(f, fixture), join(pkg, f));
  await Deno.writeTextFile(
    join(pkg, "attack.json"),
    JSON.stringify({ where: [], attacks: [], raise: true, targets: {}, ...plan }),
  );
  return join(pkg, "mod.ts");
}

/** A sandboxed tiny run of the hostile method with `plan`; returns the CLI's result. */
async function hostileRun(plan: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  const dir = await Deno.makeTempDir({ prefix: "voxssl-rel-" });
  try {
    const plugin = await hostile(dir, plan);
    const config = tiny(join(dir, "run"), {
      method: "hostile",
      methodConfig: {},
      stepsPerEpoch: 2,
      workers: 1,
      plugins: [plugin],
      ...extra,
    });
    return await voxssl(["pretrain", "--config", await writeConfig(dir, config)]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function assertFailsWith(run: { code: number; text: string; stderr: string }, ...parts: string[]): void {
  assert(run.code !== 0, `expected a failure:\n${run.text}`);
  for (const part of parts) assert(run.text.includes(part), `expected "${part}" in:\n${run.text}`);
  assert(!NO_STACK.test(run.stderr), `no stack trace:\n${run.stderr}`);
}

Deno.test("a diverging learning rate stops the run with a message and exit 1", async () => {
  const dir = await Deno.makeTempDir();
  const run = await voxssl([
    "pretrain",
    "--config",
    await writeConfig(dir, tiny(join(dir, "run"), { lr: 100 })),
  ]);
  assertFailsWith(run, "training diverged at step", "health.divergenceFactor", "--lr");
  assert(!run.text.includes("run finished"), run.text);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a plugin's NaN loss stops the run as diverged at the first log line; the skip is counted", async () => {
  const run = await hostileRun({ lossValue: "nan" });
  assertFailsWith(run, "training diverged at step 1: the loss is NaN (method hostile)");
  assert(run.text.includes("skipped 1"), run.text);
});

Deno.test("a plugin's non-scalar loss is an error naming the plugin and the shape", async () => {
  const run = await hostileRun({ lossValue: "nonscalar" });
  assertFailsWith(run, "plugin hostile: loss() returned a loss of shape [1,1,8,8,8]; it must be a scalar");
});

for (const where of ["top", "loss"]) {
  Deno.test(`a plugin calling Deno.exit(0) (${where}) fails the run naming the plugin and where`, async () => {
    const run = await hostileRun({ where: [where], attacks: ["exit"] });
    const phase = where === "top" ? "loading (module top level)" : "plugin hostile: loss()";
    assertFailsWith(run, "did not finish", phase, "called Deno.exit()");
    assertEquals(run.code, 1);
  });
}

Deno.test("a sample past its time limit (busy machine) stops the run naming the limit and how to raise it, not as a bug", async () => {
  const dir = await Deno.makeTempDir();
  const config = await writeConfig(dir, tiny(join(dir, "run"), { workers: 1 }));
  // a forced tiny limit stands in for 120 s on an overloaded machine
  const run = await voxssl(["pretrain", "--config", config, "--sample-timeout", "0.001"]);
  assertFailsWith(
    run,
    "making sample 0 of step 0",
    "took longer than 0.001 s, the sample time limit",
    '"sampleTimeoutSeconds" in the run config (now 0.001), or voxssl pretrain --sample-timeout <seconds>',
  );
  assert(!run.text.includes("internal error") && !run.text.includes("bug"), run.text);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("an endless loop in loss() is stopped by the watchdog, which names the plugin", async () => {
  const run = await hostileRun({ where: ["loss"], attacks: ["hang"] }, {
    health: { stallTimeoutSeconds: 10 },
  });
  assertFailsWith(run, 'no progress for 10 s while "plugin hostile: loss()"', "health.stallTimeoutSeconds");
});

Deno.test("a second SIGTERM ends a run stuck in a plugin's endless loop", async () => {
  const dir = await Deno.makeTempDir({ prefix: "voxssl-rel-" });
  const plugin = await hostile(dir, { where: ["loss"], attacks: ["hang"] });
  const config = tiny(join(dir, "run"), {
    method: "hostile",
    methodConfig: {},
    workers: 1,
    plugins: [plugin],
  });
  const run = spawnVoxssl(["pretrain", "--config", await writeConfig(dir, config)]);
  await run.waitFor("model:");
  await new Promise((r) => setTimeout(r, 3000)); // into the first loss(), which never returns
  run.child.kill("SIGTERM");
  await new Promise((r) => setTimeout(r, 500));
  run.child.kill("SIGTERM");
  const text = await run.rest();
  const stderr = await new Response(run.child.stderr).text();
  const status = await run.child.status;
  assert(status.code !== 0, text + stderr);
  assert(/second SIGTERM/.test(stderr + text), stderr + text);
  await Deno.remove(dir, { recursive: true });
});

/** Live processes whose command line mentions `needle`. */
function processesMentioning(needle: string): { pid: number; cmdline: string }[] {
  const found: { pid: number; cmdline: string }[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name) || Number(entry.name) === Deno.pid) continue;
    try {
      const cmdline = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`);
      const state = Deno.readTextFileSync(`/proc/${entry.name}/stat`).split(") ")[1]?.[0];
      if (cmdline.includes(needle) && state !== "Z") found.push({ pid: Number(entry.name), cmdline });
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/**
 * Starts `deno task pretrain <args>`, kills the task process with SIGKILL after the first step line (and
 * every process below it that `alsoKill` picks by command line), and waits until no process whose command
 * line mentions `needle` (the config file) is left.
 */
async function killTaskAfterFirstStep(
  args: string[],
  needle: string,
  alsoKill: (cmdline: string) => boolean = () => false,
): Promise<string> {
  const task = new Deno.Command(Deno.execPath(), {
    args: ["task", "--quiet", "pretrain", ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = task.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!seen.includes("step 1/")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`ended before the first step:\n${seen}`);
    seen += value;
  }
  const tree = processesMentioning(needle);
  assert(tree.length >= 2, "deno task and the trainer below it");
  task.kill("SIGKILL");
  for (const p of tree) if (p.pid !== task.pid && alsoKill(p.cmdline)) Deno.kill(p.pid, "SIGKILL");
  await task.status;
  // the trainer notices that its parent died, finishes its step, saves and exits
  for (let i = 0; i < 600 && processesMentioning(needle).length > 0; i++) {
    await new Promise((r) => setTimeout(r, 200));
  }
  const rest = (async () => {
    let text = seen;
    while (true) {
      const { value, done } = await reader.read();
      if (done) return text;
      text += value;
    }
  })();
  const left = processesMentioning(needle).map((p) => p.pid);
  for (const pid of left) Deno.kill(pid, "SIGKILL");
  const text = await rest;
  await task.stderr.cancel();
  assertEquals(left, [], `trainer processes left running after SIGKILL to deno task:\n${text}`);
  return text;
}

Deno.test("SIGKILL to `deno task pretrain` (plain): the trainer stops and saves; --resume then survives a kill -9 debris", async () => {
  const dir = await Deno.makeTempDir();
  const out = join(dir, "run");
  const config = await writeConfig(dir, tiny(out, { stepsPerEpoch: 12 }));
  const text = await killTaskAfterFirstStep(["--config", config], config);
  assert(text.includes("the launching process died"), text);
  const saved = await loadCheckpoint(join(out, "checkpoints", "latest.safetensors"));
  assert(saved.meta.step >= 1, `saved at step ${saved.meta.step}`);
  // what a kill -9 (or a full disk) leaves: a cut-short metrics line and a temporary checkpoint file
  await Deno.writeTextFile(join(out, "metrics.jsonl"), '{"kind":"train","step":99', { append: true });
  await Deno.writeTextFile(join(out, "checkpoints", "latest.safetensors.tmp-1-2"), "partial");
  // a changed learning rate is refused on resume; more epochs are not
  const refused = await voxssl(["pretrain", "--resume", out, "--lr", "1"]);
  assertFailsWith(refused, "--lr cannot change on resume");
  const resumed = await voxssl(["pretrain", "--resume", out, "--epochs", "1"]);
  assertEquals(resumed.code, 0, resumed.text);
  assert(resumed.text.includes("removed checkpoints/latest.safetensors.tmp-1-2"), resumed.text);
  const steps = (await readMetrics(join(out, "metrics.jsonl"))).map((m) => m.step);
  assertEquals(steps, Array.from({ length: 12 }, (_, i) => i + 1), "every step logged once, in order");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("SIGKILL to `deno task pretrain` and the sandbox launcher below it: the sandboxed trainer stops and saves", async () => {
  const dir = await Deno.makeTempDir();
  const out = join(dir, "run");
  const plugin = await hostile(dir, {});
  const config = await writeConfig(
    dir,
    tiny(out, { method: "hostile", methodConfig: {}, stepsPerEpoch: 200, workers: 1, plugins: [plugin] }),
  );
  // the launcher (not the --no-prompt sandboxed child) dies with deno task: the child notices by itself
  const text = await killTaskAfterFirstStep(["--config", config], config, (c) => !c.includes("--no-prompt"));
  assert(text.includes("the launching process died"), text);
  const saved = await loadCheckpoint(join(out, "checkpoints", "latest.safetensors"));
  assert(saved.meta.step >= 1 && saved.meta.step < 200, `stopped early, at step ${saved.meta.step}`);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("bad flags, configs, data and run folders: one or two lines naming the flag, field or file; exit 1; no stack", async () => {
  const dir = await Deno.makeTempDir();
  const earlier = join(dir, "earlier");
  await Deno.mkdir(join(earlier, "checkpoints"), { recursive: true });
  await Deno.writeTextFile(join(earlier, "config.json"), "{}");
  await Deno.writeTextFile(join(earlier, "checkpoints", "latest.safetensors"), "x");
  const file = join(dir, "a-file");
  await Deno.writeTextFile(file, "x");
  const empty = join(dir, "empty");
  await Deno.mkdir(empty);
  const bad = join(dir, "bad");
  await Deno.mkdir(bad);
  for (const name of ["a.nii.gz", "b.nii.gz"]) await Deno.writeTextFile(join(bad, name), "not a NIfTI file");
  let configs = 0;
  const config = async (extra: Record<string, unknown>) => {
    const sub = join(dir, `config${++configs}`);
    await Deno.mkdir(sub);
    return writeConfig(sub, tiny(join(dir, "new"), extra));
  };
  const tinyFlags = ["--arch", "resenc-tiny", "--method", "mae"];
  const cases: [string[], string[]][] = [
    [["pretrain", ...tinyFlags, "--out", earlier], [`--resume ${earlier}`, "--overwrite"]],
    [["pretrain", ...tinyFlags, "--out", file], [`--out ${file}: is a file`]],
    [["pretrain", ...tinyFlags, "--out", "/proc/voxssl-no-such/run"], [
      "--out /proc/voxssl-no-such/run: the run folder cannot be written",
    ]],
    [["pretrain", ...tinyFlags, "--batch", "100000", "--dry-run"], ["--batch 100000", "would fit"]],
    [["pretrain", ...tinyFlags, "--workers", "300", "--dry-run"], ["--workers 300", "would fit"]],
    [["pretrain", ...tinyFlags, "--patch", "100000", "--dry-run"], ["choose a smaller --patch"]],
    [["pretrain", "--arch", "resenc-l", "--method", "mae", "--patch", "100", "--dry-run"], [
      "--patch 100×100×100",
      "multiple of 32×32×32",
    ]],
    [["pretrain", "--config", await config({ methodConfig: { blok: 8 } }), "--dry-run"], [
      'methodConfig for mae: unknown key "blok"',
    ]],
    [["pretrain", "--config", await config({ archConfig: { widht: 8 } }), "--dry-run"], [
      'archConfig for resenc: unknown key "widht"',
    ]],
    [["pretrain", ...tinyFlags, "--data", join(dir, "missing.json"), "--out", join(dir, "m")], [
      join(dir, "missing.json"),
    ]],
    [["index", empty, "--out", join(dir, "empty.json")], [`${empty}: no usable image found`]],
  ];
  for (const [args, parts] of cases) {
    const run = await voxssl(args);
    assertFailsWith(run, ...parts);
    const lines = run.stderr.trim().split("\n");
    assert(lines.length <= 2, `one or two lines: ${args.join(" ")}\n${run.stderr}`);
  }
  // every file bad: the index takes them unchecked, training finds none readable
  const index = join(dir, "bad.json");
  assertEquals((await voxssl(["index", bad, "--out", index, "--check", "none"])).code, 0);
  const run = await voxssl(["pretrain", "--config", await config({ data: index, workers: 1 })]);
  assertFailsWith(run, "no readable image", "images failed to load", ".nii.gz: too short for a NIfTI header");
  // a full disk: a 256 KiB tmpfs (needs root), where the first checkpoint does not fit
  const full = join(dir, "full");
  await Deno.mkdir(full);
  const mounted = await new Deno.Command("mount", { args: ["-t", "tmpfs", "-o", "size=256k", "tmpfs", full] })
    .output().then((o) => o.success, () => false);
  if (mounted) {
    try {
      const run = await voxssl(["pretrain", "--config", await config({ out: full })]);
      assertFailsWith(run, join(full, "checkpoints", "latest.safetensors"), "no space left on the device");
      const left = [...Deno.readDirSync(join(full, "checkpoints"))].map((e) => e.name);
      assertEquals(left, [], "no partial checkpoint left behind");
    } finally {
      await new Deno.Command("umount", { args: [full] }).output();
    }
  } else console.log("cannot mount a tmpfs here (not root): the full-disk case runs as a unit test only");
  // --debug keeps the stack for whoever debugs
  const debug = await voxssl(["pretrain", ...tinyFlags, "--out", file, "--debug"]);
  assert(debug.code === 1 && NO_STACK.test(debug.stderr), debug.stderr);
  await Deno.remove(dir, { recursive: true });
});
