import { assert, assertEquals } from "../../assert.ts";
import { createGpu, type Gpu } from "../../../core/gpu/mod.ts";
import { Generator, scope, type Tensor } from "../../../core/tensor/mod.ts";
import { Module, packParameters } from "../../../core/nn/mod.ts";
import { Optimizer, type OptimizerConfig, OptimizerSchema } from "../../../core/optim/mod.ts";
import { referenceStep, type RefOptimizerState } from "../../../core/optim/reference.ts";
import { assertClose, gpuTest, randomArray } from "../../helpers.ts";

class ThreeTensors extends Module {
  constructor(rng: Generator) {
    super();
    this.registerParameter("weight", rng.uniform([3, 5], -1, 1));
    this.registerParameter("bias", rng.uniform([7], -1, 1));
    this.registerModule("inner", new Inner(rng));
  }
}
class Inner extends Module {
  constructor(rng: Generator) {
    super();
    this.registerParameter("scale", rng.uniform([2, 2, 3], -1, 1));
  }
}

async function runBoth(config: OptimizerConfig, maxGradNorm: number, steps = 5, gpu?: Gpu) {
  const model = scope(() => new ThreeTensors(new Generator(11, gpu)));
  // biases in group 1 without weight decay, the rest in group 0
  const groups = packParameters(model, {
    group: (name) => (name.endsWith("bias") ? 1 : 0),
    groupOptions: [{}, { weightDecay: 0 }],
  });
  const opt = new Optimizer(groups, config, { maxGradNorm });
  const named = [...model.namedParameters()];
  const params = await Promise.all(named.map(async ([, t]) => await t.toFloat64()));
  const state: RefOptimizerState = { step: 0, moments: [] };
  const wd = named.map(([name]) => (name.endsWith("bias") ? 0 : undefined));
  for (let s = 0; s < steps; s++) {
    const grads = named.map(([, t], i) => randomArray(t.size, 100 * s + i, -3, 3));
    grads.forEach((g, i) => named[i][1].grad!.write(Float32Array.from(g)));
    const lr = 0.1 * (1 - s / steps);
    opt.step(lr);
    referenceStep(config, params, grads.map((g) => Float64Array.from(Float32Array.from(g))), state, lr, {
      maxGradNorm,
      weightDecay: wd,
    });
  }
  for (let i = 0; i < named.length; i++) {
    assertClose(await named[i][1].toFloat64(), params[i], { rtol: 2e-5, atol: 2e-6, label: named[i][0] });
  }
  const status = await opt.readStatus();
  assertEquals(status.step, steps);
  opt.dispose();
  model.dispose();
}

gpuTest("SGD with Nesterov momentum and weight decay matches torch.optim.SGD over 5 steps", async () => {
  await runBoth(
    OptimizerSchema.parse({ name: "sgd", lr: 0.1, momentum: 0.99, nesterov: true, weightDecay: 3e-2 }),
    0,
  );
});

gpuTest("SGD without Nesterov, with gradient clipping, matches the reference", async () => {
  await runBoth(
    OptimizerSchema.parse({ name: "sgd", lr: 0.1, momentum: 0.9, nesterov: false, weightDecay: 1e-3 }),
    2,
  );
});

gpuTest("AdamW with bias correction and decoupled decay matches torch.optim.AdamW over 5 steps", async () => {
  await runBoth(OptimizerSchema.parse({ name: "adamw", lr: 3e-4, betas: [0.9, 0.98], weightDecay: 5e-2 }), 1);
});

gpuTest("a non-finite gradient skips the step and backs off the loss scale", async () => {
  const model = scope(() => new ThreeTensors(new Generator(3)));
  const groups = packParameters(model);
  const opt = new Optimizer(groups, { name: "sgd", lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0 }, {
    lossScale: { enabled: true, initScale: 1024, growthInterval: 2 },
  });
  const named = [...model.namedParameters()];
  const before = await named[0][1].toFloat64();
  const bad = new Float32Array(named[0][1].size).fill(1);
  bad[4] = Infinity;
  named[0][1].grad!.write(bad);
  opt.step(0.1);
  let status = await opt.readStatus();
  assertEquals(status.lastSkipped, true);
  assertEquals(status.skipped, 1);
  assertEquals(status.step, 0);
  assertEquals(status.lossScale, 512);
  assertClose(await named[0][1].toFloat64(), before, { rtol: 0, atol: 0, label: "unchanged" });
  // two good steps grow the scale back (growth interval 2)
  for (let i = 0; i < 2; i++) {
    opt.zeroGrad();
    named[0][1].grad!.write(new Float32Array(named[0][1].size).fill(512));
    opt.step(0.1);
  }
  status = await opt.readStatus();
  assertEquals(status.step, 2);
  assertEquals(status.lossScale, 1024);
  assert(Math.abs(status.gradNorm - Math.sqrt(15)) < 1e-3, `unscaled norm ${status.gradNorm}`);
  const seed: Tensor = opt.lossScaleSeed();
  assertEquals(await seed.item(), 1024);
  seed.dispose();
  opt.dispose();
  model.dispose();
});

gpuTest("optimizer state exports and imports exactly", async () => {
  const model = scope(() => new ThreeTensors(new Generator(5)));
  const groups = packParameters(model);
  const config = OptimizerSchema.parse({ name: "adamw", lr: 1e-3 });
  const opt = new Optimizer(groups, config);
  for (const [, t] of model.namedParameters()) t.grad!.write(randomArray(t.size, t.size));
  opt.step(1e-3);
  const saved = await opt.exportState();
  const other = new Optimizer(groups, config);
  other.importState(saved);
  const again = await other.exportState();
  assertEquals(again.stepState, saved.stepState);
  assertEquals(again.groups.map((g) => g.map((m) => [...m])), saved.groups.map((g) => g.map((m) => [...m])));
  opt.dispose();
  other.dispose();
  model.dispose();
});

Deno.test({
  name: "optimizer steps arenas larger than one binding chunk by chunk",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const gpu = await createGpu({ maxStorageBindingBytes: 512 }); // 128 floats: 3 chunks per arena
    try {
      await runBoth(OptimizerSchema.parse({ name: "adamw", lr: 1e-3, weightDecay: 0.01 }), 1.5, 3, gpu);
    } finally {
      gpu.destroy();
    }
  },
});
