/**
 * ResEnc's contract hooks: the encoder-only build, per-stage features, and layer hooks that see every
 * encoder convolution, pooling and norm with what is needed to reproduce the norm (SparK's sparse
 * encoder is built on these).
 */
import { assert, assertEquals, assertThrows } from "../../assert.ts";
import resenc, { countResEncParameters, ResEncUNet } from "../../../plugins/arch/resenc/mod.ts";
import { Generator, instanceNormAct, type LayerSite, scope, type Tensor, tensor } from "../../../mod.ts";
import { gpuTest, randomArray } from "../../helpers.ts";

const tiny = resenc.config.parse({ features: [4, 8, 8], blocksPerStage: [1, 2, 1], strides: [1, 2, 2] });
const shape = (encoderOnly: boolean) => ({
  inChannels: 1,
  outChannels: 3,
  patchSize: [8, 8, 8] as [number, number, number],
  encoderOnly,
});

gpuTest(
  "an encoder-only ResEnc holds exactly the full network's encoder.* parameters and has no forward()",
  () => {
    const full = scope(() => new ResEncUNet(tiny, shape(false), new Generator(1)));
    const enc = scope(() => new ResEncUNet(tiny, shape(true), new Generator(1)));
    const encoderNames = [...full.namedParameters()].filter(([n]) => n.startsWith("encoder.")).map(([n, t]) =>
      `${n}:${t.shape}`
    );
    assertEquals([...enc.namedParameters()].map(([n, t]) => `${n}:${t.shape}`), encoderNames);
    assertEquals(enc.parameterCount(), countResEncParameters(tiny, 1, 3, true));
    assertEquals(resenc.countParameters!(tiny, shape(true)), enc.parameterCount());
    assertEquals(enc.featureChannels, [4, 8, 8]);
    const x = tensor(randomArray(512, 2), [1, 1, 8, 8, 8]);
    assertThrows(() => enc.forward(x), Error, "encoder-only");
    const features = scope(() => enc.encode(x));
    assertEquals(features.map((f) => f.shape), [[1, 4, 8, 8, 8], [1, 8, 4, 4, 4], [1, 8, 2, 2, 2]]);
    for (const t of [x, ...features]) t.dispose();
    full.dispose();
    enc.dispose();
  },
);

gpuTest(
  "layer hooks see every encoder conv, pooling and norm; a norm hook can reproduce the network's norm exactly",
  async () => {
    const net = scope(() => new ResEncUNet(tiny, shape(false), new Generator(2)));
    const x = tensor(randomArray(512, 3), [1, 1, 8, 8, 8]);
    const plain = scope(() => net.encode(x));
    const seen: Record<string, LayerSite[]> = { conv: [], pool: [], norm: [] };
    const hooked = scope(() =>
      net.encode(x, {
        layerHooks: {
          conv: (y, site) => (seen.conv.push(site), y),
          pool: (y, site) => (seen.pool.push(site), y),
          norm: (input: Tensor, call, site) => {
            seen.norm.push(site);
            assert(call.weight && call.bias && call.eps === 1e-5, site.name);
            // the call carries everything the fused norm + residual + LeakyReLU needs
            return call.slope === undefined ? undefined : instanceNormAct(input, call.weight!, call.bias!, {
              eps: call.eps,
              slope: call.slope,
              residual: call.residual,
            });
          },
        },
      })
    );
    for (let i = 0; i < plain.length; i++) {
      assertEquals([...await hooked[i].toArray()], [...await plain[i].toArray()]);
    }
    // the sites, counted independently from the module tree
    const modules = [...net.namedModules()].map(([n]) => n).filter((n) => n.startsWith("encoder."));
    const convs = modules.filter((n) => /\.conv$/.test(n)).sort();
    const norms = modules.filter((n) => /\.norm$/.test(n)).sort();
    assertEquals(seen.conv.map((s) => s.name).sort(), convs);
    assertEquals(seen.norm.map((s) => s.name).sort(), norms);
    assertEquals(seen.pool.map((s) => s.name), [
      "encoder.stages.1.blocks.0.skip.0",
      "encoder.stages.2.blocks.0.skip.0",
    ]);
    assertEquals(seen.pool.map((s) => s.stage), [1, 2]);
    assertEquals(new Set(seen.conv.map((s) => s.stage)), new Set([0, 1, 2]));
    // a conv hook's result is what the network continues with
    const zeroStem = {
      conv: (y: Tensor, site: LayerSite) =>
        site.name === "encoder.stem.convs.0.conv" ? tensor(new Float32Array(y.size), [...y.shape]) : y,
    };
    const zeroed = scope(() => net.encode(x, { layerHooks: zeroStem }));
    const before = await plain[0].toArray(), after = await zeroed[0].toArray();
    assert(after.some((v, i) => v !== before[i]), "the network continued with the hook's tensor");
    for (const t of [x, ...plain, ...hooked, ...zeroed]) t.dispose();
    net.dispose();
  },
);

gpuTest(
  "decode(encode(x)) is forward(x); decode takes changed features (SparK's densified stages)",
  async () => {
    const net = scope(() => new ResEncUNet(tiny, shape(false), new Generator(5)));
    const x = tensor(randomArray(512, 6), [1, 1, 8, 8, 8]);
    const direct = scope(() => net.forward(x));
    const features = scope(() => net.encode(x));
    const decoded = scope(() => net.decode(features));
    assertEquals([...await decoded.toArray()], [...await direct.toArray()]);
    // the decoder uses what it is given: zeroing the deepest stage changes the output
    const zeroDeep = scope(() =>
      net.decode([
        features[0],
        features[1],
        tensor(new Float32Array(features[2].size), [...features[2].shape]),
      ])
    );
    const a = await zeroDeep.toArray(), b = await direct.toArray();
    assert(a.some((v, i) => v !== b[i]), "the changed feature reached the output");
    assertThrows(() => net.decode(features.slice(0, 2)), RangeError, "needs 3 stage outputs");
    for (const t of [x, direct, ...features, decoded, zeroDeep]) t.dispose();
    net.dispose();
  },
);
