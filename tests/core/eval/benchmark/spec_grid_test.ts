/** The benchmark spec's validation and the grid's expansion and stable keys. */
import { assert, assertEquals, assertNotEquals, assertRejects, assertThrows } from "../../../assert.ts";
import {
  BenchmarkSpecError,
  canonicalJson,
  expandGrid,
  parseBenchmarkSpec,
  readBenchmarkSpec,
} from "../../../../core/eval/benchmark/mod.ts";

const base = {
  name: "t",
  architectures: ["resenc-tiny", "primus-tiny"],
  datasets: [{ name: "hippo", path: "data/hippo" }, { name: "other", path: "/abs/other" }],
  labelFractions: [0.25, 1],
  seeds: [0, 1, 2],
  methods: [
    { name: "mae", pretrain: { method: "mae", data: "synthetic", config: { epochs: 1 } } },
    { name: "ckpt", checkpoint: "ck/final.safetensors", arch: "resenc-tiny" },
  ],
};

function errorOf(value: unknown): string {
  return assertThrows(() => parseBenchmarkSpec(value, "spec.json", "/base"), BenchmarkSpecError).message;
}

Deno.test("benchmark spec: errors name the file and each field", () => {
  const m1 = errorOf({ ...base, architectures: [] });
  assert(m1.startsWith("spec.json:") && m1.includes("architectures:"), m1);
  const m2 = errorOf({ ...base, labelFractions: [0, 1] });
  assert(m2.includes("labelFractions.0:"), m2);
  const m3 = errorOf({ ...base, seeds: [1, 1] });
  assert(m3.includes("seeds.1: duplicate 1"), m3);
  const m4 = errorOf({ ...base, datasets: [{ name: "a b", path: "x" }] });
  assert(m4.includes("datasets.0.name:") && m4.includes("letters, digits"), m4);
  const m5 = errorOf({
    ...base,
    methods: [{ name: "x", checkpoint: "a", pretrain: { method: "mae", data: "d" } }],
  });
  assert(m5.includes("methods.0:") && m5.includes("exactly one of"), m5);
  const m6 = errorOf({ ...base, methods: [{ name: "scratch", checkpoint: "a", arch: "resenc-tiny" }] });
  assert(m6.includes("methods.0.name:") && m6.includes("baseline"), m6);
  const m7 = errorOf({ ...base, methods: [{ name: "c", checkpoint: "a", arch: "resenc-l" }] });
  assert(m7.includes("methods.0.arch:") && m7.includes("not one of architectures"), m7);
  const m8 = errorOf({ ...base, colour: "red" });
  assert(m8.includes("colour") || m8.includes("Unrecognized"), m8);
  const m9 = errorOf({ ...base, methods: [{ name: "c", checkpoint: "a" }] });
  assert(m9.includes("methods.0.arch:"), m9);
});

Deno.test("benchmark spec: relative paths resolve against the spec's folder; defaults apply", async () => {
  const spec = parseBenchmarkSpec(base, "spec.json", "/base");
  assertEquals(spec.datasets.map((d) => d.path), ["/base/data/hippo", "/abs/other"]);
  assertEquals(spec.methods[0].pretrain!.data, "synthetic");
  assertEquals(spec.methods[1].checkpoint, "/base/ck/final.safetensors");
  assertEquals(spec.statistics, { confidence: 0.95, replicates: 2000, seed: 0 });
  assertEquals(spec.datasets[0].splitFile, undefined);
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/bad.json`, "{ nope");
  await assertRejects(() => readBenchmarkSpec(`${dir}/bad.json`), BenchmarkSpecError, "not valid JSON");
  await assertRejects(() => readBenchmarkSpec(`${dir}/missing.json`), BenchmarkSpecError, "cannot read");
  await Deno.writeTextFile(`${dir}/ok.json`, JSON.stringify(base));
  assertEquals((await readBenchmarkSpec(`${dir}/ok.json`)).datasets[0].path, `${dir}/data/hippo`);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("benchmark grid: every combination, scratch included, checkpoints on their architecture", async () => {
  const spec = parseBenchmarkSpec(base, "spec.json", "/base");
  const grid = await expandGrid(spec);
  assertEquals(grid.jobs.length, 2); // mae on each architecture
  // per (seed, dataset, fraction): resenc has scratch, mae, ckpt; primus has scratch, mae
  assertEquals(grid.cells.length, 3 * 2 * 2 * (3 + 2));
  assertEquals(new Set(grid.cells.map((c) => c.key)).size, grid.cells.length);
  assertEquals(grid.cells.filter((c) => c.method === "scratch").length, 3 * 2 * 2 * 2);
  assert(grid.cells.filter((c) => c.method === "ckpt").every((c) => c.arch === "resenc-tiny"));
  for (const c of grid.cells.filter((c) => c.method === "mae")) {
    const job = grid.jobs.find((j) => c.encoder.kind === "pretrain" && j.key === c.encoder.job)!;
    assertEquals(job.arch, c.arch);
  }
  // the order: all of seed 0 first
  assertEquals(grid.cells.slice(0, 20).map((c) => c.seed), new Array(20).fill(0));
});

Deno.test("benchmark grid: keys are stable, follow the settings and ignore display names", async () => {
  const keys = async (value: unknown) =>
    (await expandGrid(parseBenchmarkSpec(value, "s", "/base"))).cells.map((c) => c.key);
  const a = await keys(base);
  assertEquals(await keys(structuredClone(base)), a);
  // key order in the JSON does not matter
  assertEquals(
    canonicalJson({ b: 1, a: { d: [1, { y: 2, x: 1 }], c: 0 } }),
    '{"a":{"c":0,"d":[1,{"x":1,"y":2}]},"b":1}',
  );
  const renamed = await keys({
    ...base,
    name: "other",
    datasets: [{ name: "hippocampus", path: "data/hippo" }, base.datasets[1]],
  });
  assertEquals(renamed, a);
  const longer = await keys({ ...base, finetune: { epochs: 2 } });
  assert(longer.every((k) => !a.includes(k)), "a changed fine-tuning setting makes new cells");
  const pretrainChanged = await expandGrid(parseBenchmarkSpec(
    {
      ...base,
      methods: [{ ...base.methods[0], pretrain: { ...base.methods[0].pretrain, config: { epochs: 2 } } }],
    },
    "s",
    "/base",
  ));
  const original = await expandGrid(parseBenchmarkSpec(base, "s", "/base"));
  assertNotEquals(pretrainChanged.jobs[0].key, original.jobs[0].key);
  const maeCells = (g: typeof original) => g.cells.filter((c) => c.method === "mae").map((c) => c.key);
  assert(
    maeCells(pretrainChanged).every((k) => !maeCells(original).includes(k)),
    "new pretraining, new cells",
  );
  const scratch = (g: typeof original) => g.cells.filter((c) => c.method === "scratch").map((c) => c.key);
  assertEquals(scratch(pretrainChanged), scratch(original));
});
