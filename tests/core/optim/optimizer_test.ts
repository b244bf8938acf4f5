import { assert, assertEquals } from "../../assert.ts";
import { createGpu, type Gpu } from "../../../core/gpu/mod.ts";
import { Generator, scope, type Tensor } from "../../../core/tensor/mod.ts";
import { Module, packParameters } from "../../../core/nn/mod.ts";
import { Optimizer, type OptimizerConfig, OptimizerSchema } from "../../../core/optim/mod.ts";
import { referenceStep, type RefOptimizerState } from "../../../core/optim/reference.ts";
import { assertClose, gpuTest, randomArray } from "../../helpers.ts";
import torchFixture from "../../fixtures/optim.json" with { type: "json" };

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

gpuTest(
  "SGD with Nesterov momentum and weight decay matches the project's float64 reference over 5 steps",
  async () => {
    await runBoth(
      OptimizerSchema.parse({ name: "sgd", lr: 0.1, momentum: 0.99, nesterov: true, weightDecay: 3e-2 }),
      0,
    );
  },
);

gpuTest("SGD without Nesterov, with gradient clipping, matches the project's float64 reference", async () => {
  await runBoth(
    OptimizerSchema.parse({ name: "sgd", lr: 0.1, momentum: 0.9, nesterov: false, weightDecay: 1e-3 }),
    2,
  );
});

gpuTest(
  "AdamW with bias correction, decoupled decay and clipping matches the project's float64 reference over 5 steps",
  async () => {
    await runBoth(
      OptimizerSchema.parse({ name: "adamw", lr: 3e-4, betas: [0.9, 0.98], weightDecay: 5e-2 }),
      1,
    );
  },
);

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

// PyTorch's own values (tests/fixtures/optim.json, written by scripts/fixtures/optim_fixtures.py with torch
// 1.13): the same three parameters, stored gradients per step, a learning rate per step, biases in a group
// without weight decay, and torch.nn.utils.clip_grad_norm_ where a case clips. Both sides compute in f32;
// on lavapipe they differ by at most 1e-6 relative (a few f32 roundings); the tolerance (1e-5 relative,
// 1e-6 absolute) leaves room for other GPUs' sqrt and division, and a wrong formula (Nesterov flipped, decay
// on the bias group, eps inside the square root, a missed unscale) is off by far more.

type TorchCase = (typeof torchFixture.cases)[number];
type ParamName = keyof typeof torchFixture.shapes;

const numbers = (text: string) => Float64Array.from(text.split(" "), Number);

/** The voxssl config of a fixture case, field by field. */
function configOf(c: TorchCase): OptimizerConfig {
  return c.optimizer === "sgd"
    ? OptimizerSchema.parse({
      name: "sgd",
      lr: c.lr,
      momentum: c.momentum,
      nesterov: c.nesterov,
      weightDecay: c.weight_decay,
    })
    : OptimizerSchema.parse({
      name: "adamw",
      lr: c.lr,
      betas: c.betas,
      eps: c.eps,
      weightDecay: c.weight_decay,
    });
}

function torchCase(name: string): TorchCase {
  const c = torchFixture.cases.find((c) => c.name === name);
  if (!c) throw new Error(`tests/fixtures/optim.json has no case "${name}"`);
  return c;
}

/**
 * Runs voxssl's GPU optimizer through a fixture case and compares the parameters after each recorded
 * step and the gradient norm of every step with PyTorch's. With `lossScale`, the gradients are written
 * multiplied by it (a power of two: exact in f32) and the optimizer unscales them, as GradScaler would.
 */
async function checkAgainstTorch(c: TorchCase, lossScale?: number): Promise<void> {
  const model = scope(() => new ThreeTensors(new Generator(11)));
  const groups = packParameters(model, {
    group: (name) => (name.endsWith("bias") ? 1 : 0),
    groupOptions: [{}, { weightDecay: 0 }],
  });
  const named = [...model.namedParameters()] as [ParamName, Tensor][];
  assertEquals(
    named.map(([n, t]) => `${n} [${t.shape}]`),
    Object.entries(torchFixture.shapes).map(([n, shape]) => `${n} [${shape}]`),
  );
  for (const [name, t] of named) t.write(Float32Array.from(numbers(torchFixture.initial[name])));
  const opt = new Optimizer(groups, configOf(c), {
    maxGradNorm: c.max_grad_norm,
    lossScale: lossScale ? { enabled: true, initScale: lossScale } : undefined,
  });
  try {
    for (let s = 0; s < c.lrs.length; s++) {
      for (const [name, t] of named) {
        t.grad!.write(Float32Array.from(numbers(torchFixture.grads[s][name]), (g) => g * (lossScale ?? 1)));
      }
      opt.step(c.lrs[s]);
      const status = await opt.readStatus();
      assertEquals([status.step, status.skipped, status.lossScale], [s + 1, 0, lossScale ?? 1]);
      assertClose([status.gradNorm], [c.grad_norms[s]], {
        rtol: 1e-6,
        atol: 0,
        label: `step ${s + 1}: norm`,
      });
      const expected = (c.params_after_step as Record<string, Record<ParamName, string>>)[String(s + 1)];
      if (!expected) continue;
      for (const [name, t] of named) {
        assertClose(await t.toFloat64(), numbers(expected[name]), {
          rtol: 1e-5,
          atol: 1e-6,
          label: `${c.name}, after step ${s + 1}: ${name}`,
        });
      }
    }
  } finally {
    opt.dispose();
    model.dispose();
  }
}

gpuTest("SGD with Nesterov momentum 0.99 and weight decay matches torch.optim.SGD over 5 steps", async () => {
  await checkAgainstTorch(torchCase("sgd nesterov"));
});

gpuTest(
  "SGD with momentum 0.9 (no Nesterov) and clip_grad_norm_ matches torch.optim.SGD over 5 steps",
  async () => {
    await checkAgainstTorch(torchCase("sgd momentum, clipped"));
  },
);

gpuTest(
  "AdamW with betas, weight decay and bias correction matches torch.optim.AdamW over 5 steps",
  async () => {
    await checkAgainstTorch(torchCase("adamw"));
  },
);

gpuTest("AdamW with a large eps and clip_grad_norm_ matches torch.optim.AdamW over 5 steps", async () => {
  await checkAgainstTorch(torchCase("adamw large eps, clipped"));
});

gpuTest(
  "AdamW under loss scale 1024 on scaled gradients matches torch.optim.AdamW with clip_grad_norm_ on unscaled ones",
  async () => {
    await checkAgainstTorch(torchCase("adamw large eps, clipped"), 1024);
  },
);

Deno.test("the project's float64 reference (core/optim/reference.ts) matches every torch.optim fixture case", () => {
  const names = Object.keys(torchFixture.shapes) as ParamName[];
  for (const c of torchFixture.cases) {
    const params = names.map((n) => numbers(torchFixture.initial[n]));
    const state: RefOptimizerState = { step: 0, moments: [] };
    const weightDecay = names.map((n) => (n.endsWith("bias") ? 0 : undefined));
    c.lrs.forEach((lr, s) => {
      const grads = names.map((n) => numbers(torchFixture.grads[s][n]));
      referenceStep(configOf(c), params, grads, state, lr, { maxGradNorm: c.max_grad_norm, weightDecay });
      const expected = (c.params_after_step as Record<string, Record<ParamName, string>>)[String(s + 1)];
      if (!expected) return;
      names.forEach((n, i) => {
        assertClose(params[i], numbers(expected[n]), {
          rtol: 1e-5,
          atol: 1e-6,
          label: `${c.name}, after step ${s + 1}: ${n}`,
        });
      });
    });
  }
});
