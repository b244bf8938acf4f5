import { assert, assertEquals } from "../assert.ts";
import { voxssl } from "./cli.ts";

Deno.test("voxssl pretrain --profile 1: prints the table, writes profile.json and profile.svg, stops", async () => {
  const out = await Deno.makeTempDir({ prefix: "voxssl-profile-" });
  try {
    const args = [
      "pretrain",
      "--arch",
      "primus-tiny",
      "--method",
      "mae",
      "--data",
      "synthetic",
      "--patch",
      "16",
    ];
    const run = await voxssl([
      ...args,
      "--batch",
      "1",
      "--workers",
      "0",
      "--profile",
      "1",
      "--out",
      out,
      "--overwrite",
    ]);
    assertEquals(run.code, 0, run.text);
    const lines = run.stdout.split("\n");
    const header = lines.findIndex((l) => l.startsWith("family "));
    assert(header > 0, run.stdout);
    assert(/^(GPU time from timestamp queries|this adapter lacks timestamp-query)/.test(lines[header - 1]));
    const rows = lines.slice(header + 1, lines.findIndex((l) => l.startsWith("total ")) + 1)
      .map((l) => l.trim().split(/\s+/));
    const total = rows.pop()!;
    assertEquals(
      rows.reduce((a, r) => a + Number(r[1]), 0),
      Number(total[1]),
      "kernels per family sum to the total",
    );
    assert(rows.some((r) => r[0] === "attention") && rows.some((r) => r[0] === "matmul"), run.stdout);
    assert(run.stdout.includes("stopped by profile at step 2"), run.stdout);

    const report = JSON.parse(await Deno.readTextFile(`${out}/profile.json`));
    assertEquals(report.steps, 1);
    assertEquals(report.total.kernels, Number(total[1]));
    assert(report.subject.includes("primus") && report.subject.includes("16×16×16"), report.subject);
    assert(report.memory.peakBytes > report.memory.startBytes);
    const svg = await Deno.readTextFile(`${out}/profile.svg`);
    assert(svg.startsWith("<svg") && svg.trimEnd().endsWith("</svg>"));

    const bad = await voxssl([...args, "--profile", "0", "--out", `${out}/other`]);
    assertEquals(bad.code, 1, bad.text);
    assert(bad.stderr.includes("--profile: expected a number of steps >= 1"), bad.stderr);
    assert(!bad.stderr.includes("    at "), "no stack trace");
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});
