import { assert, assertEquals } from "../assert.ts";
import { loadCheckpoint } from "../../mod.ts";

const writer = new URL("../fixtures/checkpoint_writer.ts", import.meta.url).pathname;

Deno.test("SIGKILL during checkpoint writes leaves the previous checkpoint loadable", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/latest.safetensors`;
  for (const delayMs of [0, 7, 23, 61]) {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", writer, path],
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    while (!seen.includes("saved 2")) seen += (await reader.read()).value ?? "";
    await new Promise((r) => setTimeout(r, delayMs)); // somewhere inside a later write
    child.kill("SIGKILL");
    await child.status;
    await reader.cancel();
    const ckpt = await loadCheckpoint(path); // complete and parseable
    const step = ckpt.meta.step;
    assert(step >= 2, `step ${step}`);
    assertEquals(
      ckpt.weights["network.w"].data[12345],
      step,
      "weights belong to the same checkpoint as the metadata",
    );
    assertEquals(ckpt.optimizer.stepState[2], step);
  }
  await Deno.remove(dir, { recursive: true });
});
