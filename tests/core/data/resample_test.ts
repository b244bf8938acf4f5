import {
  axisOrders,
  type Interpolation,
  resampleArray,
  resampledAffine,
  resampledShape,
  resampleMask,
  resampleVolume,
} from "../../../core/data/resample.ts";
import { type Shape3, voxelToWorld } from "../../../core/data/volume.ts";
import { assert, assertEquals } from "../../assert.ts";
import { assertClose } from "../../helpers.ts";
import { obliqueAffine, randomFloats } from "./fixtures.ts";

/** Reference: the non-separable sum over the 3D tap product, written directly from the kernel. */
function reference(data: Float32Array, shape: Shape3, out: Shape3, order: Interpolation): Float32Array {
  const kernel = (t: number) => {
    const x = Math.abs(t);
    if (order === "linear") return Math.max(0, 1 - x);
    const a = -0.5;
    if (x <= 1) return (a + 2) * x ** 3 - (a + 3) * x ** 2 + 1;
    if (x < 2) return a * x ** 3 - 5 * a * x ** 2 + 8 * a * x - 4 * a;
    return 0;
  };
  const axisTaps = (o: number, nIn: number, nOut: number): [number, number][] => {
    const x = (o + 0.5) * (nIn / nOut) - 0.5;
    if (nIn === nOut) return [[o, 1]];
    const x0 = Math.floor(x);
    const list: [number, number][] = [];
    for (let j = -2; j <= 3; j++) {
      const w = kernel(x - (x0 + j));
      if (w !== 0) list.push([Math.min(nIn - 1, Math.max(0, x0 + j)), w]);
    }
    return list;
  };
  const res = new Float32Array(out[0] * out[1] * out[2]);
  for (let d = 0; d < out[0]; d++) {
    for (let h = 0; h < out[1]; h++) {
      for (let w = 0; w < out[2]; w++) {
        let s = 0;
        for (const [id, wd] of axisTaps(d, shape[0], out[0])) {
          for (const [ih, wh] of axisTaps(h, shape[1], out[1])) {
            for (const [iw, ww] of axisTaps(w, shape[2], out[2])) {
              s += wd * wh * ww * data[(id * shape[1] + ih) * shape[2] + iw];
            }
          }
        }
        res[(d * out[1] + h) * out[2] + w] = s;
      }
    }
  }
  return res;
}

Deno.test("resampleArray() matches a direct 3D cubic and linear reference on random data", () => {
  const shape: Shape3 = [5, 7, 6];
  const data = randomFloats(210, 31);
  for (const out of [[9, 4, 11], [5, 13, 3], [2, 7, 6]] as Shape3[]) {
    for (const order of ["cubic", "linear"] as const) {
      assertClose(resampleArray(data, shape, out, order), reference(data, shape, out, order), {
        atol: 1e-5,
        label: `${order} ${out}`,
      });
    }
  }
});

Deno.test("resampleArray() cubic reproduces quadratics and passes through the original samples", () => {
  const n = 12;
  const shape: Shape3 = [1, 1, n];
  const quad = Float32Array.from({ length: n }, (_, i) => 0.3 * i * i - 2 * i + 1);
  const up = resampleArray(quad, shape, [1, 1, 3 * n], "cubic");
  for (let o = 6; o < 3 * n - 6; o++) {
    const x = (o + 0.5) / 3 - 0.5;
    assertClose([up[o]], [0.3 * x * x - 2 * x + 1], { atol: 1e-4, label: `o=${o}` });
  }
  for (let i = 1; i < n - 1; i++) assertClose([up[3 * i + 1]], [quad[i]], { atol: 1e-5 });
});

Deno.test("resampleArray() linear is exact on a ramp away from the clamped edges", () => {
  const shape: Shape3 = [8, 1, 1];
  const ramp = Float32Array.from({ length: 8 }, (_, i) => 2 * i - 3);
  const up = resampleArray(ramp, shape, [20, 1, 1], "linear");
  for (let o = 2; o < 18; o++) assertClose([up[o]], [2 * ((o + 0.5) * 0.4 - 0.5) - 3], { atol: 1e-5 });
});

Deno.test("resampleArray() nearest picks the closest source voxel and same-shape is a copy", () => {
  const data = randomFloats(24, 2);
  const same = resampleArray(data, [2, 3, 4], [2, 3, 4], "cubic");
  assertEquals(Array.from(same), Array.from(data));
  assert(same !== data);
  const near = resampleArray(Float32Array.from([1, 2, 3, 4]), [4, 1, 1], [2, 1, 1], "nearest");
  assertEquals(Array.from(near), [2, 4]); // x_in = 0.5 → round → 1, x_in = 2.5 → 3
});

Deno.test("axisOrders() uses nearest along an axis more than 3× coarser than the finest", () => {
  assertEquals(axisOrders([3.5, 1, 1], "cubic"), ["nearest", "cubic", "cubic"]);
  assertEquals(axisOrders([2.4, 0.86, 0.86], "cubic"), ["cubic", "cubic", "cubic"]);
  assertEquals(axisOrders([1, 1, 6], "linear", 5), ["linear", "linear", "nearest"]);
});

Deno.test("resampleVolume() gives round(shape·spacing/target) and keeps voxel centres in world space", () => {
  const shape: Shape3 = [6, 9, 7];
  const volume = {
    data: randomFloats(378, 8),
    shape,
    spacing: [2.5, 0.8, 1.5] as Shape3,
    affine: obliqueAffine(),
  };
  const out = resampleVolume(volume, [1, 1, 1]);
  assertEquals(out.shape, resampledShape(shape, volume.spacing, [1, 1, 1]));
  assertEquals(out.shape, [15, 7, 11]);
  const s = [shape[2] / out.shape[2], shape[1] / out.shape[1], shape[0] / out.shape[0]];
  for (const [w, h, d] of [[0, 0, 0], [10, 6, 14], [3, 2, 5]]) {
    const oldVoxel = [(w + 0.5) * s[0] - 0.5, (h + 0.5) * s[1] - 0.5, (d + 0.5) * s[2] - 0.5];
    assertClose(
      voxelToWorld(out.affine, w, h, d),
      voxelToWorld(volume.affine, oldVoxel[0], oldVoxel[1], oldVoxel[2]),
      { atol: 1e-9 },
    );
  }
  assertClose(out.spacing, [6 * 2.5 / 15, 9 * 0.8 / 7, 7 * 1.5 / 11], { atol: 1e-9 });
  assertClose(resampledAffine(volume.affine, shape, shape), volume.affine, { atol: 1e-12 });
});

Deno.test("resampleMask() stays binary and keeps a block's extent", () => {
  const shape: Shape3 = [8, 8, 8];
  const mask = new Uint8Array(512);
  for (let d = 2; d < 6; d++) {
    for (let h = 2; h < 6; h++) for (let w = 2; w < 6; w++) mask[(d * 8 + h) * 8 + w] = 1;
  }
  const up = resampleMask(mask, shape, [16, 16, 16]);
  assert(up.every((v) => v === 0 || v === 1));
  let count = 0;
  for (const v of up) count += v;
  // block of 4³ → 8³ less its 8 corners: there the trilinear weight is 0.75³ ≈ 0.42 < 0.5
  assertEquals(count, 8 * 8 * 8 - 8);
  assertEquals(up[(8 * 16 + 8) * 16 + 8], 1);
  assertEquals(up[(2 * 16 + 2) * 16 + 2], 0);
});
