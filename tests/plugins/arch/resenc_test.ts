import { assert, assertEquals, assertThrows } from "../../assert.ts";
import resenc, { countResEncParameters, ResEncUNet } from "../../../plugins/arch/resenc/mod.ts";
import {
  add,
  backward,
  conv3d,
  Generator,
  instanceNorm,
  leakyRelu,
  loadReferenceStateDict,
  mean,
  type Module,
  referenceStateDict,
  scope,
  type Tensor,
  tensor,
  validatePlugin,
  VERSION,
} from "../../../mod.ts";
import { assertClose, gpuTest, randomArray } from "../../helpers.ts";

const example = resenc.config.parse({ features: [8, 16, 32], blocksPerStage: [1, 2, 2], strides: [1, 2, 2] });

// The 66 parameters of the reference's state dict for this configuration (refdocs, from PyTorch).
const REFERENCE_NAMES = `
encoder.stem.convs.0.conv.weight 8,1,3,3,3|encoder.stem.convs.0.conv.bias 8|encoder.stem.convs.0.norm.weight 8|encoder.stem.convs.0.norm.bias 8
encoder.stages.0.blocks.0.conv1.conv.weight 8,8,3,3,3|encoder.stages.0.blocks.0.conv1.conv.bias 8|encoder.stages.0.blocks.0.conv1.norm.weight 8|encoder.stages.0.blocks.0.conv1.norm.bias 8
encoder.stages.0.blocks.0.conv2.conv.weight 8,8,3,3,3|encoder.stages.0.blocks.0.conv2.conv.bias 8|encoder.stages.0.blocks.0.conv2.norm.weight 8|encoder.stages.0.blocks.0.conv2.norm.bias 8
encoder.stages.1.blocks.0.conv1.conv.weight 16,8,3,3,3|encoder.stages.1.blocks.0.conv1.conv.bias 16|encoder.stages.1.blocks.0.conv1.norm.weight 16|encoder.stages.1.blocks.0.conv1.norm.bias 16
encoder.stages.1.blocks.0.conv2.conv.weight 16,16,3,3,3|encoder.stages.1.blocks.0.conv2.conv.bias 16|encoder.stages.1.blocks.0.conv2.norm.weight 16|encoder.stages.1.blocks.0.conv2.norm.bias 16
encoder.stages.1.blocks.0.skip.1.conv.weight 16,8,1,1,1|encoder.stages.1.blocks.0.skip.1.norm.weight 16|encoder.stages.1.blocks.0.skip.1.norm.bias 16
encoder.stages.1.blocks.1.conv1.conv.weight 16,16,3,3,3|encoder.stages.1.blocks.1.conv1.conv.bias 16|encoder.stages.1.blocks.1.conv1.norm.weight 16|encoder.stages.1.blocks.1.conv1.norm.bias 16
encoder.stages.1.blocks.1.conv2.conv.weight 16,16,3,3,3|encoder.stages.1.blocks.1.conv2.conv.bias 16|encoder.stages.1.blocks.1.conv2.norm.weight 16|encoder.stages.1.blocks.1.conv2.norm.bias 16
encoder.stages.2.blocks.0.conv1.conv.weight 32,16,3,3,3|encoder.stages.2.blocks.0.conv1.conv.bias 32|encoder.stages.2.blocks.0.conv1.norm.weight 32|encoder.stages.2.blocks.0.conv1.norm.bias 32
encoder.stages.2.blocks.0.conv2.conv.weight 32,32,3,3,3|encoder.stages.2.blocks.0.conv2.conv.bias 32|encoder.stages.2.blocks.0.conv2.norm.weight 32|encoder.stages.2.blocks.0.conv2.norm.bias 32
encoder.stages.2.blocks.0.skip.1.conv.weight 32,16,1,1,1|encoder.stages.2.blocks.0.skip.1.norm.weight 32|encoder.stages.2.blocks.0.skip.1.norm.bias 32
encoder.stages.2.blocks.1.conv1.conv.weight 32,32,3,3,3|encoder.stages.2.blocks.1.conv1.conv.bias 32|encoder.stages.2.blocks.1.conv1.norm.weight 32|encoder.stages.2.blocks.1.conv1.norm.bias 32
encoder.stages.2.blocks.1.conv2.conv.weight 32,32,3,3,3|encoder.stages.2.blocks.1.conv2.conv.bias 32|encoder.stages.2.blocks.1.conv2.norm.weight 32|encoder.stages.2.blocks.1.conv2.norm.bias 32
decoder.stages.0.convs.0.conv.weight 16,32,3,3,3|decoder.stages.0.convs.0.conv.bias 16|decoder.stages.0.convs.0.norm.weight 16|decoder.stages.0.convs.0.norm.bias 16
decoder.stages.1.convs.0.conv.weight 8,16,3,3,3|decoder.stages.1.convs.0.conv.bias 8|decoder.stages.1.convs.0.norm.weight 8|decoder.stages.1.convs.0.norm.bias 8
decoder.transpconvs.0.weight 32,16,2,2,2|decoder.transpconvs.0.bias 16|decoder.transpconvs.1.weight 16,8,2,2,2|decoder.transpconvs.1.bias 8
decoder.seg_layers.0.weight 1,16,1,1,1|decoder.seg_layers.0.bias 1|decoder.seg_layers.1.weight 1,8,1,1,1|decoder.seg_layers.1.bias 1`
  .trim().split(/[|\n]/).map((s) => s.trim());

Deno.test("resenc is a valid plugin; countResEncParameters gives ResEnc-L's 102,348,965 parameters like the reference", () => {
  validatePlugin(resenc, VERSION, "plugins/arch/resenc");
  const l = resenc.config.parse(resenc.sizes!.l);
  assertEquals(countResEncParameters(l, 1, 1), 102_348_965);
  assertEquals(
    countResEncParameters(l, 4, 1) - countResEncParameters(l, 1, 1),
    864 * 3,
    "stem grows by 864 per input channel",
  );
});

gpuTest(
  "ResEncUNet has the reference's parameter names and shapes, and its count matches the formula",
  () => {
    const net = scope(() =>
      new ResEncUNet(
        example,
        { inChannels: 1, outChannels: 1, patchSize: [16, 16, 16], encoderOnly: false },
        new Generator(0),
      )
    );
    const names = [...net.namedParameters()].map(([n, t]) => `${n} ${t.shape.join(",")}`);
    assertEquals(names.sort(), [...REFERENCE_NAMES].sort());
    assertEquals(net.parameterCount(), countResEncParameters(example, 1, 1));
    const withAliases = names.flatMap((n) => [n.split(" ")[0], ...net.referenceAliases(n.split(" ")[0])]);
    assertEquals(withAliases.length, 224, "the reference state dict has 224 keys with aliases");
    assert(withAliases.includes("decoder.encoder.stages.1.blocks.0.skip.1.all_modules.0.weight"));
    net.dispose();
  },
);

// The encoder's share is counted on the model itself (its parameter listing), not derived from the total:
// building ResEnc-L takes about 3 s and 0.4 GB of parameter buffers on lavapipe.
gpuTest(
  "ResEnc-L built as a module has the reference's 102,348,965 parameters, 90,296,576 of them under encoder.*",
  async (gpu) => {
    const l = resenc.config.parse(resenc.sizes!.l);
    const net = scope(() =>
      new ResEncUNet(
        l,
        { inChannels: 1, outChannels: 1, patchSize: [32, 32, 32], encoderOnly: false },
        new Generator(0),
      )
    );
    try {
      let total = 0, encoder = 0, decoder = 0;
      for (const [name, t] of net.namedParameters()) {
        total += t.size;
        if (name.startsWith("encoder.")) encoder += t.size;
        else if (name.startsWith("decoder.")) decoder += t.size;
      }
      assertEquals(encoder, 90_296_576, "encoder.* parameters");
      assertEquals(total, 102_348_965, "all parameters");
      assertEquals(encoder + decoder, total, "every parameter is under encoder.* or decoder.*");
    } finally {
      net.dispose();
      await gpu.sync();
      gpu.pool.trim(); // give the 0.4 GB back instead of caching it for the next tests
    }
  },
);

gpuTest(
  "ResEncUNet maps [N,1,D,H,W] to [N,1,D,H,W] and refuses patches not divisible by its stride",
  async () => {
    const tiny = resenc.config.parse(resenc.sizes!.tiny);
    const net = scope(() =>
      new ResEncUNet(
        tiny,
        { inChannels: 1, outChannels: 1, patchSize: [8, 8, 12], encoderOnly: false },
        new Generator(1),
      )
    );
    const y = scope(() => net.forward(tensor(randomArray(2 * 8 * 8 * 12, 5), [2, 1, 8, 8, 12])));
    assertEquals([...y.shape], [2, 1, 8, 8, 12]);
    assert((await y.toFloat64()).every(Number.isFinite));
    y.dispose();
    net.dispose();
    assertThrows(
      () =>
        scope(() =>
          new ResEncUNet(
            tiny,
            { inChannels: 1, outChannels: 1, patchSize: [8, 8, 10], encoderOnly: false },
            new Generator(1),
          )
        ),
      RangeError,
      "divisible",
    );
  },
);

gpuTest("a residual block's fused forward and gradients equal the unfused composition", async () => {
  // torch-default init so that conv2's norm is not zeroed and the branch matters
  const config = resenc.config.parse({
    features: [4, 6],
    blocksPerStage: [1, 1],
    strides: [1, 2],
    init: "torch-default",
  });
  const net = scope(() =>
    new ResEncUNet(
      config,
      { inChannels: 1, outChannels: 1, patchSize: [6, 6, 6], encoderOnly: false },
      new Generator(2),
    )
  );
  const block = [...net.namedModules()].find(([n]) => n === "encoder.stages.1.blocks.0")![1] as Module & {
    forward(x: Tensor): Tensor;
  };
  const p = new Map(block.namedParameters());
  const x = tensor(randomArray(2 * 4 * 6 * 6 * 6, 3), [2, 4, 6, 6, 6], { requiresGrad: true });
  const run = (fused: boolean) =>
    scope(() => {
      for (const t of [x, ...p.values()]) t.grad = undefined;
      let y: Tensor;
      if (fused) y = block.forward(x);
      else {
        const c1 = leakyRelu(
          instanceNorm(
            conv3d(x, p.get("conv1.conv.weight")!, { bias: p.get("conv1.conv.bias"), stride: 2, padding: 1 }),
            p.get("conv1.norm.weight"),
            p.get("conv1.norm.bias"),
          ),
        );
        const c2 = instanceNorm(
          conv3d(c1, p.get("conv2.conv.weight")!, { bias: p.get("conv2.conv.bias"), padding: 1 }),
          p.get("conv2.norm.weight"),
          p.get("conv2.norm.bias"),
        );
        const pooled = scope(() => {
          // AvgPool(2) as a strided mean: reshape is not enough for odd layouts, so compose with conv3d
          const w = tensor(
            new Float32Array(4 * 4 * 8).map((_, i) => (Math.floor(i / 32) === (i % 32 >> 3) ? 1 / 8 : 0)),
            [4, 4, 2, 2, 2],
          );
          return conv3d(x, w, { stride: 2 });
        });
        const skip = instanceNorm(
          conv3d(pooled, p.get("skip.1.conv.weight")!),
          p.get("skip.1.norm.weight"),
          p.get("skip.1.norm.bias"),
        );
        y = leakyRelu(add(c2, skip));
      }
      backward(mean(y));
      return {
        y,
        grads: [x, ...p.values()].map((t) => {
          const g = t.grad!;
          t.grad = undefined;
          return g;
        }),
      };
    });
  const a = run(true);
  const b = run(false);
  assertClose(await a.y.toFloat64(), await b.y.toFloat64(), { rtol: 1e-4, atol: 1e-5, label: "forward" });
  for (let i = a.grads.length - 1; i >= 0; i--) {
    assertClose(await a.grads[i].toFloat64(), await b.grads[i].toFloat64(), {
      rtol: 1e-3,
      atol: 1e-6,
      label: `grad ${i} ${i === 0 ? "x" : [...p.keys()][i - 1]}`,
    });
  }
  for (const t of [a.y, b.y, ...a.grads, ...b.grads, x]) t.dispose();
  net.dispose();
});

gpuTest("the reference-form state dict has the PyTorch class's 224 keys and loads back", async () => {
  const a = scope(() =>
    new ResEncUNet(
      example,
      { inChannels: 1, outChannels: 1, patchSize: [16, 16, 16], encoderOnly: false },
      new Generator(3),
    )
  );
  const b = scope(() =>
    new ResEncUNet(
      example,
      { inChannels: 1, outChannels: 1, patchSize: [16, 16, 16], encoderOnly: false },
      new Generator(4),
    )
  );
  const exported = await referenceStateDict(a);
  assertEquals(Object.keys(exported).length, 224);
  const report = loadReferenceStateDict(b, exported);
  assertEquals(report.loaded.length, 66);
  const [wa, wb] = [a, b].map((n) =>
    [...n.namedParameters()].find(([k]) => k === "decoder.seg_layers.1.weight")![1]
  );
  assertEquals([...await wb.toArray()], [...await wa.toArray()]);
  a.dispose();
  b.dispose();
});
