/** `voxssl autotune --all` (cli/commands/autotune.ts) on a prepared cache file: no GPU needed. */
import { assert, assertEquals } from "../assert.ts";
import { voxssl } from "../e2e/cli.ts";

Deno.test("voxssl autotune --all lists each adapter's measured tiles against the reasoned ones", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/autotune.json`;
  try {
    const cache = {
      version: 1,
      adapters: {
        "nvidia | hopper | h100 | NVIDIA H100 | backend vulkan": {
          adapter: { vendor: "nvidia", architecture: "hopper", device: "h100", description: "NVIDIA H100" },
          driver: "backend vulkan",
          classes: {
            "conv3d_fwd|3,3,3/1,1,1/1,1,1:scalar11:m8192:n32:k1024": {
              choice: "64x32x16/8x8m|s512",
              ms: { "128x32x16/8x8m|s512": 2, "64x32x16/8x8m|s512": 0.5 },
              source: "timestamp-query",
              at: "2026-12-03T00:00:00.000Z",
            },
            "matmul|f32:00:111:b1:m256:n256:k256": {
              choice: "64x64",
              ms: { "64x64": 1, "32x32": 3 },
              source: "timestamp-query",
              at: "2026-12-03T00:00:00.000Z",
            },
          },
        },
      },
    };
    await Deno.writeTextFile(path, JSON.stringify(cache));
    const r = await voxssl(["autotune", "--all"], { VOXSSL_AUTOTUNE_CACHE: path, VOXSSL_AUTOTUNE: "auto" });
    assertEquals(r.code, 0, r.text);
    assert(r.stdout.includes(`cache: ${path}`), r.text);
    assert(
      r.stdout.includes("adapter nvidia | hopper | h100 | NVIDIA H100 | backend vulkan: 2 shape classes"),
      r.text,
    );
    assert(
      r.stdout.includes("64x32x16/8x8m|s512 0.500 ms (reasoned 128x32x16/8x8m|s512 2.000 ms, ×4.00 faster)"),
      r.text,
    );
    assert(r.stdout.includes("64x64 (the reasoned choice) 1.000 ms"), r.text);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
