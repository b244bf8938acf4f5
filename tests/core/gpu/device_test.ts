import { assert, assertEquals, assertRejects, assertThrows } from "../../assert.ts";
import {
  BindingTooLargeError,
  createGpu,
  GpuDeviceLostError,
  GpuValidationError,
  type KernelSource,
  Params,
  sizeClass,
  workgroupGrid,
} from "../../../core/gpu/mod.ts";
import { gpuTest } from "../../helpers.ts";

const writeIndex: KernelSource = {
  name: "test.write_index",
  storage: ["read_write"],
  uniform: true,
  code: /* wgsl */ `
    struct P { n: u32, base: f32 }
    @group(0) @binding(0) var<storage, read_write> out: array<f32>;
    @group(1) @binding(0) var<uniform> p: P;
    @compute @workgroup_size(64)
    fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
      let i = (wid.x + wid.y * nwg.x + wid.z * nwg.x * nwg.y) * 64u + lid;
      if (i < p.n) { out[i] = p.base + f32(i); }
    }`,
};

Deno.test("sizeClass() rounds up by quarter octaves", () => {
  assertEquals(sizeClass(1), 256);
  assertEquals(sizeClass(256), 256);
  assertEquals(sizeClass(257), 320);
  assertEquals(sizeClass(1000), 1024);
  assertEquals(sizeClass(1025), 1280);
  for (let n = 1; n < 1e7; n = Math.ceil(n * 1.37)) {
    const c = sizeClass(n);
    assert(c >= n && c <= Math.max(256, n * 1.25 + 1), `class ${c} for ${n}`);
  }
});

Deno.test("workgroupGrid() splits counts above the per-dimension limit", () => {
  assertEquals(workgroupGrid(100, 65535), [100, 1, 1]);
  for (const n of [65536, 200_001, 65535 * 65535 + 7]) {
    const [x, y, z] = workgroupGrid(n, 65535);
    assert(x <= 65535 && y <= 65535 && z <= 65535);
    assert(x * y * z >= n, `grid ${x}x${y}x${z} covers ${n}`);
    assert(x * y * z - n < x * y, "at most one partial plane");
  }
});

gpuTest("Gpu.dispatch() covers more than 65,535 workgroups", async (gpu) => {
  const n = 70_000 * 64 + 5;
  const buffer = gpu.pool.acquire(n * 4);
  const kernel = gpu.kernel("test.write_index", () => writeIndex);
  gpu.dispatch(kernel, [{ buffer, size: n * 4 }], new Params().u32(n).f32(0.5), Math.ceil(n / 64));
  const out = new Float32Array(await gpu.read(buffer, 0, n * 4));
  for (const i of [0, 1, 63, 64, 65535 * 64, 65536 * 64 + 3, n - 1]) assertEquals(out[i], 0.5 + i);
  gpu.pool.release(buffer);
});

gpuTest("Gpu batches dispatches and cycles the uniform ring without mixing params", async (gpu) => {
  const kernel = gpu.kernel("test.write_index", () => writeIndex);
  const buffers = Array.from({ length: 10 }, () => gpu.pool.acquire(64 * 4));
  const submitsBefore = gpu.counters.submits;
  const rounds = 600; // 6,000 dispatches: more than the ring's 4,096 slots
  for (let r = 0; r < rounds; r++) {
    for (let b = 0; b < 10; b++) {
      gpu.dispatch(kernel, [{ buffer: buffers[b], size: 256 }], new Params().u32(64).f32(r * 1000 + b), 1);
    }
  }
  for (let b = 0; b < 10; b++) {
    const out = new Float32Array(await gpu.read(buffers[b], 0, 256));
    assertEquals(out[3], (rounds - 1) * 1000 + b + 3);
  }
  const submits = gpu.counters.submits - submitsBefore;
  assert(submits < 6000 / 8, `dispatches are batched (${submits} submits)`);
  for (const b of buffers) gpu.pool.release(b);
});

gpuTest("Gpu.kernel() compiles each variant once", (gpu) => {
  const before = gpu.counters.pipelinesCompiled;
  const a = gpu.kernel("test.write_index", () => writeIndex);
  const b = gpu.kernel("test.write_index", () => {
    throw new Error("must not rebuild");
  });
  assert(a === b);
  assert(gpu.counters.pipelinesCompiled - before <= 1);
});

gpuTest("BufferPool reuses buffers: a steady loop allocates nothing", (gpu) => {
  const sizes = [1000, 4096, 77_777, 123];
  const warm = sizes.map((s) => gpu.pool.acquire(s));
  warm.forEach((b) => gpu.pool.release(b));
  const before = gpu.pool.stats();
  for (let step = 0; step < 50; step++) {
    const held = sizes.map((s) => gpu.pool.acquire(s));
    held.forEach((b) => gpu.pool.release(b));
  }
  const after = gpu.pool.stats();
  assertEquals(after.allocations, before.allocations);
  assertEquals(after.bytesInUse, before.bytesInUse);
  assertEquals(after.reuses - before.reuses, 200);
  assertThrows(() => gpu.pool.release(warm[0]), Error, "released twice");
});

gpuTest("Gpu names the kernel whose shader fails to compile", async (gpu) => {
  const kernel = gpu.kernel("test.broken", () => ({
    name: "test.broken",
    storage: ["read_write"],
    uniform: false,
    code: "@compute @workgroup_size(1) fn main() { let x: f32 = 1u; }",
  }));
  const buffer = gpu.pool.acquire(256);
  gpu.dispatch(kernel, [buffer], undefined, 1);
  await assertRejects(() => gpu.sync(), GpuValidationError, "test.broken");
  gpu.pool.release(buffer);
});

Deno.test({
  name: "Gpu refuses a binding above maxStorageBufferBindingSize with the kernel's name",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const gpu = await createGpu({ maxStorageBindingBytes: 4096 });
    try {
      assertEquals(gpu.limits.maxStorageBufferBindingSize, 4096);
      const kernel = gpu.kernel("test.write_index", () => writeIndex);
      const buffer = gpu.pool.acquire(8192);
      assertThrows(
        () => gpu.dispatch(kernel, [{ buffer, size: 8192 }], new Params().u32(2048).f32(0), 32),
        BindingTooLargeError,
        "test.write_index",
      );
    } finally {
      gpu.destroy();
    }
  },
});

gpuTest("Gpu.time() measures a recorded section", async (gpu) => {
  const kernel = gpu.kernel("test.write_index", () => writeIndex);
  const buffer = gpu.pool.acquire(1 << 20);
  const { ms, source } = await gpu.time(() => {
    for (let i = 0; i < 4; i++) {
      gpu.dispatch(kernel, [{ buffer, size: 1 << 20 }], new Params().u32(1 << 18).f32(i), 4096);
    }
  });
  assert(ms > 0 && Number.isFinite(ms), `time ${ms}`);
  assertEquals(source, gpu.hasTimestamps ? "timestamp-query" : "wall-clock");
  gpu.pool.release(buffer);
});

Deno.test({
  name: "a lost device turns later calls into GpuDeviceLostError with the reason",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const gpu = await createGpu();
    const kernel = gpu.kernel("test.write_index", () => writeIndex);
    const buffer = gpu.pool.acquire(256);
    gpu.device.destroy(); // what a driver reset looks like from here
    await new Promise((resolve) => setTimeout(resolve, 50));
    assertThrows(
      () => gpu.dispatch(kernel, [{ buffer, size: 256 }], new Params().u32(64).f32(0), 1),
      GpuDeviceLostError,
      "lost",
    );
    await assertRejects(() => gpu.read(buffer, 0, 16), GpuDeviceLostError, "--resume");
  },
});
