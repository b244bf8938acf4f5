import { DOMParser } from "@xmldom/xmldom";
import { assert, assertEquals } from "../../assert.ts";
import { formatProfileTable, profileSvg, StepProfiler, writeProfile } from "../../../core/train/mod.ts";
import { cast, exp, matmul, mul, reshape, scope, tensor } from "../../../core/tensor/mod.ts";
import { gpuTest, randomArray } from "../../helpers.ts";

/**
 * The profiled graph, with its kernels counted by hand: mul (1 elementwise), exp (1 elementwise), matmul
 * (1), cast to f16 (1). Bytes bound, by hand: mul 1024 + 1024, exp 1024 + 1024, matmul 1024 + 2048 + 2048,
 * cast 2048 + 1024.
 */
function tinyGraph(x: ReturnType<typeof tensor>, y: ReturnType<typeof tensor>): void {
  scope(() => {
    const t = exp(mul(x, 2));
    const m = matmul(reshape(t, [16, 16]), y);
    cast(m, "f16");
  });
}

for (const forceFallback of [false, true]) {
  const source = forceFallback ? "submit-wall-clock" : "timestamp-query";
  gpuTest(
    `profiler (${source}): kernel counts and bytes per family match a hand count; table, SVG and JSON`,
    { requires: forceFallback ? ["shader-f16"] : ["shader-f16", "timestamp-query"] },
    async (gpu) => {
      const x = tensor(randomArray(256, 1), [256]);
      const y = tensor(randomArray(512, 2), [16, 32]);
      tinyGraph(x, y); // compile the kernels outside the profile
      const profiler = new StepProfiler(gpu, { forceFallback });
      assertEquals(profiler.source, source);
      for (let i = 0; i < 2; i++) await profiler.step(() => Promise.resolve(tinyGraph(x, y)), 5);
      const report = profiler.report("tiny graph");
      profiler.dispose();
      assertEquals(report.source, source);
      assertEquals(report.steps, 2);
      const row = (f: string) => report.families.find((r) => r.family === f);
      assertEquals(row("elementwise")?.kernels, 2);
      assertEquals(row("matmul")?.kernels, 1);
      assertEquals(row("cast")?.kernels, 1);
      assertEquals(report.total.kernels, 4);
      assertEquals(row("elementwise")?.bytesBound, 4 * 1024);
      assertEquals(row("matmul")?.bytesBound, 1024 + 2 * 2048);
      assertEquals(row("cast")?.bytesBound, 2048 + 1024);
      assertEquals(report.families.map((r) => r.family).sort(), ["cast", "elementwise", "matmul"]);
      for (const r of report.families) {
        assert(Number.isFinite(r.gpuMs) && r.gpuMs >= 0, `${r.family}: ${r.gpuMs} ms`);
      }
      assertEquals(report.total.dataWaitMs, 5);
      // memory: the step's buffers, freed by the scope; the peak holds t, m and the f16 copy at least
      assert(report.memory.peakBytes - report.memory.startBytes >= 1024 + 2048 + 1024);
      assertEquals(report.memory.atEnd.resident, report.memory.startBytes);

      const table = formatProfileTable(report);
      const lines = table.split("\n");
      assert(
        lines[1].startsWith(forceFallback ? "this adapter lacks timestamp-query" : "GPU time from timestamp"),
      );
      const cells = (name: string) => lines.find((l) => l.startsWith(name + " "))!.trim().split(/\s+/);
      if (forceFallback) {
        // no GPU time per family without timestamp queries: the table says n/a, the step's total is wall clock
        assertEquals(cells("matmul")[2], "n/a");
        assert(report.families.every((r) => r.gpuMs === 0) && report.total.gpuMs > 0, "wall-clock total");
      } else {
        const sum = report.families.reduce((a, r) => a + r.gpuMs, 0);
        assert(Math.abs(sum - report.total.gpuMs) <= 1e-9 * Math.max(1, sum), "families sum to the total");
      }
      assertEquals(cells("elementwise")[1], "2");
      assertEquals(cells("matmul")[1], "1");
      assertEquals(cells("cast")[1], "1");
      assertEquals(cells("total")[1], "4");

      const errors: string[] = [];
      const doc = new DOMParser({
        onError: (level: string, message: string) => errors.push(`${level}: ${message}`),
      })
        .parseFromString(profileSvg(report), "image/svg+xml");
      assertEquals(errors, []);
      assertEquals(doc.documentElement!.tagName, "svg");
      const labels = Array.from(doc.getElementsByTagName("text")).map((t) => t.textContent);
      for (const f of ["elementwise", "matmul", "cast"]) assert(labels.includes(f), `a bar for ${f}`);
      assert(doc.getElementsByTagName("polygon").length >= 3, "memory areas drawn");

      const dir = await Deno.makeTempDir();
      try {
        const { json, svg } = await writeProfile(dir, report);
        const stored = JSON.parse(await Deno.readTextFile(json));
        assertEquals(stored.total.kernels, 4);
        assert(Array.isArray(stored.memory.timeline) && stored.memory.events === undefined);
        assert((await Deno.readTextFile(svg)).startsWith("<svg"));
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
      x.dispose();
      y.dispose();
    },
  );
}
