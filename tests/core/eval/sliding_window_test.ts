import resenc, { ResEncUNet } from "../../../plugins/arch/resenc/mod.ts";
import { Generator, scope, tensor } from "../../../mod.ts";
import type { Shape3 } from "../../../core/data/volume.ts";
import { networkPredictor } from "../../../core/eval/network_predictor.ts";
import {
  gaussianImportance,
  type PatchPredictor,
  slidingWindowPredict,
  slidingWindowSteps,
} from "../../../core/eval/sliding_window.ts";
import { assert, assertEquals } from "../../assert.ts";
import { gpuTest, randomArray } from "../../helpers.ts";
import { randomFloats } from "../data/fixtures.ts";

/**
 * float64 reference of nnU-Net's compute_gaussian, the scipy way: a unit impulse at size // 2 convolved
 * (explicit 3D sum, zero outside) with the product of normalised 1D kernels truncated at
 * int(4 sigma + 0.5), divided by the maximum, zeros replaced by the smallest non-zero value.
 */
function referenceGaussian(size: Shape3, sigmaScale: number): Float64Array {
  const kernels = size.map((n) => {
    const sigma = n * sigmaScale;
    const radius = Math.trunc(4 * sigma + 0.5);
    const taps = Array.from(
      { length: 2 * radius + 1 },
      (_, i) => Math.exp(-((i - radius) ** 2) / (2 * sigma * sigma)),
    );
    const z = taps.reduce((a, b) => a + b, 0);
    return { radius, taps: taps.map((t) => t / z) };
  });
  const [D, H, W] = size;
  const impulse = new Float64Array(D * H * W);
  const c = size.map((n) => Math.trunc(n / 2));
  impulse[(c[0] * H + c[1]) * W + c[2]] = 1;
  const k = (a: number, t: number) =>
    Math.abs(t) <= kernels[a].radius ? kernels[a].taps[t + kernels[a].radius] : 0;
  const out = new Float64Array(D * H * W);
  for (let d = 0; d < D; d++) {
    for (let h = 0; h < H; h++) {
      for (let w = 0; w < W; w++) {
        let s = 0;
        for (let y = 0; y < impulse.length; y++) {
          if (impulse[y] === 0) continue;
          const yd = Math.trunc(y / (H * W)), yh = Math.trunc(y / W) % H, yw = y % W;
          s += impulse[y] * k(0, d - yd) * k(1, h - yh) * k(2, w - yw);
        }
        out[(d * H + h) * W + w] = s;
      }
    }
  }
  const max = Math.max(...out);
  const scaled = out.map((v) => v / max);
  const min = Math.min(...scaled.filter((v) => v > 0));
  return scaled.map((v) => (v === 0 ? min : v));
}

Deno.test("Gaussian importance weights match a float64 reference of nnU-Net's compute_gaussian", () => {
  for (
    const [size, scale] of [[[7, 6, 5], 1 / 8], [[16, 12, 9], 1 / 8], [[16, 16, 10], 1 / 16]] as [
      Shape3,
      number,
    ][]
  ) {
    const got = gaussianImportance(size, scale);
    const ref = referenceGaussian(size, scale);
    let worst = 0;
    for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(got[i] - ref[i]) / ref[i]);
    assert(worst < 1e-6, `${size}: worst relative error ${worst}`);
  }
  // with sigma 1/16 the corners lie beyond 4 sigma: clamped to the smallest non-zero weight, never 0
  const clamped = gaussianImportance([16, 16, 10], 1 / 16);
  assert(clamped.every((v) => v > 0));
  assertEquals(clamped[0], Math.min(...clamped));
});

Deno.test("sliding-window steps follow nnU-Net (step 0.5, numpy's half-to-even rounding)", () => {
  assertEquals(slidingWindowSteps([20, 21, 8], [8, 8, 8]), [[0, 4, 8, 12], [0, 3, 6, 10, 13], [0]]);
  assertEquals(slidingWindowSteps([10, 12, 9], [6, 8, 6]), [[0, 2, 4], [0, 4], [0, 3]]);
});

/** A pointwise "network": logit k = (k + 1) · channel 0 − k · channel 1 per voxel. */
const pointwise: PatchPredictor = (patch, size) => {
  const n = size[0] * size[1] * size[2];
  const out = new Float32Array(3 * n);
  for (let k = 0; k < 3; k++) {
    for (let i = 0; i < n; i++) out[k * n + i] = (k + 1) * patch[i] - k * patch[n + i];
  }
  return Promise.resolve(out);
};

Deno.test("sliding window: a pointwise network gives its own output everywhere (overlaps, padding, mirroring)", async () => {
  for (const shape of [[10, 12, 9], [5, 12, 9]] as Shape3[]) {
    const n = shape[0] * shape[1] * shape[2];
    const channels = [randomFloats(n, 1), randomFloats(n, 2)];
    for (const mirrorAxes of [[], [0, 1, 2]]) {
      const got = await slidingWindowPredict(channels, shape, pointwise, {
        patchSize: [6, 8, 6],
        numClasses: 3,
        mirrorAxes,
      });
      for (let k = 0; k < 3; k++) {
        for (let i = 0; i < n; i++) {
          const expected = (k + 1) * channels[0][i] - k * channels[1][i];
          assert(
            Math.abs(got[k * n + i] - expected) < 1e-5,
            `${shape} mirror ${mirrorAxes} k${k} voxel ${i}`,
          );
        }
      }
    }
  }
});

Deno.test("sliding window: Gaussian-weighted blending of position-dependent windows matches a float64 reference", async () => {
  const shape: Shape3 = [10, 12, 9], patch: Shape3 = [6, 8, 6];
  // logit 0 = window-local d + 10·h + 100·w, logit 1 = the input: windows disagree, so weights matter
  const local: PatchPredictor = (p, size) => {
    const n = size[0] * size[1] * size[2];
    const out = new Float32Array(2 * n);
    for (let i = 0; i < n; i++) {
      out[i] = Math.trunc(i / (size[1] * size[2])) + 10 * (Math.trunc(i / size[2]) % size[1]) +
        100 * (i % size[2]);
      out[n + i] = p[i];
    }
    return Promise.resolve(out);
  };
  const n = shape[0] * shape[1] * shape[2];
  const image = randomFloats(n, 3);
  const got = await slidingWindowPredict([image], shape, local, { patchSize: patch, numClasses: 2 });
  const g = referenceGaussian(patch, 1 / 8);
  const starts = [[0, 2, 4], [0, 4], [0, 3]]; // written out by hand (nnU-Net's rule, see the steps test)
  const num = new Float64Array(n), den = new Float64Array(n);
  for (const z of starts[0]) {
    for (const y of starts[1]) {
      for (const x of starts[2]) {
        for (let d = 0; d < patch[0]; d++) {
          for (let h = 0; h < patch[1]; h++) {
            for (let w = 0; w < patch[2]; w++) {
              const weight = g[(d * patch[1] + h) * patch[2] + w];
              const v = ((z + d) * shape[1] + (y + h)) * shape[2] + (x + w);
              num[v] += weight * (d + 10 * h + 100 * w);
              den[v] += weight;
            }
          }
        }
      }
    }
  }
  for (let i = 0; i < n; i++) {
    const expected = num[i] / den[i];
    assert(
      Math.abs(got[i] - expected) < 1e-4 * Math.max(1, Math.abs(expected)),
      `voxel ${i}: ${got[i]} vs ${expected}`,
    );
    assert(Math.abs(got[n + i] - image[i]) < 1e-5);
  }
});

gpuTest(
  "sliding window with one window covering the image equals the ResEnc network on the whole volume",
  async () => {
    const tiny = resenc.config.parse(resenc.sizes!.tiny);
    const patch: Shape3 = [8, 8, 8];
    const net = scope(() =>
      new ResEncUNet(
        tiny,
        { inChannels: 2, outChannels: 3, patchSize: patch, encoderOnly: false },
        new Generator(3),
      )
    );
    try {
      const n = 8 * 8 * 8;
      const input = randomArray(2 * n, 11);
      net.eval();
      const whole = scope(() => net.forward(tensor(input, [1, 2, ...patch])));
      const expected = await whole.toFloat64();
      whole.dispose();
      const channels = [Float32Array.from(input.slice(0, n)), Float32Array.from(input.slice(n))];
      const got = await slidingWindowPredict(channels, patch, networkPredictor(net, 2), {
        patchSize: patch,
        numClasses: 3,
      });
      let worst = 0;
      for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(got[i] - expected[i]));
      assert(worst < 1e-5 * Math.max(1, ...expected.map(Math.abs)), `max |difference| ${worst}`);
    } finally {
      net.dispose();
    }
  },
);
