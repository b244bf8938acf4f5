import { assert, assertEquals } from "../assert.ts";
import { readMetrics } from "../../mod.ts";
import { tinyRun, voxssl, writeConfig } from "./cli.ts";

Deno.test("the example third-party plugin is listed and trains through --plugin (sandboxed)", async () => {
  const listed = await voxssl(["plugins", "--plugin", "examples/denoising-method/mod.ts"]);
  assertEquals(listed.code, 0, listed.text);
  assert(/denoising\s+ssl-method\s+0\.2\.0\s+ok/.test(listed.stdout), listed.stdout);
  const dir = await Deno.makeTempDir();
  const out = `${dir}/run`;
  const config = tinyRun(out, {
    method: "denoising",
    methodConfig: {},
    epochs: 1,
    plugins: ["examples/denoising-method/mod.ts"],
  });
  const { code, text } = await voxssl(["pretrain", "--config", await writeConfig(dir, config)]);
  assertEquals(code, 0, text);
  const metrics = await readMetrics(`${out}/metrics.jsonl`);
  assert(metrics.length > 0 && metrics.every((m) => Number.isFinite(m.loss)), text);
  const saved = JSON.parse(await Deno.readTextFile(`${out}/config.json`));
  assertEquals(saved.plugins.method, "denoising@0.2.0");
  // the report and the event file are written inside the sandbox too
  assert(text.includes(`report: ${out}/report.html`) && !text.includes("report was not refreshed"), text);
  assert([...Deno.readDirSync(out)].some((e) => e.name.startsWith("events.out.tfevents.")), "tfevents");
  await Deno.remove(dir, { recursive: true });
});

for (const kind of ["ssl-method", "architecture"]) {
  Deno.test(`\`plugin new --kind ${kind}\` makes a package whose own tests pass and that \`plugin check\` accepts`, async () => {
    const dir = await Deno.makeTempDir();
    try {
      const made = await voxssl(["plugin", "new", "fresh-plugin", "--kind", kind, "--dir", dir]);
      assertEquals(made.code, 0, made.text);
      const pkg = `${dir}/fresh-plugin`;
      const files = [...Deno.readDirSync(pkg)].map((e) => e.name).sort();
      assertEquals(files, ["README.md", "deno.json", "mod.ts", "mod_test.ts"]);
      const own = await new Deno.Command(Deno.execPath(), {
        args: ["test", "-A", "--no-check=remote"],
        cwd: pkg,
        env: { NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const ownText = new TextDecoder().decode(own.stdout) + new TextDecoder().decode(own.stderr);
      assertEquals(own.code, 0, ownText);
      assert(/ok \| 2 passed \| 0 failed/.test(ownText), ownText);
      const checked = await voxssl(["plugin", "check", pkg]);
      assertEquals(checked.code, 0, checked.text);
      for (const part of ["ok   manifest", "ok   version", "ok   core", "ok   2 training steps"]) {
        assert(checked.text.includes(part), `${part} missing:\n${checked.text}`);
      }
      const again = await voxssl(["plugin", "new", "fresh-plugin", "--dir", dir]);
      assert(again.code !== 0 && again.text.includes("exists already"), again.text);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("`plugin check` fails a plugin whose deno.json version differs from its manifest, naming both", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await voxssl(["plugin", "new", "drifted", "--dir", dir]);
    const config = JSON.parse(await Deno.readTextFile(`${dir}/drifted/deno.json`));
    await Deno.writeTextFile(
      `${dir}/drifted/mod.ts`,
      (await Deno.readTextFile(`${dir}/drifted/mod.ts`)).replace("version: meta.version", 'version: "9.9.9"'),
    );
    const checked = await voxssl(["plugin", "check", `${dir}/drifted`]);
    assert(checked.code !== 0, checked.text);
    assert(
      checked.text.includes(`FAIL version: deno.json says ${config.version}, the manifest 9.9.9`),
      checked.text,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
