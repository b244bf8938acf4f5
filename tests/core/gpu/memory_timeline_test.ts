import { assert, assertEquals, assertThrows } from "../../assert.ts";
import {
  currentOpFamily,
  forceOpFamily,
  MEMORY_OWNERS,
  type MemoryOwner,
  type MemoryTimeline,
  opFamily,
  sampleTimeline,
  withOpFamily,
} from "../../../core/gpu/mod.ts";
import {
  activation,
  add,
  backward,
  conv3d,
  exp,
  instanceNorm,
  matmul,
  mseLoss,
  mul,
  reshape,
  scope,
  tensor,
} from "../../../core/tensor/mod.ts";
import { gpuTest, randomArray } from "../../helpers.ts";

const sumOwners = (held: Record<MemoryOwner, number>) => MEMORY_OWNERS.reduce((a, o) => a + held[o], 0);

/** Replays the events: the running total after each, starting from the bytes in use at the start. */
function replay(t: MemoryTimeline): number[] {
  let total = t.startBytes;
  return t.events.map((e) => (total += e.bytes));
}

Deno.test("opFamily: the outermost op wins, cast forces its own, both end with the op even when it throws", () => {
  assertEquals(currentOpFamily(), undefined);
  {
    using _outer = opFamily("norm");
    {
      using _inner = opFamily("elementwise");
      assertEquals(currentOpFamily(), "norm");
      {
        using _cast = forceOpFamily("cast");
        assertEquals(currentOpFamily(), "cast");
      }
      assertEquals(currentOpFamily(), "norm");
    }
    assertEquals(currentOpFamily(), "norm");
  }
  assertEquals(currentOpFamily(), undefined);
  assertThrows(() =>
    withOpFamily("conv", () => {
      throw new RangeError("bad input");
    }), RangeError);
  assertEquals(currentOpFamily(), undefined);
});

gpuTest(
  "memory timeline: the peak is the sum of the buffers live at that moment (hand count)",
  async (gpu) => {
    // resident before recording: x 256 f32 (1024 B), y 16×32 f32 (2048 B); every size below is its own class
    const x = tensor(randomArray(256, 1), [256]);
    const y = tensor(randomArray(512, 2), [16, 32]);
    await gpu.sync();
    const before = gpu.pool.stats().bytesInUse;
    gpu.pool.resetPeak();
    gpu.pool.startTimeline();
    const t1 = mul(x, 2); // +1024 elementwise
    const t2 = exp(t1); // +1024 elementwise
    t1.dispose(); // -1024
    const a = reshape(t2, [16, 16]); // a view: no buffer
    const m = matmul(a, y); // +2048 matmul (16×32)
    const t3 = mul(m, m); // +2048 elementwise   ← the peak: t2 + m + t3 = 5120 above the start
    a.dispose();
    t2.dispose(); // -1024
    m.dispose(); // -2048
    const t4 = add(t3, 1); // +2048 elementwise
    t3.dispose(); // -2048
    t4.dispose(); // -2048
    const timeline = gpu.pool.stopTimeline()!;
    assertEquals(timeline.startBytes, before);
    assertEquals(timeline.peakBytes, before + 1024 + 2048 + 2048);
    assertEquals(timeline.peakBytes, gpu.pool.stats().peakBytesInUse);
    assertEquals(timeline.atPeak.resident, before);
    assertEquals(timeline.atPeak.elementwise, 1024 + 2048);
    assertEquals(timeline.atPeak.matmul, 2048);
    assertEquals(sumOwners(timeline.atPeak), timeline.peakBytes);
    assertEquals(
      timeline.events.map((e) => `${e.owner}${e.bytes > 0 ? "+" : ""}${e.bytes}`),
      [
        "elementwise+1024",
        "elementwise+1024",
        "elementwise-1024",
        "matmul+2048",
        "elementwise+2048",
        "elementwise-1024",
        "matmul-2048",
        "elementwise+2048",
        "elementwise-2048",
        "elementwise-2048",
      ],
    );
    assertEquals(timeline.peakEvent, 4);
    assertEquals(timeline.allocations, 5);
    assertEquals(sumOwners(timeline.atEnd), before);
    x.dispose();
    y.dispose();
  },
);

gpuTest(
  "memory timeline of a tiny net's step: families sum to the total at every sample, backward keeps its op's family",
  async (gpu) => {
    const x = tensor(randomArray(2 * 6 ** 3, 3), [1, 2, 6, 6, 6]);
    const target = tensor(randomArray(3 * 6 ** 3, 4), [1, 3, 6, 6, 6]);
    const w = tensor(randomArray(3 * 2 * 27, 5, -0.3, 0.3), [3, 2, 3, 3, 3], { requiresGrad: true });
    const nw = tensor(randomArray(3, 6, 0.5, 1.5), [3], { requiresGrad: true });
    const nb = tensor(randomArray(3, 7), [3], { requiresGrad: true });
    await gpu.sync();
    gpu.pool.resetPeak();
    gpu.pool.startTimeline();
    let forwardEvents = 0;
    scope(() => {
      const y = conv3d(x, w, { padding: 1 });
      const z = instanceNorm(y, nw, nb);
      const a = activation("leakyRelu", z, 0.01);
      const loss = mseLoss(a, target);
      assertEquals([y.node?.family, z.node?.family, a.node?.family, loss.node?.family], [
        "conv",
        "norm",
        "activation",
        "loss",
      ]);
      forwardEvents = gpu.pool.stopTimeline()!.events.length;
      gpu.pool.resetPeak();
      gpu.pool.startTimeline();
      backward(loss);
    });
    const timeline = gpu.pool.stopTimeline()!;
    await gpu.sync();
    // backward alone: its buffers are attributed to the family of the op whose rule made them
    assert(forwardEvents > 0);
    const owners = new Set(timeline.events.filter((e) => e.bytes > 0).map((e) => e.owner));
    for (const family of ["conv", "norm", "activation", "loss"] as const) {
      assert(owners.has(family), `backward allocations of ${family}: ${[...owners]}`);
    }
    const totals = replay(timeline);
    assertEquals(Math.max(timeline.startBytes, ...totals), timeline.peakBytes);
    assertEquals(timeline.peakBytes, gpu.pool.stats().peakBytesInUse);
    assertEquals(sumOwners(timeline.atPeak), timeline.peakBytes);
    assertEquals(sumOwners(timeline.atEnd), gpu.pool.stats().bytesInUse);
    const samples = sampleTimeline(timeline, 16);
    assert(samples.length <= 16 + 3, `${samples.length} samples`);
    assert(samples.some((s) => s.event === timeline.peakEvent), "the peak is a sample");
    for (const s of samples) {
      assertEquals(sumOwners(s.held), s.event < 0 ? timeline.startBytes : totals[s.event]);
    }
    for (const t of [x, target, w, nw, nb]) t.dispose();
  },
);
