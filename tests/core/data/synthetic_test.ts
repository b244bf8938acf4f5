import { generatePhantom, PHANTOM_LABELS } from "../../../core/data/synthetic.ts";
import { assert, assertEquals, assertNotEquals } from "../../assert.ts";

Deno.test("generatePhantom() is deterministic in (seed, index) and differs across indices", () => {
  const a = generatePhantom({ seed: 4, index: 2, shape: [24, 28, 20] });
  const b = generatePhantom({ seed: 4, index: 2, shape: [24, 28, 20] });
  assertEquals(a.image, b.image);
  assertEquals(a.labels, b.labels);
  assertNotEquals(generatePhantom({ seed: 4, index: 3, shape: [24, 28, 20] }).image, a.image);
  assertNotEquals(generatePhantom({ seed: 5, index: 2, shape: [24, 28, 20] }).image, a.image);
});

Deno.test("generatePhantom() has every tissue, zero background and a head mask matching the labels", () => {
  const p = generatePhantom({ seed: 1, index: 0, shape: [48, 48, 48], maxLesions: 4 });
  const counts = new Array(8).fill(0);
  p.labels.forEach((l) => counts[l]++);
  for (const name of ["scalp", "skull", "csf", "grey", "white", "ventricle"] as const) {
    assert(counts[PHANTOM_LABELS[name]] > 0, `no ${name}`);
  }
  assert(
    counts[PHANTOM_LABELS.white] > counts[PHANTOM_LABELS.ventricle],
    "white matter dominates ventricles",
  );
  for (let i = 0; i < p.image.length; i++) {
    assertEquals(p.anatomy[i], p.labels[i] > 0 ? 1 : 0);
    if (p.labels[i] === 0) assertEquals(p.image[i], 0);
    else assert(p.image[i] > 0);
  }
  // T1 contrast: white brighter than grey brighter than CSF, on average (noise and bias included)
  const mean = (label: number) => {
    let s = 0, n = 0;
    p.labels.forEach((l, i) => {
      if (l === label) {
        s += p.image[i];
        n++;
      }
    });
    return s / n;
  };
  assert(
    mean(PHANTOM_LABELS.white) > mean(PHANTOM_LABELS.grey) &&
      mean(PHANTOM_LABELS.grey) > mean(PHANTOM_LABELS.csf),
  );
  const t2 = generatePhantom({ seed: 1, index: 0, shape: [32, 32, 32], modality: "T2w" });
  assert(t2.image.some((v, i) => t2.labels[i] === PHANTOM_LABELS.csf && v > 0.7), "T2: bright CSF");
});

Deno.test("generatePhantom() defacing zeroes the face region and marks it", () => {
  const p = generatePhantom({ seed: 2, shape: [40, 40, 40], deface: true });
  let defaced = 0;
  for (let i = 0; i < p.image.length; i++) {
    if (p.deface[i]) {
      defaced++;
      assertEquals(p.image[i], 0);
      assertEquals(p.anatomy[i], 0);
    }
  }
  assert(defaced > 100, `defaced ${defaced}`);
  // the face is anterior (high H) and inferior (low D)
  const idx = p.deface.findIndex((v) => v === 1);
  const d = Math.floor(idx / 1600), h = Math.floor(idx / 40) % 40;
  assert(d < 20 && h > 20, `face at d=${d} h=${h}`);
});

Deno.test("generatePhantom() makes 16 volumes of 64³ in well under a few seconds", () => {
  const t0 = performance.now();
  for (let i = 0; i < 16; i++) generatePhantom({ seed: 9, index: i });
  const ms = performance.now() - t0;
  console.log(`16 phantoms of 64³: ${ms.toFixed(0)} ms`);
  assert(ms < 4000, `took ${ms} ms`);
});
