import { join } from "node:path";
import { readNifti } from "../../../core/data/nifti_read.ts";
import {
  applyReorientation,
  axisCodes,
  orientationOf,
  planCanonical,
  reorientToCanonical,
} from "../../../core/data/orientation.ts";
import { type Affine, mulAffine, type Shape3, voxelToWorld } from "../../../core/data/volume.ts";
import { assert, assertEquals } from "../../assert.ts";
import { assertClose } from "../../helpers.ts";
import { haveFolder, randomFloats, sharedData } from "./fixtures.ts";

Deno.test("axisCodes() names the world direction of each voxel axis", () => {
  assertEquals(axisCodes([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]), ["R", "A", "S"]);
  assertEquals(orientationOf([-2, 0, 0, 90, 0, 2, 0, -126, 0, 0, 2, -72, 0, 0, 0, 1]), "LAS");
  assertEquals(orientationOf([0, 0, -1, 0, -1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1]), "PSL");
  // oblique: 30° about z still reads as RAS, 60° swaps i and j
  const rot = (
    t: number,
  ): Affine => [Math.cos(t), -Math.sin(t), 0, 0, Math.sin(t), Math.cos(t), 0, 0, 0, 0, 1, 0, 0, 0, 0, 1];
  assertEquals(orientationOf(rot(Math.PI / 6)), "RAS");
  assertEquals(orientationOf(rot(Math.PI / 3)), "ALS");
});

/** Reference: builds the array seen through a permutation/flip of NIfTI axes, voxel by voxel. */
function permuteReference(data: Float32Array, shape: Shape3, perm: number[], flips: boolean[]) {
  // new NIfTI axis a reads old NIfTI axis perm[a], flipped if flips[a]
  const oldN = [shape[2], shape[1], shape[0]];
  const newN = perm.map((p) => oldN[p]);
  const out = new Float32Array(data.length);
  const T = new Array(16).fill(0);
  T[15] = 1;
  for (let a = 0; a < 3; a++) {
    T[perm[a] * 4 + a] = flips[a] ? -1 : 1;
    T[perm[a] * 4 + 3] = flips[a] ? oldN[perm[a]] - 1 : 0;
  }
  for (let k = 0; k < newN[2]; k++) {
    for (let j = 0; j < newN[1]; j++) {
      for (let i = 0; i < newN[0]; i++) {
        const nw = [i, j, k];
        const old = [0, 0, 0];
        for (let a = 0; a < 3; a++) old[perm[a]] = flips[a] ? oldN[perm[a]] - 1 - nw[a] : nw[a];
        out[(k * newN[1] + j) * newN[0] + i] = data[(old[2] * oldN[1] + old[1]) * oldN[0] + old[0]];
      }
    }
  }
  return { data: out, shape: [newN[2], newN[1], newN[0]] as Shape3, T };
}

Deno.test("reorientToCanonical() undoes all 48 axis permutations and flips and keeps world positions", () => {
  const shape: Shape3 = [3, 4, 5];
  const data = randomFloats(60, 21);
  const canonical: Affine = [1.5, 0, 0, -10, 0, 0.9, 0, 20, 0, 0, 2.5, 5, 0, 0, 0, 1];
  const perms = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
  let count = 0;
  for (const perm of perms) {
    for (let f = 0; f < 8; f++) {
      const flips = [f & 1, f & 2, f & 4].map(Boolean);
      const stored = permuteReference(data, shape, perm, flips);
      const affine = mulAffine(canonical, stored.T);
      const back = reorientToCanonical({
        data: stored.data,
        shape: stored.shape,
        spacing: [1, 1, 1],
        affine,
      });
      assertEquals(back.shape, shape);
      assertEquals(Array.from(back.data), Array.from(data), `perm ${perm} flips ${flips}`);
      assertClose(back.affine, canonical, { atol: 1e-12 });
      assertEquals(orientationOf(back.affine), "RAS");
      assertClose(back.spacing, [2.5, 0.9, 1.5], { atol: 1e-12 });
      count++;
    }
  }
  assertEquals(count, 48);
});

Deno.test("applyReorientation() maps each voxel to the same world point under a random oblique affine", () => {
  const shape: Shape3 = [4, 6, 5];
  const data = randomFloats(120, 3);
  const t = 0.3;
  // oblique, axes permuted (i → -y, j → z, k → x)
  const affine: Affine = [
    0,
    Math.sin(t),
    2 * Math.cos(t),
    4,
    -Math.cos(t),
    0,
    0,
    1,
    Math.sin(t) * 0.5,
    Math.cos(t),
    -2 * Math.sin(t) * 0,
    -3,
    0,
    0,
    0,
    1,
  ];
  const plan = planCanonical(shape, affine);
  const out = applyReorientation(data, shape, plan);
  const index = (s: Shape3, d: number, h: number, w: number) => (d * s[1] + h) * s[2] + w;
  const worldToValue = new Map<string, number>();
  for (let d = 0; d < shape[0]; d++) {
    for (let h = 0; h < shape[1]; h++) {
      for (let w = 0; w < shape[2]; w++) {
        worldToValue.set(
          voxelToWorld(affine, w, h, d).map((x) => x.toFixed(6)).join(","),
          data[index(shape, d, h, w)],
        );
      }
    }
  }
  for (let d = 0; d < plan.shape[0]; d++) {
    for (let h = 0; h < plan.shape[1]; h++) {
      for (let w = 0; w < plan.shape[2]; w++) {
        const key = voxelToWorld(plan.affine, w, h, d).map((x) => x.toFixed(6)).join(",");
        assertEquals(out[index(plan.shape, d, h, w)], worldToValue.get(key));
      }
    }
  }
});

const niftiDir = sharedData("nifti");
Deno.test({
  name: "axisCodes() matches the documented orientation of the real scans; reorientation gives RAS",
  ignore: !haveFolder(niftiDir, "real-scan orientation"),
  fn: async () => {
    const expected: Record<string, string> = {
      "MNI152_T1_2mm.nii.gz": "LAS",
      "T2w.nii.gz": "LAS",
      "MR_Gd.nii.gz": "RAS",
      "chris_PD.nii.gz": "RAS",
    };
    for (const [name, codes] of Object.entries(expected)) {
      const vol = await readNifti(join(niftiDir, name));
      assertEquals(orientationOf(vol.affine), codes, name);
      const canonical = reorientToCanonical(vol);
      assertEquals(orientationOf(canonical.affine), "RAS");
      // a voxel keeps its world position: compare the world centre of the volume
      const centre = (a: Affine, s: Shape3) =>
        voxelToWorld(a, (s[2] - 1) / 2, (s[1] - 1) / 2, (s[0] - 1) / 2);
      assertClose(centre(canonical.affine, canonical.shape), centre(vol.affine, vol.shape), { atol: 1e-3 });
      assert(canonical.plan.identity === (codes === "RAS"));
    }
  },
});
