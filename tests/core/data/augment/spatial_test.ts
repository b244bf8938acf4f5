import { sourceBox, spatialMatrix, warpPatch } from "../../../../core/data/augment/spatial.ts";
import { extractBox, type Shape3 } from "../../../../core/data/volume.ts";
import { assert, assertEquals } from "../../../assert.ts";
import { assertClose } from "../../../helpers.ts";
import { randomFloats } from "../fixtures.ts";

/** Reference trilinear sample with zeros outside, written per point. */
function trilinear(src: Float32Array, s: Shape3, p: number[]): number {
  let v = 0;
  const b = p.map(Math.floor);
  for (let dd = 0; dd <= 1; dd++) {
    for (let hh = 0; hh <= 1; hh++) {
      for (let ww = 0; ww <= 1; ww++) {
        const q = [b[0] + dd, b[1] + hh, b[2] + ww];
        if (q.some((x, i) => x < 0 || x >= s[i])) continue;
        const w = [dd, hh, ww].reduce((acc, k, i) => acc * (k ? p[i] - b[i] : 1 - (p[i] - b[i])), 1);
        v += w * src[(q[0] * s[1] + q[1]) * s[2] + q[2]];
      }
    }
  }
  return v;
}

function reference(src: Float32Array, s: Shape3, centre: number[], m: number[], patch: Shape3): Float32Array {
  const out = new Float32Array(patch[0] * patch[1] * patch[2]);
  let o = 0;
  for (let d = 0; d < patch[0]; d++) {
    for (let h = 0; h < patch[1]; h++) {
      for (let w = 0; w < patch[2]; w++) {
        const off = [d - (patch[0] - 1) / 2, h - (patch[1] - 1) / 2, w - (patch[2] - 1) / 2];
        const p = [0, 1, 2].map((i) =>
          centre[i] + m[i * 3] * off[0] + m[i * 3 + 1] * off[1] + m[i * 3 + 2] * off[2]
        );
        out[o++] = trilinear(src, s, p);
      }
    }
  }
  return out;
}

const shape: Shape3 = [13, 15, 11];
const src = randomFloats(13 * 15 * 11, 41, 0.5, 2);

Deno.test("warpPatch() with the identity is a plain crop (zero outside)", () => {
  const patch: Shape3 = [7, 9, 16];
  const start = [3, -2, -1];
  const centre = start.map((s, i) => s + (patch[i] - 1) / 2);
  const m = spatialMatrix({ angles: [0, 0, 0], scale: 1 });
  assertClose(warpPatch(src, shape, centre, m, patch, "linear"), extractBox(src, shape, start, patch), {
    atol: 1e-6,
  });
  assertEquals(warpPatch(src, shape, centre, m, patch, "nearest"), extractBox(src, shape, start, patch));
});

Deno.test("warpPatch() matches a per-voxel trilinear reference for random rotations and scales", () => {
  for (
    const params of [
      { angles: [0.3, -0.2, 0.45], scale: 1 },
      { angles: [0, 0, 0], scale: 0.7 },
      { angles: [-0.5, 0.1, 0.2], scale: 1.3 },
    ] as const
  ) {
    const m = spatialMatrix({ angles: [...params.angles], scale: params.scale });
    const centre = [6.5, 7, 5.25];
    const patch: Shape3 = [9, 10, 8];
    assertClose(warpPatch(src, shape, centre, m, patch, "linear"), reference(src, shape, centre, m, patch), {
      atol: 1e-5,
    });
  }
});

Deno.test("spatialMatrix() rotates by 90° about D exactly like swapping H and W", () => {
  const patch: Shape3 = [5, 7, 7];
  const centre = [6, 7, 5];
  const m = spatialMatrix({ angles: [Math.PI / 2, 0, 0], scale: 1 });
  const out = warpPatch(src, shape, centre, m, patch, "nearest");
  for (let d = 0; d < 5; d++) {
    for (let h = 0; h < 7; h++) {
      for (let w = 0; w < 7; w++) {
        // source (d', h', w') = centre + (d − 2, −(w − 3), h − 3)
        const sd = centre[0] + d - 2, sh = centre[1] - (w - 3), sw = centre[2] + (h - 3);
        assertEquals(out[(d * 7 + h) * 7 + w], src[(sd * shape[1] + sh) * shape[2] + sw]);
      }
    }
  }
  // a rotation keeps lengths: the matrix is orthogonal
  const r = spatialMatrix({ angles: [0.4, -0.9, 1.3], scale: 1 });
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 3; j++) {
      const dot = r[i] * r[j] + r[3 + i] * r[3 + j] + r[6 + i] * r[6 + j];
      assertClose([dot], [i === j ? 1 : 0], { atol: 1e-12 });
    }
  }
});

Deno.test("sourceBox() contains every position the warped patch samples", () => {
  const m = spatialMatrix({ angles: [0.5, 0.3, -0.4], scale: 1.4 });
  const patch: Shape3 = [20, 16, 12];
  const centre = [10.5, -3, 40];
  const box = sourceBox(m, patch, centre);
  for (const d of [0, patch[0] - 1]) {
    for (const h of [0, patch[1] - 1]) {
      for (const w of [0, patch[2] - 1]) {
        const off = [d - (patch[0] - 1) / 2, h - (patch[1] - 1) / 2, w - (patch[2] - 1) / 2];
        for (let i = 0; i < 3; i++) {
          const p = centre[i] + m[i * 3] * off[0] + m[i * 3 + 1] * off[1] + m[i * 3 + 2] * off[2];
          assert(
            Math.floor(p) >= box.start[i] && Math.floor(p) + 1 < box.start[i] + box.size[i],
            `axis ${i}: ${p} outside ${box.start[i]}+${box.size[i]}`,
          );
        }
      }
    }
  }
});

Deno.test("warpPatch() keeps masks binary with nearest neighbour", () => {
  const mask = Uint8Array.from(src, (v) => (v > 1.2 ? 1 : 0));
  const out = warpPatch(mask, shape, [6, 7, 5], spatialMatrix({ angles: [0.3, 0.2, 0.1], scale: 0.9 }), [
    8,
    8,
    8,
  ], "nearest");
  assert(out.every((v) => v === 0 || v === 1) && out.some((v) => v === 1));
});

Deno.test("warpPatch() cubic (Keys) reproduces a quadratic inside the source and is a crop at the identity", () => {
  const s: Shape3 = [12, 13, 14];
  const f = (d: number, h: number, w: number) => 0.3 * d * d - 0.2 * h * w + 0.1 * w * w + d - 2;
  const src = new Float64Array(12 * 13 * 14);
  for (let d = 0, i = 0; d < 12; d++) {
    for (let h = 0; h < 13; h++) for (let w = 0; w < 14; w++) src[i++] = f(d, h, w);
  }
  const patch: Shape3 = [4, 5, 4];
  const centre = [5.6, 6.3, 6.9];
  const m = spatialMatrix({ angles: [0.4, -0.3, 0.2], scale: 0.9 });
  const out = warpPatch(src, s, centre, m, patch, "cubic");
  let o = 0;
  for (let d = 0; d < 4; d++) {
    for (let h = 0; h < 5; h++) {
      for (let w = 0; w < 4; w++, o++) {
        const off = [d - 1.5, h - 2, w - 1.5];
        const p = [0, 1, 2].map((i) =>
          centre[i] + m[3 * i] * off[0] + m[3 * i + 1] * off[1] + m[3 * i + 2] * off[2]
        );
        assert(
          Math.abs(out[o] - f(p[0], p[1], p[2])) < 1e-9,
          `voxel ${o}: ${out[o]} vs ${f(p[0], p[1], p[2])}`,
        );
      }
    }
  }
  const start = [3, -2, -1];
  const crop: Shape3 = [7, 9, 16];
  const c = start.map((x, i) => x + (crop[i] - 1) / 2);
  const id = spatialMatrix({ angles: [0, 0, 0], scale: 1 });
  assertClose(warpPatch(src, s, c, id, crop, "cubic"), extractBox(Float32Array.from(src), s, start, crop), {
    atol: 1e-5,
  });
});

Deno.test("warpPatch() with border padding reads the edge voxel outside the source", () => {
  const s: Shape3 = [4, 5, 6];
  const src = randomFloats(120, 7, -1, 1);
  const id = spatialMatrix({ angles: [0, 0, 0], scale: 1 });
  // a patch starting at (−2, −1, 3) with the identity: every voxel is the source at the clamped index
  const patch: Shape3 = [8, 3, 5];
  const centre = [-2 + 3.5, -1 + 1, 3 + 2];
  for (const order of ["nearest", "linear", "cubic"] as const) {
    const out = warpPatch(src, s, centre, id, patch, order, "border");
    let o = 0;
    for (let d = -2; d < 6; d++) {
      for (let h = -1; h < 2; h++) {
        for (let w = 3; w < 8; w++, o++) {
          const k = (Math.min(3, Math.max(0, d)) * 5 + Math.max(0, h)) * 6 + Math.min(5, w);
          assert(Math.abs(out[o] - src[k]) < 1e-6, `${order}: voxel ${o} is ${out[o]}, expected ${src[k]}`);
        }
      }
    }
  }
});
