import { assert, assertEquals, assertThrows } from "../../assert.ts";
import {
  decodeSafetensors,
  encodeSafetensors,
  fanIn,
  kaimingNormal,
  Linear,
  loadSafetensors,
  loadStateDict,
  Module,
  saveSafetensors,
  truncNormal,
} from "../../../core/nn/mod.ts";
import { Generator, keep, scope, tensor } from "../../../core/tensor/mod.ts";
import { matmulRef } from "../../../core/tensor/reference/ops.ts";
import { assertClose, gpuTest, randomArray } from "../../helpers.ts";

class Block extends Module {
  constructor(rng: Generator) {
    super();
    this.registerModule("proj", new Linear(4, 3, rng));
    this.registerModule("0", new Linear(3, 2, rng, { bias: false }));
  }
}
class Net extends Module {
  constructor(rng: Generator) {
    super();
    this.registerModule("stem", new Linear(5, 4, rng));
    this.registerModule("blocks", new Block(rng));
  }
}

gpuTest("Module names parameters with PyTorch-style dotted paths and counts them", () => {
  const net = scope(() => new Net(new Generator(1)));
  assertEquals([...net.namedParameters()].map(([n, t]) => `${n}[${t.shape}]`), [
    "stem.weight[4,5]",
    "stem.bias[4]",
    "blocks.proj.weight[3,4]",
    "blocks.proj.bias[3]",
    "blocks.0.weight[2,3]",
  ]);
  assertEquals(net.parameterCount(), 20 + 4 + 12 + 3 + 6);
  net.eval();
  assert([...net.namedModules()].every(([, m]) => !m.training));
  net.dispose();
});

gpuTest("Module.dispose() reaches each child's own dispose(), so a module can free tensors it caches", () => {
  class Cache extends Module {
    readonly table = keep(tensor([1, 2, 3], [3]));
    override dispose(): void {
      super.dispose();
      this.table.dispose();
    }
  }
  class Holder extends Module {
    readonly cache: Cache;
    constructor(rng: Generator) {
      super();
      this.registerModule("proj", new Linear(2, 2, rng));
      this.cache = this.registerModule("cache", new Cache());
    }
  }
  const net = scope(() => new Holder(new Generator(1)));
  const params = net.parameters();
  net.dispose();
  assert(net.cache.table.disposed && params.every((t) => t.disposed));
});

gpuTest("Linear computes x·Wᵀ + b like torch.nn.Linear", async () => {
  const layer = scope(() => new Linear(7, 5, new Generator(2)));
  const x = randomArray(3 * 7, 9);
  const y = scope(() => layer.forward(tensor(x, [3, 7])));
  const w = await layer.namedParameters().next().value![1].toFloat64();
  const expected = matmulRef(
    { shape: [3, 7], data: Float64Array.from(Float32Array.from(x)) },
    { shape: [5, 7], data: w },
    false,
    true,
  );
  assertClose(await y.toFloat64(), expected.data, { rtol: 1e-5, atol: 1e-6 });
  y.dispose();
  layer.dispose();
});

gpuTest("kaimingNormal() has PyTorch's fan_in std; truncNormal() respects its bounds", async () => {
  assertEquals(fanIn([32, 16, 3, 3, 3]), 16 * 27);
  const rng = new Generator(4);
  const w = kaimingNormal([64, 16, 3, 3, 3], rng, 1e-2);
  const v = await w.toFloat64();
  const std = Math.sqrt(v.reduce((s, x) => s + x * x, 0) / v.length);
  const expected = Math.sqrt(2 / (1 + 1e-4)) / Math.sqrt(16 * 27);
  assert(Math.abs(std / expected - 1) < 0.03, `std ${std} vs ${expected}`);
  const t = truncNormal([4000], rng, 1, -1.5, 0.5);
  const tv = await t.toFloat64();
  assert(tv.every((x) => x >= -1.5 && x <= 0.5), "values inside [a, b]");
  const mean = tv.reduce((s, x) => s + x, 0) / tv.length;
  // mean of N(0,1) truncated to [-1.5, 0.5]: (φ(a) − φ(b)) / (Φ(b) − Φ(a)) = −0.2225 / 0.6247 = −0.3563
  assert(Math.abs(mean - -0.3563) < 0.03, `truncated mean ${mean}`);
  w.dispose();
  t.dispose();
});

Deno.test("safetensors encodes the documented layout and decodes F32, F16 and BF16", () => {
  const bytes = encodeSafetensors({
    "b.weight": { dtype: "F32", shape: [2, 2], data: Float32Array.from([1, -2, 3.5, 4]) },
    "a.bias": { dtype: "F16", shape: [3], data: Float32Array.from([0.5, -1, 65504]) },
    "c": { dtype: "BF16", shape: [2], data: Float32Array.from([1.00390625, -3]) },
  }, { format: "pt" });
  const view = new DataView(bytes.buffer);
  const n = Number(view.getBigUint64(0, true));
  assertEquals(n % 8, 0, "header padded to 8 bytes");
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  assertEquals(header.__metadata__, { format: "pt" });
  assertEquals(header["a.bias"], { dtype: "F16", shape: [3], data_offsets: [0, 6] });
  assertEquals(header["b.weight"].data_offsets, [6, 22]);
  assertEquals(bytes.length, 8 + n + 22 + 4);
  const { tensors } = decodeSafetensors(bytes);
  assertEquals([...tensors["b.weight"].data], [1, -2, 3.5, 4]);
  assertEquals([...tensors["a.bias"].data], [0.5, -1, 65504]);
  assertEquals([...tensors["c"].data], [1, -3], "bf16 rounds to nearest even");
});

Deno.test("decodeSafetensors() names the file and the field on bad input", () => {
  assertThrows(
    () => decodeSafetensors(new Uint8Array(3), "x.safetensors"),
    Error,
    "x.safetensors: file is 3 bytes",
  );
  const good = encodeSafetensors({ w: { dtype: "F32", shape: [2], data: Float32Array.from([1, 2]) } });
  assertThrows(
    () => decodeSafetensors(good.subarray(0, good.length - 4), "cut.safetensors"),
    Error,
    'tensor "w": data_offsets',
  );
});

gpuTest("a module round-trips through a safetensors file; mismatches are explained", async () => {
  const dir = await Deno.makeTempDir();
  const a = scope(() => new Net(new Generator(7)));
  const b = scope(() => new Net(new Generator(8)));
  await saveSafetensors(a, `${dir}/net.safetensors`, { metadata: { producer: "voxssl" } });
  await loadSafetensors(b, `${dir}/net.safetensors`);
  const pa = [...a.namedParameters()];
  const pb = [...b.namedParameters()];
  for (let i = 0; i < pa.length; i++) {
    assertEquals([...await pb[i][1].toArray()], [...await pa[i][1].toArray()]);
  }
  const { tensors } = decodeSafetensors(await Deno.readFile(`${dir}/net.safetensors`));
  delete tensors["stem.bias"];
  tensors["extra"] = { dtype: "F32", shape: [1], data: new Float32Array(1) };
  assertThrows(
    () => loadStateDict(b, tensors, { source: "edited" }),
    Error,
    "missing stem.bias; unexpected extra",
  );
  tensors["stem.weight"] = { dtype: "F32", shape: [5, 4], data: new Float32Array(20) };
  assertThrows(() => loadStateDict(b, tensors, { strict: false }), Error, '"stem.weight" has shape [5,4]');
  a.dispose();
  b.dispose();
  await Deno.remove(dir, { recursive: true });
});
