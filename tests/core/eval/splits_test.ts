/** Seeded splits, nested label fractions and split-file validation. */
import { assert, assertEquals, assertNotEquals, assertRejects } from "../../assert.ts";
import { labelFraction, readSplitFile, seededSplit } from "../../../core/eval/mod.ts";

const ids = Array.from({ length: 21 }, (_, i) => `case_${String(i).padStart(3, "0")}`);

Deno.test("seededSplit: 50/50, disjoint, complete, independent of listing order, seed-dependent", () => {
  const a = seededSplit(ids, 7);
  assertEquals([a.train.length, a.test.length], [11, 10]);
  assertEquals([...a.train, ...a.test].sort(), ids);
  assertEquals(seededSplit([...ids].reverse(), 7), a);
  assertNotEquals(seededSplit(ids, 8), a);
});

Deno.test("labelFraction: ⌈f·n⌉ cases, 5% ⊂ 25% ⊂ 100%, seeded", () => {
  const train = seededSplit(ids, 1).train; // 11 cases
  const f5 = labelFraction(train, 0.05, 3),
    f25 = labelFraction(train, 0.25, 3),
    all = labelFraction(train, 1, 3);
  assertEquals([f5.length, f25.length, all.length], [1, 3, 11]);
  assert(f5.every((id) => f25.includes(id)) && f25.every((id) => all.includes(id)));
  assertEquals(all, [...train].sort());
});

Deno.test("readSplitFile: nnU-Net splits_final.json and {train, test}; bad files are named", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const write = async (name: string, value: unknown) => {
      await Deno.writeTextFile(`${dir}/${name}`, JSON.stringify(value));
      return `${dir}/${name}`;
    };
    const nnunet = await write("splits_final.json", [
      { train: ids.slice(0, 15), val: ids.slice(15) },
      { train: ids.slice(6), val: ids.slice(0, 6) },
    ]);
    assertEquals(await readSplitFile(nnunet, ids, 1), { train: ids.slice(6), test: ids.slice(0, 6) });
    const simple = await write("simple.json", { train: ids.slice(0, 3), test: ids.slice(3, 5) });
    assertEquals((await readSplitFile(simple, ids)).test, ids.slice(3, 5));
    await assertRejects(() => readSplitFile(nnunet, ids, 2), Error, "fold 2 asked for, the file has 2");
    const unknown = await write("unknown.json", { train: ["nope"], test: ids.slice(0, 1) });
    await assertRejects(
      () => readSplitFile(unknown, ids),
      Error,
      `"train" names case(s) the dataset does not have: nope`,
    );
    const overlap = await write("overlap.json", { train: ids.slice(0, 2), test: ids.slice(1, 3) });
    await assertRejects(() => readSplitFile(overlap, ids), Error, "in both train and test: case_001");
    const empty = await write("empty.json", { train: ids.slice(0, 2), test: [] });
    await assertRejects(() => readSplitFile(empty, ids), Error, `"test" is empty`);
    const wrong = await write("wrong.json", { train: [1, 2], test: ids.slice(0, 1) });
    await assertRejects(() => readSplitFile(wrong, ids), Error, `"train": expected a list of case ids`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
