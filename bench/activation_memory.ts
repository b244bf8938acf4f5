/**
 * Activation memory of one MAE step (masked input, MSE on the masked voxels) of a tiny ResEnc and a tiny
 * Primus, f32 and mixed precision, with and without activation checkpointing: the bytes the graph saved
 * for backward (each storage range once, parameters left out), the buffer pool's peak during the step
 * (forward + backward, parameters and gradients included), and the cast passes left in the graph (cast
 * nodes and the elements they move). BENCHMARKS.md ("f16 activations") records its output.
 *
 *   ./deno run -A bench/activation_memory.ts [repo root (default: this one)] [--json FILE]
 *
 * Pointed at another checkout (e.g. the commit before f16 activations) it measures that code: it reads
 * only the public API (`mod.ts`, the two architecture plugins) and walks the graph itself. A checkout
 * without `activationCheckpointing` gets no checkpointed rows.
 */
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

const args = [...Deno.args];
const jsonAt = args.indexOf("--json");
const jsonFile = jsonAt >= 0 ? args.splice(jsonAt, 2)[1] : undefined;
const root = resolve(args[0] ?? new URL("..", import.meta.url).pathname);
const url = (path: string) => pathToFileURL(resolve(root, path)).href;
// deno-lint-ignore no-explicit-any
type Any = any;
const core: Any = await import(url("mod.ts"));
const resenc: Any = (await import(url("plugins/arch/resenc/mod.ts"))).default;
const primus: Any = (await import(url("plugins/arch/primus/mod.ts"))).default;

const gpu = await core.initGpu();
const PATCH = [32, 32, 32];
const BATCH = 2;

interface Row {
  arch: string;
  precision: string;
  checkpointing: string;
  savedBytes: number;
  savedF16: number;
  savedF32: number;
  weightCopies: number;
  peakBytes: number;
  castNodes: number;
  castElements: number;
  loss: number;
}

/** Saved bytes per dtype and the cast nodes of the graph behind `loss`. */
function walk(loss: Any) {
  const seenNodes = new Set<Any>();
  const ranges = new Set<string>();
  const byDtype: Record<string, number> = {};
  let castNodes = 0, castElements = 0, weightCopies = 0;
  const stack = [loss];
  while (stack.length > 0) {
    const t = stack.pop();
    const node = t.node;
    if (!node || node.released || seenNodes.has(node)) continue;
    seenNodes.add(node);
    if (node.name === "cast") {
      castNodes++;
      castElements += t.size;
    }
    stack.push(...node.inputs);
    for (const s of node.saved) {
      if ((s.requiresGrad && !s.node) || s.disposed) continue;
      const key = `${s.buffer.id}:${s.byteOffset}:${s.byteLength}`;
      if (ranges.has(key)) continue;
      ranges.add(key);
      const input = s.node?.name === "cast" ? s.node.inputs[0] : undefined;
      if (input && input.requiresGrad && !input.node) {
        weightCopies += s.byteLength; // an f16 copy of a parameter (autocast)
        continue;
      }
      byDtype[s.dtype] = (byDtype[s.dtype] ?? 0) + s.byteLength;
    }
  }
  return { byDtype, castNodes, castElements, weightCopies };
}

async function measure(arch: string, mixed: boolean, checkpointing: string): Promise<Row> {
  const plugin = arch === "resenc" ? resenc : primus;
  const overrides = checkpointing === "none" ? {} : { activationCheckpointing: checkpointing };
  const config = plugin.config.parse({ ...plugin.sizes.tiny, ...overrides });
  const net = core.scope(() =>
    plugin.create({
      config,
      inChannels: 1,
      outChannels: 1,
      patchSize: PATCH,
      encoderOnly: false,
      rng: new core.Generator(1, gpu),
    })
  );
  const n = BATCH * PATCH[0] * PATCH[1] * PATCH[2];
  const image = core.tensor(Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37)), [
    BATCH,
    1,
    ...PATCH,
  ], {
    gpu,
  });
  // 8³ blocks, every other one masked
  const mask = core.tensor(
    Float32Array.from({ length: n }, (_, i) => {
      const [w, h, d] = [i % 32, Math.floor(i / 32) % 32, Math.floor(i / 1024) % 32];
      return (Math.floor(w / 8) + Math.floor(h / 8) + Math.floor(d / 8)) % 2;
    }),
    [BATCH, 1, ...PATCH],
    { gpu },
  );
  await gpu.sync();
  gpu.pool.resetPeak();
  const result = core.scope(() => {
    const forward = () => {
      const input = core.mul(image, core.add(core.mul(mask, -1), 1));
      return core.mseLoss(net.forward(input), image, { mask });
    };
    const loss = mixed ? core.autocast(forward) : forward();
    const graph = walk(loss);
    core.backward(loss);
    return { loss, graph };
  });
  await gpu.sync();
  const peakBytes = gpu.pool.stats().peakBytesInUse;
  const loss = await result.loss.item();
  result.loss.dispose();
  net.dispose();
  image.dispose();
  mask.dispose();
  const saved = result.graph.byDtype;
  const total = Object.values(saved).reduce((a: number, b) => a + (b as number), 0) as number;
  return {
    arch,
    precision: mixed ? "mixed" : "f32",
    checkpointing,
    savedBytes: total,
    savedF16: saved.f16 ?? 0,
    savedF32: saved.f32 ?? 0,
    weightCopies: result.graph.weightCopies,
    peakBytes,
    castNodes: result.graph.castNodes,
    castElements: result.graph.castElements,
    loss,
  };
}

const canCheckpoint = "activationCheckpointing" in resenc.config.parse(resenc.sizes.tiny);
const rows: Row[] = [];
const kib = (b: number) => (b / 1024).toFixed(0);
console.log(
  `root ${root}; ${gpu.adapterInfo.description || gpu.adapterInfo.device}; patch ${
    PATCH.join("×")
  }, batch ${BATCH}`,
);
console.log(
  "arch    precision  checkpointing  saved KiB (f16 / f32)  weight copies KiB  pool peak KiB  casts (elements)  loss",
);
for (const arch of ["resenc", "primus"]) {
  const unit = arch === "resenc" ? "stages" : "blocks";
  for (const mixed of [false, true]) {
    for (const ckpt of canCheckpoint ? ["none", unit] : ["none"]) {
      const r = await measure(arch, mixed, ckpt);
      rows.push(r);
      const saved = `${kib(r.savedBytes)} (${kib(r.savedF16)} / ${kib(r.savedF32)})`;
      const casts = `${r.castNodes} (${r.castElements})`;
      console.log(
        `${r.arch.padEnd(7)} ${r.precision.padEnd(10)} ${r.checkpointing.padEnd(14)} ${saved.padEnd(22)} ` +
          `${kib(r.weightCopies).padStart(17)}  ${kib(r.peakBytes).padStart(13)}  ${casts.padEnd(16)}  ` +
          r.loss.toFixed(5),
      );
    }
  }
}
if (jsonFile) {
  await Deno.writeTextFile(jsonFile, JSON.stringify({ root, patch: PATCH, batch: BATCH, rows }, null, 2));
}
gpu.destroy();
