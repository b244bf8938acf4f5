import { assert, assertEquals } from "../assert.ts";
import { readMetrics } from "../../mod.ts";
import { tinyRun, voxssl, writeConfig } from "./cli.ts";

Deno.test("the example third-party plugin is listed and trains through --plugin (sandboxed)", async () => {
  const listed = await voxssl(["plugins", "--plugin", "examples/denoising-method/mod.ts"]);
  assertEquals(listed.code, 0, listed.text);
  assert(/denoising\s+ssl-method\s+0\.1\.0\s+ok/.test(listed.stdout), listed.stdout);
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
  assertEquals(saved.plugins.method, "denoising@0.1.0");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a sandboxed third-party plugin cannot read a file outside its permissions", async () => {
  const dir = await Deno.makeTempDir();
  const secret = await Deno.makeTempFile({ prefix: "voxssl-secret-" }); // outside data, run folder and code
  await Deno.writeTextFile(secret, "do not read");
  const config = tinyRun(`${dir}/run`, {
    method: "nosy",
    methodConfig: { probePath: secret },
    plugins: ["tests/fixtures/nosy_method_plugin.ts"],
  });
  const { code, text } = await voxssl(["pretrain", "--config", await writeConfig(dir, config)]);
  assert(code !== 0, text);
  assert(text.includes(`Requires read access to "${secret}"`), text); // refused at the plugin's own read
  assert(!text.includes("nosy read"), text);
  await Deno.remove(dir, { recursive: true });
  await Deno.remove(secret);
});
