/**
 * The plugin sandbox, tried the way a hostile plugin would: every command that loads third-party code
 * (`pretrain`, `--resume`, `--dry-run`, `plugins`, `plugin check`, and the data loader's workers running
 * `sample`) is run with a plugin that attempts, at module top level and in `build`, `loss` and `sample`:
 * reading, writing and listing outside its folders, reading voxssl's own code, reading the environment,
 * fetching from a loopback listener opened here, spawning a subprocess, opening a native library, and
 * importing a module from outside its folder. Every attempt must be refused with a message; an attempt
 * the plugin does not catch must fail the run with a message naming the plugin and the permission.
 */
import { join } from "node:path";
import { assert, assertEquals } from "../assert.ts";
import { ROOT, voxssl } from "./cli.ts";

const ATTACKS: Record<string, string> = {
  read: "read",
  write: "write",
  list: "read",
  "read-core": "read",
  env: "env",
  fetch: "net",
  spawn: "run",
  dlopen: "ffi",
  import: "read",
};

interface Setup {
  dir: string;
  pkg: string;
  out: string;
  config: string;
  outsideDir: string;
  connections: () => number;
  close: () => Promise<void>;
}

/** A temp folder with the hostile package, targets outside it, a loopback listener and a run config. */
async function setup(
  plan: { where: string[]; attacks: string[]; raise?: boolean },
  run: Record<string, unknown> = {},
): Promise<Setup> {
  const dir = await Deno.makeTempDir({ prefix: "voxssl-sandbox-" });
  const pkg = join(dir, "hostile");
  const outsideDir = join(dir, "outside");
  await Deno.mkdir(pkg);
  await Deno.mkdir(outsideDir);
  const fixture = new URL("../fixtures/hostile/", import.meta.url);
  for (const f of ["mod.ts", "deno.json"]) await Deno.copyFile(new URL(f, fixture), join(pkg, f));
  await Deno.writeTextFile(join(outsideDir, "secret.txt"), "do not read");
  await Deno.writeTextFile(join(outsideDir, "escape.ts"), 'console.log("IMPORTED-OUTSIDE");\nexport {};\n');
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let connections = 0;
  const accepting = (async () => {
    for await (const conn of listener) {
      connections++;
      conn.close();
    }
  })().catch(() => {});
  await Deno.writeTextFile(
    join(pkg, "attack.json"),
    JSON.stringify({
      where: plan.where,
      attacks: plan.attacks,
      raise: plan.raise ?? false,
      targets: {
        outsideFile: join(outsideDir, "secret.txt"),
        outsideDir,
        coreFile: join(ROOT, "mod.ts"),
        importFile: join(outsideDir, "escape.ts"),
        port: (listener.addr as Deno.NetAddr).port,
      },
    }),
  );
  const out = join(dir, "run");
  const config = join(dir, "run.json");
  await Deno.writeTextFile(
    config,
    JSON.stringify({
      arch: "resenc-tiny",
      method: "hostile",
      data: "synthetic",
      synthetic: { volumes: 3, size: [12, 12, 12] },
      patch: [8, 8, 8],
      batch: 1,
      epochs: 1,
      stepsPerEpoch: 2,
      logEvery: 1,
      validationBatches: 1,
      workers: 1,
      plugins: [join(pkg, "mod.ts")],
      ...run,
    }),
  );
  return {
    dir,
    pkg,
    out,
    config,
    outsideDir,
    connections: () => connections,
    close: async () => {
      listener.close();
      await accepting;
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Every `HOSTILE <where> <attack>` line of `where` reports a refusal naming the attack's permission. */
function assertAllBlocked(text: string, where: string, attacks = Object.keys(ATTACKS)): void {
  assert(!/SUCCEEDED/.test(text), `an attack succeeded:\n${text}`);
  assert(!text.includes("IMPORTED-OUTSIDE"), "a module outside the plugin's folder ran");
  for (const attack of attacks) {
    const lines = text.split("\n").filter((l) => l.startsWith(`HOSTILE ${where} ${attack}:`));
    assert(lines.length > 0, `no ${where} ${attack} attempt reported:\n${text}`);
    for (const line of lines) {
      assert(line.includes(`Requires ${ATTACKS[attack]} access`), `unclear refusal: ${line}`);
    }
  }
}

const ALL = Object.keys(ATTACKS);

Deno.test("sandbox: pretrain and --resume refuse every attack at top level, in build, loss and the workers' sample", async () => {
  const s = await setup({ where: ["top", "build", "loss", "sample"], attacks: ALL });
  try {
    const first = await voxssl(["pretrain", "--config", s.config, "--out", s.out]);
    assertEquals(first.code, 0, first.text);
    for (const where of ["top", "build", "loss", "sample"]) assertAllBlocked(first.text, where);
    // the workers import the plugin too (after locking themselves): top level ran there again
    const tops = first.text.split("\n").filter((l) => l.startsWith("HOSTILE top read:")).length;
    assert(tops >= 2, `top level ran in the main process and the workers (${tops})`);
    const resumed = await voxssl(["pretrain", "--resume", s.out]);
    assertEquals(resumed.code, 0, resumed.text);
    for (const where of ["top", "build"]) assertAllBlocked(resumed.text, where);
    assertEquals(s.connections(), 0, "the loopback listener was reached");
    assertEquals([...Deno.readDirSync(s.outsideDir)].map((e) => e.name).sort(), ["escape.ts", "secret.txt"]);
  } finally {
    await s.close();
  }
});

Deno.test("sandbox: `plugins --plugin` and `pretrain --dry-run` load the plugin only inside the sandbox", async () => {
  const s = await setup({ where: ["top"], attacks: ALL });
  try {
    const listed = await voxssl(["plugins", "--plugin", join(s.pkg, "mod.ts")]);
    assertEquals(listed.code, 0, listed.text);
    assert(/hostile\s+ssl-method\s+0\.0\.1\s+ok/.test(listed.stdout), listed.stdout);
    assertAllBlocked(listed.text, "top");
    const dry = await voxssl(["pretrain", "--config", s.config, "--dry-run"]);
    assertEquals(dry.code, 0, dry.text);
    assert(dry.stdout.includes("parameters (network)"), dry.stdout);
    assertAllBlocked(dry.text, "top");
    assertEquals(s.connections(), 0);
  } finally {
    await s.close();
  }
});

Deno.test("sandbox: `plugin check` runs the plugin's top level, build, loss and sample only inside the sandbox", async () => {
  const s = await setup({ where: ["top", "build", "loss", "sample"], attacks: ALL });
  try {
    const checked = await voxssl(["plugin", "check", s.pkg, "--patch", "8"]);
    assertEquals(checked.code, 0, checked.text);
    assert(checked.text.includes("plugin check passed"), checked.text);
    for (const where of ["top", "build", "loss", "sample"]) assertAllBlocked(checked.text, where);
    assertEquals(s.connections(), 0);
  } finally {
    await s.close();
  }
});

for (
  const [where, attack, expected] of [
    ["top", "read", "plugin " + "HOSTILE_PATH" + " was denied read access by the sandbox while loading"],
    ["build", "write", "plugin hostile: build() was denied write access by the sandbox"],
    ["loss", "spawn", "plugin hostile: loss() was denied run access by the sandbox"],
    ["sample", "read", "plugin hostile: sample() was denied read access by the sandbox"],
  ]
) {
  Deno.test(`sandbox: an uncaught refusal in ${where} fails the run naming the plugin and the permission`, async () => {
    const s = await setup({ where: [where], attacks: [attack], raise: true });
    try {
      const run = await voxssl(["pretrain", "--config", s.config, "--out", s.out]);
      assert(run.code !== 0, run.text);
      const message = expected.replace("HOSTILE_PATH", join(s.pkg, "mod.ts"));
      assert(run.text.includes(message), `expected "${message}" in:\n${run.text}`);
      assert(!/Granted|\[y\/n\]|Allow\?/.test(run.text), "no permission prompt");
    } finally {
      await s.close();
    }
  });
}

Deno.test("sandbox: a sample() that throws stops the run naming the plugin; no image is skipped for it", async () => {
  const s = await setup({ where: ["sample"], attacks: ["throw"], raise: true });
  try {
    const run = await voxssl(["pretrain", "--config", s.config, "--out", s.out]);
    assert(run.code !== 0, run.text);
    assert(run.text.includes("plugin hostile: sample() failed"), run.text);
    assert(run.text.includes("hostile sample() throws on purpose"), run.text);
    assert(!run.text.includes("skipped synthetic"), run.text);
  } finally {
    await s.close();
  }
});

Deno.test("sandbox: a sample() stuck in a loop is stopped and reported with the plugin's name", async () => {
  const s = await setup({ where: ["sample"], attacks: ["hang"], raise: true }, { sampleTimeoutSeconds: 4 });
  try {
    const run = await voxssl(["pretrain", "--config", s.config, "--out", s.out]);
    assert(run.code !== 0, run.text);
    assert(run.text.includes("plugin hostile: making sample"), run.text);
    assert(run.text.includes("took longer than 4 s"), run.text);
  } finally {
    await s.close();
  }
});
