/**
 * Primus's contract hooks: the encoder-only build, mask-token substitution before the position embedding
 * (SimMIM), token dropping with per-sample keep indices (MAE for Primus: the position embedding and the
 * rotary table gathered with the same indices), and decoding a token sequence.
 */
import { assert, assertEquals, assertThrows } from "../../assert.ts";
import primus, { countPrimusParameters, Primus } from "../../../plugins/arch/primus/mod.ts";
import { Generator, permute, reshape, scope, slice, type Tensor, tensor } from "../../../mod.ts";
import { assertClose, gpuTest, randomArray } from "../../helpers.ts";

const tiny = primus.config.parse({ ...primus.sizes!.tiny, patchEmbedSize: 4 });
const patch: [number, number, number] = [8, 8, 12]; // a 2×2×3 token grid: 12 tokens
const shape = (encoderOnly: boolean) => ({ inChannels: 1, outChannels: 2, patchSize: patch, encoderOnly });
const N = 12, D = tiny.embedDim;

async function values(t: Tensor): Promise<number[]> {
  return [...await t.toArray()];
}

gpuTest(
  "an encoder-only Primus has no up_projection and exactly the full network's other parameters",
  () => {
    const full = scope(() => new Primus(tiny, shape(false), new Generator(1)));
    const enc = scope(() => new Primus(tiny, shape(true), new Generator(1)));
    const kept = [...full.namedParameters()].filter(([n]) => !n.startsWith("up_projection.")).map(([n]) => n);
    assertEquals([...enc.namedParameters()].map(([n]) => n), kept);
    assertEquals(enc.parameterCount(), countPrimusParameters(tiny, 1, 2, patch, true));
    assertEquals(enc.featureChannels, [D]);
    const x = tensor(randomArray(8 * 8 * 12, 1), [1, 1, ...patch]);
    assertThrows(() => enc.forward(x), Error, "encoder-only");
    x.dispose();
    full.dispose();
    enc.dispose();
  },
);

gpuTest("maskToken replaces exactly the masked tokens before the position embedding", async () => {
  const net = scope(() => new Primus(tiny, shape(false), new Generator(2))).eval();
  const x = tensor(randomArray(2 * 8 * 8 * 12, 3), [2, 1, ...patch]);
  const plain = scope(() => net.forward(x));
  // the patch embedding of sample 0, token 5: substituting it for itself must change nothing
  const own = scope(() => {
    const e = net.down_projection.forward(slice(x, [0, 0, 0, 0, 0], [1, 1, ...patch])); // [1, D, 2, 2, 3]
    return reshape(slice(permute(reshape(e, [1, D, N]), [0, 2, 1]), [0, 5, 0], [1, 6, D]), [D]);
  });
  const mask = new Float32Array(2 * N);
  mask[5] = 1;
  const same = scope(() => net.forward(x, { maskToken: { mask: tensor(mask, [2, N]), token: own } }));
  assertEquals(await values(same), await values(plain));
  // another token at that place changes sample 0 and leaves sample 1 alone
  const other = scope(() =>
    net.forward(x, { maskToken: { mask: tensor(mask, [2, N]), token: tensor(randomArray(D, 9), [D]) } })
  );
  const a = await values(other), b = await values(plain), half = a.length / 2;
  assert(a.slice(0, half).some((v, i) => v !== b[i]), "sample 0 changed");
  assertEquals(a.slice(half), b.slice(half), "sample 1 unchanged");
  // u8 masks are accepted as they arrive from the loader
  const u8 = scope(() =>
    net.forward(x, {
      maskToken: { mask: tensor(Uint8Array.from(mask), [2, N], { dtype: "u8" }), token: own },
    })
  );
  assertEquals(await values(u8), b);
  for (const t of [x, plain, own, same, other, u8]) t.dispose();
  net.dispose();
});

gpuTest(
  "encodeTokens with keep indices: all tokens in order = no dropping; a permutation permutes the rows (RoPE follows the tokens)",
  async () => {
    const net = scope(() => new Primus(tiny, shape(false), new Generator(3))).eval();
    const x = tensor(randomArray(2 * 8 * 8 * 12, 4), [2, 1, ...patch]);
    const all = scope(() => net.tokens.encodeTokens(x)); // [2, 12, D]
    assertEquals(all.shape, [2, N, D]);
    const identity = Int32Array.from({ length: 2 * N }, (_, i) => i % N);
    const kept = scope(() =>
      net.tokens.encodeTokens(x, { keep: tensor(identity, [2, N], { dtype: "i32" }) })
    );
    assertEquals(await values(kept), await values(all));
    // per-sample permutations: attention is equivariant once the rotary rows move with their tokens
    const perms = [[3, 0, 11, 7, 1, 9, 2, 10, 4, 8, 6, 5], [11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]];
    const permuted = scope(() =>
      net.tokens.encodeTokens(x, { keep: tensor(Int32Array.from(perms.flat()), [2, N], { dtype: "i32" }) })
    );
    const full = await values(all), got = await values(permuted);
    const expected: number[] = [];
    perms.forEach((p, b) =>
      p.forEach((j) => expected.push(...full.slice((b * N + j) * D, (b * N + j + 1) * D)))
    );
    assertClose(got, expected, { rtol: 2e-5, atol: 2e-6, label: "permuted tokens" });
    // dropping: 4 kept tokens per sample give [2, 4, D], and differ from the full sequence's rows
    const subset = [[1, 4, 7, 10], [0, 2, 3, 11]];
    const dropped = scope(() =>
      net.tokens.encodeTokens(x, { keep: tensor(Int32Array.from(subset.flat()), [2, 4], { dtype: "i32" }) })
    );
    assertEquals(dropped.shape, [2, 4, D]);
    const d = await values(dropped);
    assert(
      d.slice(0, D).some((v, i) => Math.abs(v - full[1 * D + i]) > 1e-4),
      "attention saw only the kept tokens",
    );
    for (const t of [x, all, kept, permuted, dropped]) t.dispose();
    net.dispose();
  },
);

gpuTest(
  "decodeTokens of the full token sequence, and decode of the token grid, equal forward()",
  async () => {
    const net = scope(() => new Primus(tiny, shape(false), new Generator(4))).eval();
    const x = tensor(randomArray(8 * 8 * 12, 5), [1, 1, ...patch]);
    const direct = scope(() => net.forward(x));
    const viaTokens = scope(() =>
      net.tokens.decodeTokens(net.tokens.encodeTokens(x), net.tokens.grid(patch))
    );
    assertEquals(viaTokens.shape, [1, 2, ...patch]);
    assertEquals(await values(viaTokens), await values(direct));
    const viaGrid = scope(() => net.decode(net.encode(x)));
    assertEquals(await values(viaGrid), await values(direct));
    for (const t of [x, direct, viaTokens, viaGrid]) t.dispose();
    net.dispose();
  },
);
