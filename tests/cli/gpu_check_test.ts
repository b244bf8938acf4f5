import { assertEquals } from "../assert.ts";
import { suites } from "../../bench/suites.ts";

Deno.test("scripts/gpu_check.ts runs every bench suite (e2e on its own)", async () => {
  const source = await Deno.readTextFile(new URL("../../scripts/gpu_check.ts", import.meta.url));
  const list = source.slice(
    source.indexOf("const SUITES"),
    source.indexOf("];", source.indexOf("const SUITES")),
  );
  const named = [...list.matchAll(/\["([\w-]+)", \d+\]/g)].map((m) => m[1]);
  assertEquals(named.sort(), suites.map((s) => s.name).filter((n) => n !== "e2e").sort());
});
