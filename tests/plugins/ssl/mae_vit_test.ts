/**
 * MAE on a ViT with token dropping (nnssl's EvaMAE): the token draw over many samples (exact counts,
 * every subset equally likely), nnssl's transposed loss mask against a simulation of its index logic,
 * the data hook's arrays, the restored sequence (mask token exactly at the dropped positions, gradients),
 * the encoder and the whole reconstruction against a reference built by hand from Primus's blocks
 * (slices and concatenations instead of gatherRows/scatterRows, host-built rotary rows), and the loss
 * against a float64 reference.
 */
import { assert, assertEquals, assertThrows } from "../../assert.ts";
import mae, {
  decoderConfig,
  drawKeptTokens,
  droppedTokens,
  keptTokenCount,
  type MaeConfig,
  type MaeVitDecoder,
  nnsslLossTokens,
  restoreSequence,
  tokenDroppingForward,
  tokenGridOf,
} from "../../../plugins/ssl/mae/mod.ts";
import primus, { Primus } from "../../../plugins/arch/primus/mod.ts";
import {
  add,
  backward,
  concat,
  createRng,
  Generator,
  getGpu,
  type LayerNorm,
  mul,
  type Network,
  permute,
  reshape,
  ropeSinCos,
  ropeSinCosAt,
  sampleArray,
  scope,
  slice,
  sum,
  type Tensor,
  tensor,
} from "../../../mod.ts";
import { createSampleRunner } from "../../../core/data/sample_runner.ts";
import { resolveAugmentation } from "../../../core/data/augment/config.ts";
import { resolveSource } from "../../../core/data/sources.ts";
import { uploadBatch } from "../../../core/train/gpu_batch.ts";
import { assertClose, gpuTest, randomArray } from "../../helpers.ts";

const tiny = primus.config.parse({ ...primus.sizes!.tiny, patchEmbedSize: 4 });
const patch: [number, number, number] = [8, 8, 12]; // a 2×2×3 token grid: 12 tokens
const grid: [number, number, number] = [2, 2, 3];
const N = 12, D = tiny.embedDim;

function methodConfig(extra: Partial<MaeConfig> = {}): MaeConfig {
  return mae.config.parse({ tokenSize: 4, ...extra });
}

function build(network: Network, config: MaeConfig) {
  return mae.build({
    network,
    config,
    rng: new Generator(11),
    patchSize: patch,
    createNetwork: () => {
      throw new Error("not needed");
    },
  });
}

async function values(t: Tensor): Promise<number[]> {
  return [...await t.toArray()];
}

Deno.test("keptTokenCount() keeps max(1, int(N·(1 − ratio))) tokens, as timm's PatchDropout", () => {
  assertEquals(keptTokenCount(8000, 0.75), 2000); // Primus-M at 160³
  assertEquals(keptTokenCount(12, 0.75), 3);
  assertEquals(keptTokenCount(27, 0.75), 6); // int(6.75)
  assertEquals(keptTokenCount(10, 0.6), 4);
  assertEquals(keptTokenCount(3, 0.9), 1);
  assertEquals(tokenGridOf([160, 160, 160], 8), [20, 20, 20]);
  assertEquals(tokenGridOf([8, 8, 12], [4, 4, 6]), [2, 2, 2]);
  assertEquals(tokenGridOf([20, 16, 16], 8), undefined);
});

Deno.test("drawKeptTokens(): exactly K distinct ascending tokens per draw, every subset equally likely", () => {
  const rng = createRng(3, "kept");
  // counts and geometry over many draws of a Primus-M-like grid and a small one
  for (const [n, k] of [[8000, 2000], [12, 3], [64, 16]]) {
    for (let draw = 0; draw < (n > 1000 ? 20 : 500); draw++) {
      const kept = drawKeptTokens(n, k, rng);
      assertEquals(kept.length, k);
      for (let i = 0; i < k; i++) {
        assert(kept[i] >= 0 && kept[i] < n, `${kept[i]} in [0, ${n})`);
        if (i > 0) assert(kept[i] > kept[i - 1], "ascending and distinct");
      }
      const dropped = droppedTokens(n, kept);
      assertEquals(dropped.reduce((s, v) => s + v, 0), n - k, "exactly N − K dropped");
    }
  }
  // uniformity: all C(6, 2) = 15 subsets, 15000 draws; χ² with 14 degrees of freedom
  const counts = new Map<string, number>();
  const draws = 15000;
  for (let draw = 0; draw < draws; draw++) {
    const key = drawKeptTokens(6, 2, rng).join();
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  assertEquals(counts.size, 15, "every subset occurs");
  const expected = draws / 15;
  const chi2 = [...counts.values()].reduce((s, c) => s + (c - expected) ** 2 / expected, 0);
  assert(chi2 < 36.1, `χ²(14) = ${chi2.toFixed(1)} (p < 0.001 above 36.1)`);
  // per-token frequency on a larger grid: each token kept with probability K/N
  const keptCount = new Float64Array(64);
  for (let draw = 0; draw < 4000; draw++) for (const t of drawKeptTokens(64, 16, rng)) keptCount[t]++;
  const mean = 4000 * 16 / 64, sd = Math.sqrt(4000 * 0.25 * 0.75);
  for (let t = 0; t < 64; t++) {
    assert(Math.abs(keptCount[t] - mean) < 5 * sd, `token ${t}: ${keptCount[t]} ≈ ${mean}`);
  }
  assertThrows(() => drawKeptTokens(4, 5, rng), RangeError);
});

/**
 * nnssl's index logic, simulated as written: tokens flattened 'b c w h d -> b (h w d) c' (sequence index
 * (j·W + i)·D + k for grid position (i, j, k)), the loss mask made by scattering the kept sequence
 * indices into a flat mask and viewing it as (W, H, D).
 */
function nnsslSimulatedLossMask(dropped: Uint8Array, [W, H, Dd]: number[]): Uint8Array {
  const sequence: number[] = []; // sequence index → voxssl token index
  for (let j = 0; j < H; j++) {
    for (let i = 0; i < W; i++) for (let k = 0; k < Dd; k++) sequence.push((i * H + j) * Dd + k);
  }
  const keptSequence = sequence.map((t, f) => (dropped[t] ? -1 : f)).filter((f) => f >= 0);
  const flat = new Uint8Array(W * H * Dd); // 1 = kept, as create_mask
  for (const f of keptSequence) flat[f] = 1;
  const out = new Uint8Array(W * H * Dd);
  for (let a = 0; a < W; a++) {
    for (let b = 0; b < H; b++) {
      for (let c = 0; c < Dd; c++) out[(a * H + b) * Dd + c] = 1 - flat[(a * H + b) * Dd + c];
    }
  }
  return out;
}

Deno.test("nnsslLossTokens() reproduces nnssl's transposed loss mask (cubic: the axis-2/3 transpose)", () => {
  const rng = createRng(5, "quirk");
  for (const g of [[3, 3, 3], [2, 3, 4], [4, 2, 3], [20, 20, 20]]) {
    const n = g[0] * g[1] * g[2];
    for (let draw = 0; draw < 10; draw++) {
      const dropped = droppedTokens(n, drawKeptTokens(n, keptTokenCount(n, 0.75), rng));
      const quirk = nnsslLossTokens(dropped, g);
      assertEquals([...quirk], [...nnsslSimulatedLossMask(dropped, g)], `grid ${g}`);
      assertEquals(quirk.reduce((s, v) => s + v, 0), n - keptTokenCount(n, 0.75), "same count");
      if (g[0] === g[1]) {
        for (let i = 0; i < g[0]; i++) {
          for (let j = 0; j < g[1]; j++) {
            for (let k = 0; k < g[2]; k++) {
              assertEquals(quirk[(i * g[1] + j) * g[2] + k], dropped[(j * g[1] + i) * g[2] + k]);
            }
          }
        }
      }
    }
  }
  // at 20³ about a quarter of the loss falls on kept tokens, as methods.md §15.1 says (≈ 24%)
  const dropped = droppedTokens(8000, drawKeptTokens(8000, 2000, rng));
  const quirk = nnsslLossTokens(dropped, [20, 20, 20]);
  const onKept = quirk.reduce((s, v, t) => s + (v && !dropped[t] ? 1 : 0), 0) / 6000;
  assert(onKept > 0.22 && onKept < 0.28, `share of the loss on kept tokens: ${onKept}`);
});

Deno.test("mae's sample hook (token dropping) ships K kept tokens and the token mask of the rest, the block mask unchanged", async () => {
  const source = await resolveSource({ kind: "synthetic", count: 2, shape: [20, 20, 20], seed: 4 });
  const init = (hookConfig: Record<string, unknown>, size: [number, number, number] = [16, 16, 8]) => ({
    source,
    spec: { patch: size, augmentation: resolveAugmentation("none"), anatomyProbability: 0, masks: [] },
    seed: 5,
    training: true,
    hookModule: new URL("../../../plugins/ssl/mae/mod.ts", import.meta.url).href,
    hookConfig,
  });
  const runner = await createSampleRunner(init({ block: 4, tokenSize: 4 })); // a 4×4×2 token grid
  const quirk = await createSampleRunner(init({ block: 4, tokenSize: 4, nnsslTransposedLossMask: true }));
  const masked = await createSampleRunner(init({ block: 4, vitVariant: "masked-input" }));
  const odd = await createSampleRunner(init({ block: 4 }, [12, 12, 8])); // 12 is no multiple of 8
  try {
    const seen = new Float64Array(32);
    for (let step = 0; step < 40; step++) {
      const { arrays } = (await runner.run({ step, index: 1, item: step % 2 })).result;
      assertEquals(Object.keys(arrays).sort(), ["blockMask", "image", "keep", "tokenMask"]);
      assertEquals([arrays.keep.dtype, ...arrays.keep.shape], ["i32", 8]); // int(32 · 0.25)
      assertEquals([arrays.tokenMask.dtype, ...arrays.tokenMask.shape], ["u8", 4, 4, 2]);
      const kept = arrays.keep.data as Int32Array;
      assertEquals([...arrays.tokenMask.data], [...droppedTokens(32, kept)], "token mask = not kept");
      for (const t of kept) seen[t]++;
      const other = (await quirk.run({ step, index: 1, item: step % 2 })).result.arrays;
      assertEquals(other.keep.data, kept, "the same draw");
      assertEquals([...other.tokenMask.data], [...nnsslLossTokens(arrays.tokenMask.data, [4, 4, 2])]);
      // the block mask (CNNs, masked input) is the one the masked-input variant draws: unchanged
      const plain = (await masked.run({ step, index: 1, item: step % 2 })).result.arrays;
      assertEquals(Object.keys(plain).sort(), ["blockMask", "image"]);
      assertEquals(plain.blockMask, arrays.blockMask);
    }
    assert(seen.every((c) => c > 0), "every token is kept sometimes");
    const none = (await odd.run({ step: 0, index: 0, item: 0 })).result.arrays;
    assertEquals(
      Object.keys(none).sort(),
      ["blockMask", "image"],
      "no token arrays for a patch of no whole tokens",
    );
  } finally {
    for (const r of [runner, quirk, masked, odd]) r.close();
  }
});

gpuTest(
  "restoreSequence() puts the kept rows in place and the mask token exactly at the dropped ones; gradients",
  async () => {
    const [b, k, c, n] = [2, 3, 5, 7];
    const keep = [[0, 4, 6], [5, 1, 2]]; // any order per sample
    const encoded = tensor(randomArray(b * k * c, 1), [b, k, c], { requiresGrad: true });
    const token = tensor(randomArray(c, 2), [1, 1, c], { requiresGrad: true });
    const weights = randomArray(b * n * c, 3);
    const restored = scope(() => {
      const r = restoreSequence(
        encoded,
        tensor(Int32Array.from(keep.flat()), [b, k], { dtype: "i32" }),
        token,
        n,
      );
      backward(sum(mul(r, tensor(weights, [b, n, c]))));
      return r;
    });
    const got = await values(restored), e = await values(encoded), t = await values(token);
    const expectedTokenGrad = new Float64Array(c);
    const expectedEncodedGrad = new Float64Array(b * k * c);
    for (let s = 0; s < b; s++) {
      for (let row = 0; row < n; row++) {
        const slot = keep[s].indexOf(row);
        for (let j = 0; j < c; j++) {
          const at = (s * n + row) * c + j;
          if (slot >= 0) {
            assertEquals(got[at], e[(s * k + slot) * c + j], `sample ${s} row ${row}: kept`);
            expectedEncodedGrad[(s * k + slot) * c + j] = Math.fround(weights[at]); // the f32 weight itself
          } else {
            assertEquals(got[at], t[j], `sample ${s} row ${row}: mask token`);
            expectedTokenGrad[j] += weights[at];
          }
        }
      }
    }
    assertClose(await values(token.grad!), expectedTokenGrad, { rtol: 1e-6, atol: 1e-6, label: "d token" });
    assertClose(await values(encoded.grad!), expectedEncodedGrad, { rtol: 0, atol: 0, label: "d encoded" });
    for (const x of [encoded, token, restored]) x.dispose();
  },
);

/** Tokens [B, N, D] after the patch embedding, by hand. */
function embedded(net: Primus, x: Tensor): Tensor {
  const e = net.down_projection.forward(x); // [B, D, 2, 2, 3]
  return permute(reshape(e, [e.shape[0], D, N]), [0, 2, 1]);
}

/** The rows `rows[b]` of each sample of h [B, N, C], by slicing and concatenating. */
function rowsByHand(h: Tensor, rows: number[][]): Tensor {
  const c = h.shape[2];
  return concat(
    rows.map((r, b) => concat(r.map((i) => slice(h, [b, i, 0], [b + 1, i + 1, c])), 1)),
    0,
  );
}

function parameter(module: { namedParameters(): Iterable<[string, Tensor]> }, name: string): Tensor {
  return new Map(module.namedParameters()).get(name)!;
}

gpuTest(
  "token dropping: the encoder on the kept tokens and the whole reconstruction match a reference built by hand",
  async () => {
    const net = scope(() =>
      new Primus(
        tiny,
        { inChannels: 1, outChannels: 1, patchSize: patch, encoderOnly: false },
        new Generator(3),
      )
    );
    const config = methodConfig({ decoderDropPathRate: 0.3 });
    const instance = scope(() => build(net, config));
    const decoder = instance.modules.decoder as MaeVitDecoder;
    assertEquals(
      decoder.blocks.map((b) => b.dropPathRate),
      [0, 0.3],
      "drop path linear over the decoder's depth",
    );
    net.eval();
    decoder.eval();
    const keep = [[1, 6, 10], [0, 7, 11]];
    const x = tensor(randomArray(2 * 8 * 8 * 12, 4), [2, 1, ...patch]);
    const tokenMask = Uint8Array.from(keep.flatMap((k) => [...droppedTokens(N, k)]));
    const keepT = tensor(Int32Array.from(keep.flat()), [2, 3], { dtype: "i32" });
    const maskT = tensor(tokenMask, [2, ...grid], { dtype: "u8" });
    const { encoded, out } = scope(() => ({
      encoded: net.tokens.encodeTokens(x, { keep: keepT }),
      out: tokenDroppingForward(net, decoder, { image: x, keep: keepT, tokenMask: maskT }, new Generator(1)),
    }));
    const reference = scope(() => {
      // encoder: position embedding on every token, then the kept rows, rotary rows built on the host
      const h0 = rowsByHand(add(embedded(net, x), parameter(net, "eva.pos_embed")), keep);
      const rope = ropeSinCosAt(grid, D / tiny.heads, keep);
      let h = h0;
      for (const block of net.eva.blocks.items) h = block.forward(h, rope);
      const enc = net.eva.child<LayerNorm>("norm").forward(h);
      // restore by hand: row n of sample b is its kept row or the mask token
      const token = reshape(parameter(decoder, "mask_token"), [1, 1, D]);
      const full = concat(
        keep.map((k, b) =>
          concat(
            Array.from({ length: N }, (_, n) =>
              k.includes(n) ? slice(enc, [b, k.indexOf(n), 0], [b + 1, k.indexOf(n) + 1, D]) : token),
            1,
          )
        ),
        0,
      );
      // decoder: own position embedding, its blocks with the full grid's rotary table, final norm
      let g = add(full, parameter(decoder, "pos_embed"));
      const table = ropeSinCos(grid, D / tiny.heads);
      for (const block of decoder.blocks) g = block.forward(g, table);
      g = decoder.child<LayerNorm>("norm").forward(g);
      const volume = reshape(permute(g, [0, 2, 1]), [2, D, ...grid]);
      return { enc, prediction: net.up_projection!.forward(volume) };
    });
    assertEquals(encoded.shape, [2, 3, D]);
    assertClose(await values(encoded), await values(reference.enc), {
      rtol: 1e-5,
      atol: 1e-6,
      label: "encoder",
    });
    assertEquals(out.prediction.shape, [2, 1, ...patch]);
    assertClose(await values(out.prediction), await values(reference.prediction), {
      rtol: 1e-5,
      atol: 1e-6,
      label: "reconstruction",
    });
    // the loss mask covers exactly the voxels of the dropped tokens (4³ each)
    const lossMask = await values(out.lossMask);
    for (let b = 0; b < 2; b++) {
      for (let i = 0; i < 8 * 8 * 12; i++) {
        const [d, h, w] = [Math.floor(i / 96), Math.floor(i / 12) % 8, i % 12];
        const t = (Math.floor(d / 4) * 2 + Math.floor(h / 4)) * 3 + Math.floor(w / 4);
        assertEquals(lossMask[b * 768 + i], keep[b].includes(t) ? 0 : 1, `sample ${b} voxel ${d},${h},${w}`);
      }
    }
    for (
      const t of [x, keepT, maskT, encoded, out.prediction, out.lossMask, reference.enc, reference.prediction]
    ) {
      t.dispose();
    }
    decoder.dispose();
    net.dispose();
  },
);

gpuTest(
  "MAE token-dropping loss = float64 MSE over the voxels of the dropped tokens (deface excluded on request)",
  async () => {
    const net = scope(() =>
      new Primus(
        tiny,
        { inChannels: 1, outChannels: 1, patchSize: patch, encoderOnly: false },
        new Generator(5),
      )
    ).eval();
    const image = Float32Array.from(randomArray(2 * 768, 6));
    const deface = Uint8Array.from({ length: 2 * 768 }, (_, i) => (i % 7 === 0 ? 1 : 0));
    const keep = [[2, 3, 9], [4, 5, 8]];
    const tokenMask = Uint8Array.from(keep.flatMap((k) => [...droppedTokens(N, k)]));
    for (const excludeDefaced of [false, true]) {
      const instance = scope(() => build(net, methodConfig({ excludeDefaced })));
      const decoder = (instance.modules.decoder as MaeVitDecoder).eval();
      const { loss, prediction } = scope(() => {
        const batch = uploadBatch(
          {
            arrays: {
              image: sampleArray(image, [2, 1, ...patch]),
              keep: sampleArray(Int32Array.from(keep.flat()), [2, 3]),
              tokenMask: sampleArray(tokenMask, [2, ...grid]),
              deface: sampleArray(deface, [2, 1, ...patch]),
            },
          },
          getGpu(),
          "mae",
        );
        const context = { step: 0, epoch: 0, training: false, rng: new Generator(2) };
        const { prediction } = tokenDroppingForward(net, decoder, {
          image: batch.get("image"),
          keep: batch.get("keep"),
          tokenMask: batch.get("tokenMask"),
        }, context.rng);
        return { loss: instance.loss(batch, context).loss, prediction };
      });
      const p = await values(prediction);
      let s = 0, count = 0;
      for (let b = 0; b < 2; b++) {
        for (let i = 0; i < 768; i++) {
          const [d, h, w] = [Math.floor(i / 96), Math.floor(i / 12) % 8, i % 12];
          const t = (Math.floor(d / 4) * 2 + Math.floor(h / 4)) * 3 + Math.floor(w / 4);
          if (keep[b].includes(t) || (excludeDefaced && deface[b * 768 + i])) continue;
          s += (p[b * 768 + i] - image[b * 768 + i]) ** 2;
          count++;
        }
      }
      const expected = s / count;
      const got = await loss.item();
      assert(
        Math.abs(got - expected) < 1e-5 * expected,
        `excludeDefaced ${excludeDefaced}: ${got} vs ${expected}`,
      );
      loss.dispose();
      prediction.dispose();
      decoder.dispose();
    }
    net.dispose();
  },
);

gpuTest(
  "mae builds a decoder of Primus blocks for token dropping, none for masked input, and refuses a mismatched token size",
  () => {
    const net = scope(() =>
      new Primus({ ...tiny, dropPathRate: 0.2 }, {
        inChannels: 1,
        outChannels: 1,
        patchSize: patch,
        encoderOnly: false,
      }, new Generator(7))
    );
    const instance = scope(() => build(net, methodConfig()));
    const decoder = instance.modules.decoder as MaeVitDecoder;
    const names = [...decoder.namedParameters()].map(([n]) => n);
    const blockNames = [...net.eva.blocks.items[0].namedParameters()].map(([n]) => n);
    assertEquals(names, [
      "mask_token",
      "pos_embed",
      ...[0, 1].flatMap((i) => blockNames.map((n) => `blocks.${i}.${n}`)),
      "norm.weight",
      "norm.bias",
    ]);
    assertEquals(parameter(decoder, "pos_embed").shape, [1, N, D]);
    assertEquals(
      decoder.blocks.map((b) => b.dropPathRate),
      [0, 0.2],
      "the encoder's rate, linear over 2 blocks",
    );
    assertEquals(decoderConfig(net, { depth: 3, heads: 1 }).heads, 1);
    assertThrows(() => decoderConfig(net, { depth: 2, heads: 3 }), RangeError, "divisible by 6");
    assertEquals(Object.keys(build(net, methodConfig({ vitVariant: "masked-input" })).modules), []);
    assertThrows(() => build(net, mae.config.parse({})), Error, "methodConfig.tokenSize");
    decoder.dispose();
    net.dispose();
  },
);

gpuTest(
  "the mask token starts near zero (normal, std 1e-6) and the decoder's position embedding at std 0.02",
  async () => {
    const net = scope(() =>
      new Primus({ ...tiny, embedDim: 96, heads: 4 }, {
        inChannels: 1,
        outChannels: 1,
        patchSize: [16, 16, 16],
        encoderOnly: false,
      }, new Generator(9))
    );
    const decoder = scope(() =>
      mae.build({
        network: net,
        config: methodConfig(),
        rng: new Generator(1),
        patchSize: [16, 16, 16],
        createNetwork: () => {
          throw new Error("not needed");
        },
      }).modules.decoder as MaeVitDecoder
    );
    const sd = (v: number[]) => Math.sqrt(v.reduce((s, x) => s + x * x, 0) / v.length);
    const token = sd(await values(parameter(decoder, "mask_token")));
    assert(token > 0.6e-6 && token < 1.4e-6, `mask token sd ${token}`);
    const pos = sd(await values(parameter(decoder, "pos_embed")));
    assert(pos > 0.018 && pos < 0.022, `pos_embed sd ${pos}`);
    decoder.dispose();
    net.dispose();
  },
);
