import { assert, assertEquals } from "../assert.ts";
import { suites } from "../../bench/suites.ts";

Deno.test("every bench suite but e2e carries the GPU time limit scripts/gpu_check.ts runs it with", () => {
  const limited = suites.filter((s) => s.gpuSeconds !== undefined).map((s) => s.name);
  assertEquals(limited.sort(), suites.map((s) => s.name).filter((n) => n !== "e2e").sort());
  assert(suites.every((s) => s.gpuSeconds === undefined || s.gpuSeconds > 0));
});
