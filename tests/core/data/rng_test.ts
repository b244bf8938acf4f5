import { createRng } from "../../../core/data/rng.ts";
import { assert, assertEquals, assertNotEquals, assertThrows } from "../../assert.ts";

const draw = (rng: { next(): number }, n: number) => Array.from({ length: n }, () => rng.next());

Deno.test("createRng() is a pure function of seed and keys", () => {
  assertEquals(draw(createRng(7, 3, 1), 50), draw(createRng(7, 3, 1), 50));
  assertNotEquals(draw(createRng(7, 3, 1), 5), draw(createRng(7, 3, 2), 5));
  assertNotEquals(draw(createRng(7, 3, 1), 5), draw(createRng(8, 3, 1), 5));
  assertNotEquals(draw(createRng(7, 3), 5), draw(createRng(7, -3), 5));
  assertNotEquals(draw(createRng(7, 2 ** 40), 5), draw(createRng(7, 0), 5));
  assertNotEquals(draw(createRng(7, "augment"), 5), draw(createRng(7, "crop"), 5));
  // key order matters: (step 1, sample 2) is not (step 2, sample 1)
  assertNotEquals(draw(createRng(7, 1, 2), 5), draw(createRng(7, 2, 1), 5));
});

Deno.test("Rng.fork() does not depend on how much of the parent was consumed", () => {
  const a = createRng(1, 2);
  const b = createRng(1, 2);
  draw(b, 100);
  assertEquals(draw(a.fork("x"), 20), draw(b.fork("x"), 20));
  assertEquals(draw(a.fork("x"), 20), draw(createRng(1, 2, "x"), 20));
  assertNotEquals(draw(a.fork("x"), 20), draw(a, 20));
});

Deno.test("Rng.next() is uniform and Rng.normal() is standard normal", () => {
  const rng = createRng(12345);
  const n = 200000;
  const buckets = new Array(20).fill(0);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const u = rng.next();
    assert(u >= 0 && u < 1);
    buckets[Math.floor(u * 20)]++;
    sum += u;
  }
  assert(Math.abs(sum / n - 0.5) < 0.005, `mean ${sum / n}`);
  // chi-square with 19 degrees of freedom: 99.9% quantile ≈ 43.8
  const expected = n / 20;
  const chi2 = buckets.reduce((s, b) => s + (b - expected) ** 2 / expected, 0);
  assert(chi2 < 43.8, `chi2 ${chi2}`);
  let m = 0, v = 0;
  for (let i = 0; i < n; i++) {
    const z = rng.normal();
    m += z;
    v += z * z;
  }
  assert(Math.abs(m / n) < 0.01, `normal mean ${m / n}`);
  assert(Math.abs(v / n - 1) < 0.02, `normal variance ${v / n}`);
});

Deno.test("Rng.int() and Rng.intRange() stay in range and hit every value", () => {
  const rng = createRng(3);
  const seen = new Set<number>();
  for (let i = 0; i < 2000; i++) {
    const k = rng.intRange(-3, 4);
    assert(k >= -3 && k <= 4 && Number.isInteger(k));
    seen.add(k);
  }
  assertEquals(seen.size, 8);
  assertThrows(() => rng.int(0), RangeError);
  assertThrows(() => createRng(1.5), RangeError);
  assert(!rng.chance(0) && rng.chance(1));
});
