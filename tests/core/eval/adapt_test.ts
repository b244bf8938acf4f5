/**
 * Loading a pretrained encoder through the adaptation plan: stem repetition and position-embedding
 * resizing against float64 references written here, the plan's round trip through a checkpoint file,
 * and the errors for keys that do not match.
 */
import { assert, assertEquals, assertRejects, assertThrows } from "../../assert.ts";
import {
  adaptPretrainedWeights,
  loadPretrainedEncoder,
  readPretrainedWeights,
  repeatInputChannels,
  resizePositionTable,
} from "../../../core/eval/mod.ts";
import { type HostTensor, stateDict } from "../../../core/nn/mod.ts";
import { CHECKPOINT_FORMAT, saveCheckpoint } from "../../../core/train/mod.ts";
import { Generator, interpolate, scope, tensor, type Vec3 } from "../../../mod.ts";
import primus, { Primus } from "../../../plugins/arch/primus/mod.ts";
import resenc, { ResEncUNet } from "../../../plugins/arch/resenc/mod.ts";
import { assertClose, gpuTest, randomArray } from "../../helpers.ts";

const host = (shape: number[], seed: number): HostTensor => ({
  dtype: "F32",
  shape,
  data: Float32Array.from(randomArray(shape.reduce((a, b) => a * b, 1), seed)),
});

Deno.test("repeatInputChannels: weight[o, c, k] = w[o, 0, k] / C, against a float64 loop", () => {
  const w = host([4, 1, 3, 3, 3], 1);
  const C = 3;
  const out = repeatInputChannels(w, C);
  assertEquals(out.shape, [4, 3, 3, 3, 3]);
  const expected = new Float64Array(4 * C * 27);
  for (let o = 0; o < 4; o++) {
    for (let c = 0; c < C; c++) {
      for (let k = 0; k < 27; k++) expected[o * C * 27 + c * 27 + k] = Number(w.data[o * 27 + k]) / C;
    }
  }
  assertClose(out.data, expected, { rtol: 1e-7, atol: 0, label: "repeated stem" });
  assertThrows(() => repeatInputChannels(host([4, 2, 3, 3, 3], 2), 4), RangeError, "2 input channels");
});

/** PyTorch's 1D linear interpolation (align_corners=False) along one axis of a row-major array, float64. */
function linear1d(
  data: Float64Array,
  shape: number[],
  axis: number,
  size: number,
): Float64Array<ArrayBuffer> {
  const outShape = [...shape];
  outShape[axis] = size;
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const outer = shape.slice(0, axis).reduce((a, b) => a * b, 1);
  const n = shape[axis];
  const out = new Float64Array(outer * size * inner);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < size; i++) {
      const x = Math.max(0, (i + 0.5) * (n / size) - 0.5);
      const i0 = Math.min(Math.floor(x), n - 1);
      const i1 = i0 < n - 1 ? i0 + 1 : i0;
      const l1 = x - i0, l0 = 1 - l1;
      for (let k = 0; k < inner; k++) {
        out[(o * size + i) * inner + k] = l0 * data[(o * n + i0) * inner + k] +
          l1 * data[(o * n + i1) * inner + k];
      }
    }
  }
  return out;
}

/** The reference resize: [1, N, D] → [D, d, h, w] (row-major tokens), separable linear passes, back. */
function resizeReference(pos: HostTensor, from: Vec3, to: Vec3): Float64Array {
  const d = pos.shape[2];
  const n = from[0] * from[1] * from[2];
  let vol: Float64Array<ArrayBuffer> = new Float64Array(d * n);
  for (let t = 0; t < n; t++) for (let c = 0; c < d; c++) vol[c * n + t] = pos.data[t * d + c];
  let shape = [d, ...from];
  for (let a = 0; a < 3; a++) {
    vol = linear1d(vol, shape, a + 1, to[a]);
    shape = [...shape];
    shape[a + 1] = to[a];
  }
  const m = to[0] * to[1] * to[2];
  const out = new Float64Array(m * d);
  for (let t = 0; t < m; t++) for (let c = 0; c < d; c++) out[t * d + c] = vol[c * m + t];
  return out;
}

gpuTest(
  "resizePositionTable matches separable float64 linear passes and the GPU's trilinear op",
  async () => {
    const cases: [Vec3, Vec3][] = [[[2, 3, 4], [4, 3, 6]], [[4, 4, 4], [3, 5, 2]], [[3, 2, 5], [3, 2, 5]]];
    for (const [from, to] of cases) {
      const d = 5;
      const pos = host([1, from[0] * from[1] * from[2], d], from[0] + 10 * to[0]);
      const out = resizePositionTable(pos, from, to);
      assertEquals(out.shape, [1, to[0] * to[1] * to[2], d]);
      const label = `${from.join("×")} → ${to.join("×")}`;
      assertClose(out.data, resizeReference(pos, from, to), { rtol: 1e-6, atol: 1e-7, label });
      // the GPU op on [1, D, d, h, w] (its own float64 tests are elsewhere): the same layout convention
      const gpuOut = await scope(() => {
        const vol = new Float32Array(pos.data.length);
        const n = pos.shape[1];
        for (let t = 0; t < n; t++) for (let c = 0; c < d; c++) vol[c * n + t] = pos.data[t * d + c];
        return interpolate(tensor(vol, [1, d, ...from]), {
          size: to,
          mode: "trilinear",
          alignCorners: false,
        });
      }).toArray();
      const m = to[0] * to[1] * to[2];
      const back = new Float32Array(m * d);
      for (let t = 0; t < m; t++) for (let c = 0; c < d; c++) back[t * d + c] = gpuOut[c * m + t];
      assertClose(out.data, back, { rtol: 1e-5, atol: 1e-6, label: `${label} vs GPU` });
    }
  },
);

async function writePretrained(path: string, network: ResEncUNet | Primus, prefix = "network.") {
  const weights: Record<string, HostTensor> = {};
  for (const [k, t] of Object.entries(await stateDict(network))) weights[prefix + k] = t;
  await saveCheckpoint(path, {
    // only the plan matters to the loader; the rest of the meta is a pretraining run's
    meta: { format: CHECKPOINT_FORMAT, adaptationPlan: network.adaptationPlan() } as never,
    weights,
    optimizer: { stepState: [0, 0, 0, 0, 1, 0, 0, 0], groups: [] },
  });
}

gpuTest(
  "ResEnc: the plan round-trips; encoder and stem load exactly, 3 channels see x,x,x as 1 channel sees x",
  async () => {
    const dir = await Deno.makeTempDir();
    try {
      const config = resenc.config.parse(resenc.sizes!.tiny);
      const patch: Vec3 = [8, 8, 8];
      const pre = scope(() =>
        new ResEncUNet(
          config,
          { inChannels: 1, outChannels: 1, patchSize: patch, encoderOnly: false },
          new Generator(3),
        )
      );
      await writePretrained(`${dir}/latest.safetensors`, pre);
      const read = await readPretrainedWeights(`${dir}/latest.safetensors`);
      assertEquals(read.plan, pre.adaptationPlan(), "the adaptation plan round-trips through the file");
      const down = scope(() =>
        new ResEncUNet(
          config,
          { inChannels: 3, outChannels: 4, patchSize: patch, encoderOnly: false },
          new Generator(9),
        )
      );
      const decoderBefore = Object.fromEntries(
        Object.entries(await stateDict(down)).filter(([k]) => k.startsWith("decoder.")),
      );
      const report = loadPretrainedEncoder(down, read, patch);
      assertEquals(Object.keys(report.repeated), ["encoder.stem.convs.0.conv.weight"]);
      assert(report.fresh.every((n) => n.startsWith("decoder.")) && report.fresh.length > 0);
      const after = await stateDict(down);
      const preState = await stateDict(pre);
      for (const name of report.loaded) {
        if (name in report.repeated) continue;
        assertEquals(after[name].data, preState[name].data, `${name} loaded bit for bit`);
      }
      for (const [name, t] of Object.entries(decoderBefore)) {
        assertEquals(after[name].data, t.data, `${name} keeps its fresh initialisation`);
      }
      // the stem is linear in its input: Σ_c (w/3)·x = w·x
      const x = randomArray(8 * 8 * 8, 4);
      const one = scope(() => pre.encode(tensor(x, [1, 1, ...patch])).at(-1)!);
      const x3 = new Float32Array(3 * x.length);
      for (let c = 0; c < 3; c++) x3.set(x, c * x.length);
      const three = scope(() => down.encode(tensor(x3, [1, 3, ...patch])).at(-1)!);
      assertClose(await three.toArray(), await one.toArray(), {
        rtol: 1e-4,
        atol: 1e-5,
        label: "bottleneck",
      });
      pre.dispose();
      down.dispose();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

gpuTest(
  "Primus: the position embedding is resized for another patch; a mismatched key names both shapes",
  async () => {
    const dir = await Deno.makeTempDir();
    try {
      const config = primus.config.parse({ ...primus.sizes!.tiny, patchEmbedSize: 4 });
      const pre = scope(() =>
        new Primus(
          config,
          { inChannels: 1, outChannels: 1, patchSize: [8, 8, 12], encoderOnly: false },
          new Generator(5),
        )
      );
      // a network export (reference names, no prefix), as `network.safetensors` is written
      const weights = await stateDict(pre);
      const exportBytes = (await import("../../../core/nn/mod.ts")).encodeSafetensors(weights, {
        format: "pt",
        voxssl: JSON.stringify({ adaptationPlan: pre.adaptationPlan() }),
      });
      await Deno.writeFile(`${dir}/network.safetensors`, exportBytes);
      const read = await readPretrainedWeights(`${dir}/network.safetensors`);
      const patch: Vec3 = [12, 12, 12];
      const down = scope(() =>
        new Primus(
          config,
          { inChannels: 2, outChannels: 3, patchSize: patch, encoderOnly: false },
          new Generator(6),
        )
      );
      const report = loadPretrainedEncoder(down, read, patch);
      assertEquals(report.resized["eva.pos_embed"], [[2, 2, 3], [3, 3, 3]]);
      assertEquals(report.repeated["down_projection.proj.weight"], 2);
      const after = await stateDict(down);
      assertClose(
        after["eva.pos_embed"].data,
        resizeReference(weights["eva.pos_embed"], [2, 2, 3], [3, 3, 3]),
        { rtol: 1e-6, atol: 1e-7, label: "pos_embed" },
      );
      assertEquals(
        after["eva.blocks.0.attn.q_proj.weight"].data,
        weights["eva.blocks.0.attn.q_proj.weight"].data,
      );
      // a wider pretrained model: the first mismatching key is named with both shapes
      const wide = primus.config.parse({ ...primus.sizes!.tiny, patchEmbedSize: 4, embedDim: 60 });
      const other = scope(() =>
        new Primus(
          wide,
          { inChannels: 1, outChannels: 1, patchSize: [8, 8, 12], encoderOnly: false },
          new Generator(7),
        )
      );
      await writePretrained(`${dir}/wide.safetensors`, other);
      const wideRead = await readPretrainedWeights(`${dir}/wide.safetensors`);
      assertThrows(
        () => adaptPretrainedWeights(down, wideRead, patch),
        Error,
        `"down_projection.proj.weight" is [60,1,4,4,4], the network's is [48,2,4,4,4]`,
      );
      // a key missing from the checkpoint is named
      const partial = { ...read, weights: { ...read.weights } };
      delete partial.weights["eva.norm.weight"];
      assertThrows(() => adaptPretrainedWeights(down, partial, patch), Error, `no "eva.norm.weight"`);
      // another architecture's checkpoint is refused by name
      const cnn = scope(() =>
        new ResEncUNet(resenc.config.parse(resenc.sizes!.tiny), {
          inChannels: 1,
          outChannels: 1,
          patchSize: [8, 8, 8],
          encoderOnly: false,
        }, new Generator(1))
      );
      await writePretrained(`${dir}/cnn.safetensors`, cnn);
      const cnnRead = await readPretrainedWeights(`${dir}/cnn.safetensors`);
      assertThrows(() => adaptPretrainedWeights(down, cnnRead, patch), Error, `architecture "resenc"`);
      await assertRejects(() => readPretrainedWeights(`${dir}/none.safetensors`), Error, "cannot read it");
      for (const n of [pre, down, other, cnn]) n.dispose();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
